"""Sampling and model-loading options shared by `llamba chat` and `llamba run`."""

from __future__ import annotations

import contextlib


def add_model_arguments(p) -> None:
    p.add_argument(
        "--ctx", type=int, default=None, help="context length (default: model's, capped)"
    )
    p.add_argument("--threads", type=int, default=None, help="threads (default: physical cores)")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling")


def add_sampling_arguments(p) -> None:
    p.add_argument("-n", "--max-tokens", type=int, default=None, help="stop after this many tokens")
    p.add_argument("--temp", type=float, default=0.8, help="temperature (0 = greedy)")
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--min-p", type=float, default=0.05)
    p.add_argument("--repeat-penalty", type=float, default=1.0)


def sampling_kwargs(args) -> dict:
    return {
        "max_tokens": args.max_tokens,
        "temperature": args.temp,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "min_p": args.min_p,
        "repeat_penalty": args.repeat_penalty,
    }


def compile_kernels_first(path, n_processes: int | None = None) -> None:
    """On a cold kernel cache, compile the kernels the model at path needs (its weight types
    and the float ops) in one process per physical core, before the model loads: lazily, on
    first use, they compiled one after another on one core (from a cold cache, Gemma-3
    Q4_K_M's first run took 52 s, now 38 s; SmolLM2 F16's 25 s, now 18 s)."""
    import os
    import sys

    from ..engine.model import default_threads
    from ..formats.gguf_reader import GGUFFile
    from ..kernels.cache_locator import warm_stamp
    from ..kernels.linear import SUPPORTED_TYPES
    from ..kernels.warmup import is_warmed, warmup

    # a stamp per model file, so that later runs do not parse its header twice to find out
    st = os.stat(path)
    model_stamp = warm_stamp(f"model {os.path.abspath(path)} {st.st_size} {st.st_mtime_ns}")
    if model_stamp and model_stamp.exists():
        return
    with GGUFFile(path) as f:
        types = {t.type for t in f.tensors.values() if len(t.shape) == 2}  # norms are vectors
    types = sorted(types & set(SUPPORTED_TYPES))
    if not is_warmed(types):
        print(
            "llamba: compiling the kernels for this CPU and model (once; about 10-40 s, later "
            "runs load them from the cache)",
            file=sys.stderr,
            flush=True,
        )
        warmup(types=types, processes=n_processes or default_threads())
    if model_stamp:
        with contextlib.suppress(OSError):
            model_stamp.touch()


def load_model(args, model: str | None):
    from ..engine.api import Llama
    from ..engine.catalog import resolve_model

    path = resolve_model(model)  # pulls a missing catalog model first, with its progress
    compile_kernels_first(path)
    return Llama(path, n_ctx=args.ctx, n_threads=args.threads, seed=args.seed)
