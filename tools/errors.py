"""The CLI's own error type, in a module of its own so `python -m` runs never duplicate it."""


class CLIError(Exception):
    """An expected failure the command reports as one line."""
