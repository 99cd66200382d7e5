"""How much memory a model needs to run at a given context length."""

from __future__ import annotations

from dataclasses import dataclass

from ..formats.errors import FormatError
from ..formats.gguf_reader import GGUFFile
from ..formats.keys import Keys

KV_BYTES = 2  # the KV cache holds f16
PREFILL_BATCH = 512


@dataclass(frozen=True)
class MemoryEstimate:
    n_ctx: int
    weights: int  # bytes of tensor data (a repacked copy is never larger)
    kv_cache: int
    compute: int  # scratch for a prefill batch and the logits

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute


def kv_cache_bytes(f: GGUFFile, n_ctx: int, n_batch: int) -> int | None:
    """Bytes of the KV cache the runtime would allocate, or None for an unsupported model."""
    from .archs import UnsupportedModelError, get_architecture
    from .kv_cache import cache_nbytes

    try:
        arch = get_architecture(f.architecture)
        return cache_nbytes(arch.kv_layout(arch.Args.from_gguf(f)), n_ctx, n_batch)
    except (UnsupportedModelError, FormatError):
        return None


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

    batch = min(PREFILL_BATCH, n_ctx)
    kv = kv_cache_bytes(f, n_ctx, batch)
    if kv is None:  # an architecture llamba cannot run: every layer at full context
        kv = sum(n_ctx * kvh * (head_k + head_v) * KV_BYTES for kvh in kv_heads)
    # residual, norm, q/k/v/attention output, gate/up, attention scores for one head group, logits
    compute = 4 * (
        batch * (4 * dim + n_head * (head_k + head_v) + 2 * n_ff) + n_head * batch * n_ctx + n_vocab
    )
    weights = sum(t.nbytes for t in f.tensors.values())
    return MemoryEstimate(n_ctx, weights, kv, compute)
