"""How much memory a model needs to run at a given context length."""

from __future__ import annotations

from dataclasses import dataclass

from ..formats.gguf_reader import GGUFFile
from ..formats.keys import Keys

KV_BYTES = 2  # the KV cache holds f16
PREFILL_BATCH = 512

# Architectures whose sliding-window layers follow a fixed pattern in llama.cpp: of every
# `period` layers, all but the last use the window.
SWA_PERIOD = {"gemma3": 6, "gemma2": 2}


@dataclass(frozen=True)
class MemoryEstimate:
    n_ctx: int
    weights: int  # bytes of tensor data (a repacked copy is never larger)
    kv_cache: int
    compute: int  # scratch for a prefill batch and the logits

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute


def kv_positions_per_layer(f: GGUFFile, n_ctx: int) -> list[int]:
    """Positions each layer's KV cache must hold: n_ctx, or the window on sliding layers."""
    n_layer = f.arch_get(Keys.LLM.BLOCK_COUNT, 0)
    window = f.arch_get(Keys.Attention.SLIDING_WINDOW)
    period = SWA_PERIOD.get(f.architecture)
    if not window or not period:
        return [n_ctx] * n_layer
    return [n_ctx if i % period == period - 1 else min(n_ctx, window) for i in range(n_layer)]


def _per_layer(value, n_layer: int) -> list[int]:
    # head counts may be one number or one per layer (an array)
    if value is None:
        return [0] * n_layer
    if hasattr(value, "__len__") and not isinstance(value, str):
        return [int(v) for v in value]
    return [int(value)] * n_layer


def estimate_memory(f: GGUFFile, n_ctx: int) -> MemoryEstimate:
    n_layer = f.arch_get(Keys.LLM.BLOCK_COUNT, 0) or 0
    dim = f.arch_get(Keys.LLM.EMBEDDING_LENGTH, 0) or 0
    n_ff = f.arch_get(Keys.LLM.FEED_FORWARD_LENGTH, 0) or 0
    if hasattr(n_ff, "__len__"):
        n_ff = max(n_ff)
    heads = _per_layer(f.arch_get(Keys.Attention.HEAD_COUNT), n_layer)
    kv_heads = _per_layer(
        f.arch_get(Keys.Attention.HEAD_COUNT_KV) or f.arch_get(Keys.Attention.HEAD_COUNT), n_layer
    )
    n_head = max(heads) if heads else 0
    head_k = f.arch_get(Keys.Attention.KEY_LENGTH) or (dim // n_head if n_head else 0)
    head_v = f.arch_get(Keys.Attention.VALUE_LENGTH) or head_k
    n_vocab = f.arch_get(Keys.LLM.VOCAB_SIZE) or len(f.get(Keys.Tokenizer.TOKENS) or [])

    positions = kv_positions_per_layer(f, n_ctx)
    kv = sum(
        p * kvh * (head_k + head_v) * KV_BYTES for p, kvh in zip(positions, kv_heads, strict=False)
    )
    batch = min(PREFILL_BATCH, n_ctx)
    # residual, norm, q/k/v/attention output, gate/up, attention scores for one head group, logits
    compute = 4 * (
        batch * (4 * dim + n_head * (head_k + head_v) + 2 * n_ff) + n_head * batch * n_ctx + n_vocab
    )
    weights = sum(t.nbytes for t in f.tensors.values())
    return MemoryEstimate(n_ctx, weights, kv, compute)
