"""`llamba perplexity MODEL TEXTFILE`: perplexity as llama-perplexity computes it.

The text is cut into windows of --ctx tokens; each window is evaluated from scratch and only
its second half is scored, so every scored token sees at least ctx/2 tokens of context.
"""

from __future__ import annotations

import sys
import time

from ..engine.catalog import resolve_model
from ..engine.perplexity import perplexity_of_file
from .errors import CLIError


def add_arguments(p) -> None:
    p.add_argument("model", help="GGUF file or catalog name")
    p.add_argument("textfile", help="UTF-8 text to score")
    p.add_argument("--ctx", type=int, default=512, help="window length in tokens (default 512)")
    p.add_argument("--chunks", type=int, default=None, help="score at most this many windows")
    p.add_argument("--threads", type=int, default=None)


def _progress(start: float):
    def on_chunk(i: int, n: int, running: float) -> None:
        done = i + 1
        bar = "#" * (30 * done // n)
        eta = (time.perf_counter() - start) / done * (n - done)
        sys.stderr.write(f"\r[{bar:<30}] {done}/{n}  ppl {running:.4f}  eta {eta:5.0f} s")
        if done == n:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return on_chunk


def run(args) -> int:
    if args.ctx < 4:
        raise CLIError(f"--ctx must be at least 4, got {args.ctx}")
    path = resolve_model(args.model)
    try:
        result = perplexity_of_file(
            path,
            args.textfile,
            n_ctx=args.ctx,
            n_threads=args.threads,
            n_chunks=args.chunks,
            on_chunk=_progress(time.perf_counter()),
        )
    except (ValueError, UnicodeDecodeError) as e:
        raise CLIError(str(e)) from None
    print(
        f"perplexity: {result.perplexity:.4f}  ({result.n_chunks} windows of {result.n_ctx}, "
        f"{result.n_scored} tokens scored)"
    )
    return 0
