"""Prompt-processing and generation throughput, measured as llama-bench does.

pp<N>: N random tokens evaluated as one prompt from an empty cache (prefill).
tg<N>: N tokens decoded one at a time from an empty cache, each fed back (decode).
Each test runs once to warm up, then `repetitions` times; the median tokens/s is reported.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np

from ..formats.keys import Keys
from .model import Model


def _time_prompt(model: Model, tokens: np.ndarray) -> float:
    model.reset()
    start = time.perf_counter()
    model.eval(tokens, logits="last")
    return time.perf_counter() - start


def _time_generation(model: Model, first: int, rng: np.random.Generator, n_gen: int) -> float:
    model.reset()
    token = first
    start = time.perf_counter()
    for _ in range(n_gen):
        model.eval([token], logits="last")
        token = int(rng.integers(model.n_vocab))  # as llama-bench: random next tokens
    return time.perf_counter() - start


def bench_model(
    model: Model,
    n_prompt: int = 512,
    n_gen: int = 128,
    repetitions: int = 5,
    bos_id: int | None = None,
    seed: int = 0,
) -> dict:
    """Median tokens/s of pp<n_prompt> and tg<n_gen> on a loaded model (n_ctx must fit)."""
    if repetitions < 1:
        raise ValueError("repetitions must be at least 1")
    rng = np.random.default_rng(seed)
    results: dict = {}
    if n_prompt > 0:
        tokens = rng.integers(model.n_vocab, size=n_prompt).astype(np.int32)
        _time_prompt(model, tokens)  # warm-up (and compilation)
        times = [_time_prompt(model, tokens) for _ in range(repetitions)]
        results[f"pp{n_prompt}"] = _summary(n_prompt, times)
    if n_gen > 0:
        first = bos_id if bos_id is not None else int(rng.integers(model.n_vocab))
        _time_generation(model, first, rng, min(n_gen, 8))  # warm-up
        times = [_time_generation(model, first, rng, n_gen) for _ in range(repetitions)]
        results[f"tg{n_gen}"] = _summary(n_gen, times)
    model.reset()
    return results


def _summary(n_tokens: int, times: list[float]) -> dict:
    rates = [n_tokens / t for t in times]
    return {
        "n_tokens": n_tokens,
        "tokens_per_second": statistics.median(rates),
        "samples": rates,
    }


def bench(
    model_path: str | os.PathLike,
    n_prompt: int = 512,
    n_gen: int = 128,
    repetitions: int = 5,
    n_threads: int | None = None,
) -> dict:
    """Load a model and measure it; a dict ready for JSON output."""
    model = Model(model_path, n_ctx=max(n_prompt + n_gen, 16), n_threads=n_threads)
    try:
        add_bos = bool(model.metadata.get(Keys.Tokenizer.ADD_BOS, False))
        bos = model.metadata.get(Keys.Tokenizer.BOS_ID) if add_bos else None
        start = time.perf_counter()
        results = bench_model(model, n_prompt, n_gen, repetitions, bos)
        return {
            "model": Path(model_path).name,
            "architecture": model.arch_name,
            "n_threads": model.n_threads,
            "repetitions": repetitions,
            "weights_bytes": model.weights_nbytes,
            "wall_seconds": time.perf_counter() - start,
            "results": results,
        }
    finally:
        model.close()
