"""llamba: a CPU-only LLM inference engine in Python that reads and writes GGUF files.

The distribution maps the repository's folders into this namespace:
llamba.formats (GGUF, quant types), llamba.kernels (Numba), llamba.engine (runtime, API),
llamba.tools (command line).
"""

__version__ = "0.1.0"


def __getattr__(name):
    # The public API lives in engine/; import it lazily so `import llamba.formats` stays light.
    if name == "Llama":
        from .engine.api import Llama

        return Llama
    raise AttributeError(f"module 'llamba' has no attribute {name!r}")
