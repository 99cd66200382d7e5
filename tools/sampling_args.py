"""Sampling and model-loading options shared by `llamba chat` and `llamba run`."""

from __future__ import annotations


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


def load_model(args, model: str | None):
    import sys

    from ..engine.api import Llama
    from ..engine.catalog import resolve_model
    from ..kernels.cache_locator import is_warm

    path = resolve_model(model)  # pulls a missing catalog model first, with its progress
    if not is_warm():
        print(
            "llamba: compiling the kernels for this CPU (first run only; about 20-60 s, "
            "later runs load them from the cache)",
            file=sys.stderr,
            flush=True,
        )
    return Llama(path, n_ctx=args.ctx, n_threads=args.threads, seed=args.seed)
