"""Perplexity of a text, computed as llama.cpp's llama-perplexity does.

The tokens are cut into chunks of n_ctx; each chunk is evaluated from an empty cache, its
first token replaced by BOS when the model adds one; only the second half of each chunk is
scored (every scored token has at least n_ctx/2 tokens of context):

    nll = -sum over chunks, j in [n_ctx/2, n_ctx - 1) of log softmax(logits[j])[token[j + 1]]
    ppl = exp(nll / count)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .model import Model
from .tokenizer import Tokenizer


@dataclass
class PerplexityResult:
    perplexity: float
    nll: float  # summed negative log-likelihood (nats)
    n_scored: int  # tokens scored
    n_ctx: int
    n_chunks: int
    chunk_perplexities: list[float] = field(default_factory=list)  # running value after each


def token_log_probs(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log softmax(logits[i])[targets[i]] for each row, in float64. logits: (m, n_vocab)."""
    rows = logits.astype(np.float64)
    peak = rows.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(rows - peak).sum(axis=1)) + peak[:, 0]
    return rows[np.arange(len(targets)), targets] - log_norm


def perplexity(
    model: Model,
    tokens: list[int] | np.ndarray,
    n_ctx: int,
    bos_id: int | None = None,
    n_chunks: int | None = None,
    on_chunk: Callable[[int, int, float], None] | None = None,
) -> PerplexityResult:
    """Perplexity of `tokens` over chunks of n_ctx (see the module doc).

    bos_id: the BOS token when the model adds one (it replaces each chunk's first token).
    on_chunk(i, n_chunks, running_perplexity) is called after each chunk.
    """
    tokens = np.asarray(tokens, dtype=np.int32)
    if n_ctx < 4 or n_ctx > model.n_ctx:
        raise ValueError(f"n_ctx must be between 4 and the model's context {model.n_ctx}")
    available = len(tokens) // n_ctx
    if available < 1:
        raise ValueError(
            f"the text has {len(tokens)} tokens; perplexity needs at least n_ctx = {n_ctx}"
        )
    n_chunks = available if n_chunks is None else min(n_chunks, available)
    first = n_ctx // 2
    nll, count, running = 0.0, 0, []
    for i in range(n_chunks):
        chunk = tokens[i * n_ctx : (i + 1) * n_ctx].copy()  # (n_ctx,)
        if bos_id is not None:
            chunk[0] = bos_id
        model.reset()
        for start, logits in model.eval_logits(chunk, first):  # (m, n_vocab) of rows start..
            rows = np.arange(start, start + len(logits))
            keep = (rows >= first) & (rows < n_ctx - 1)
            if keep.any():
                targets = tokens[i * n_ctx + rows[keep] + 1]  # the original next tokens
                nll -= float(token_log_probs(logits[keep], targets).sum())
                count += int(keep.sum())
        running.append(math.exp(nll / count))
        if on_chunk is not None:
            on_chunk(i, n_chunks, running[-1])
    model.reset()
    return PerplexityResult(running[-1], nll, count, n_ctx, n_chunks, running)


def perplexity_of_file(
    model_path: str | os.PathLike,
    text_path: str | os.PathLike,
    n_ctx: int = 512,
    n_threads: int | None = None,
    n_chunks: int | None = None,
    on_chunk: Callable[[int, int, float], None] | None = None,
) -> PerplexityResult:
    """Load a model, tokenize a UTF-8 text file as llama-perplexity does, and score it."""
    text = Path(text_path).read_text(encoding="utf-8")
    model = Model(model_path, n_ctx=n_ctx, n_threads=n_threads)
    try:
        tokenizer = Tokenizer.from_metadata(model.metadata)
        tokens = tokenizer.tokenize(text, add_special=True, parse_special=False)
        bos = tokenizer.bos_id if tokenizer.add_bos else None
        return perplexity(model, tokens, n_ctx, bos, n_chunks, on_chunk)
    finally:
        model.close()
