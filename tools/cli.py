"""`llamba` command line: one subcommand per module in tools/.

Every expected error (a bad file, an unknown model, a failed pull, bad arguments) becomes one
line on stderr and a non-zero exit code; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# subcommand -> (module in llamba.tools, one-line help); each module has add_arguments(p), run(args)
COMMANDS = {
    "chat": ("chat", "chat with a model in the terminal"),
    "run": ("run", "complete a prompt and print the result"),
    "pull": ("pull", "fetch a catalog model into the local cache and verify it"),
    "list": ("list_models", "show the catalog and which models are present"),
    "inspect": ("inspect", "summarize a GGUF file: hyperparameters, tokenizer, tensors, memory"),
    "perplexity": ("perplexity", "perplexity of a model on a text file, as llama-perplexity"),
    "bench": ("bench", "benchmark a model (pp512/tg128) or the kernels"),
    "warmup": ("warmup", "compile every kernel ahead of first use"),
    "convert": ("convert", "convert a Hugging Face checkpoint to one GGUF file"),
    "quantize": ("quantize", "requantize a GGUF file to a type or preset (Q4_K_M, …)"),
}


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors that describe bad input or environment, not bugs: reported as one line."""
    from ..engine.catalog import CatalogError
    from ..engine.chat_template import ChatTemplateError
    from ..engine.kv_cache import ContextLengthError
    from ..engine.tokenizer_vocab import TokenizerError
    from ..formats.errors import FormatError
    from .errors import CLIError

    return (
        CLIError,
        FormatError,
        CatalogError,
        ChatTemplateError,
        ContextLengthError,
        TokenizerError,
        OSError,
    )


def _available_commands() -> dict[str, tuple[str, str]]:
    found = {}
    for cmd, (module, help_) in COMMANDS.items():
        spec = importlib.util.find_spec(f"{__package__}.{module}")
        if spec is not None:
            found[cmd] = (module, help_)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llamba", description="CPU LLM inference on GGUF files")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"llamba {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd, (module, help_) in _available_commands().items():
        p = sub.add_parser(cmd, help=help_, description=help_)
        mod = importlib.import_module(f".{module}", __package__)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["bench", "kernels"] and argv[2:3] != ["--"]:
        # the kernel benchmark parses its own options: hand them over untouched
        argv[2:2] = ["--"]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    expected = _expected_errors()
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        print("llamba: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0  # output piped into `head` and closed early
    except expected as e:
        print(f"llamba {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 1


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename and e.strerror:
        return f"{e.filename}: {e.strerror}"
    text = str(e) or type(e).__name__
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    from llamba.tools.cli import main as canonical_main  # not __main__'s copy of this module

    sys.exit(canonical_main())
