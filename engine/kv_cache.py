"""The KV cache: per layer, keys and values of every cached position as f16 (uint16 bits).

Layout per layer: k, v (n_kv_head, rows, head_dim) — one head's positions contiguous, the
order attention reads them. Full-context layers have rows = n_ctx; sliding-window layers
keep a ring of window + n_batch rows (see kernels/attention.py), which is all they can read.
"""

from __future__ import annotations

import numpy as np
import psutil

from .archs.base import KVLayout

KV_ITEM_BYTES = 2  # f16
DEFAULT_N_CTX = 4096
MIN_N_CTX = 16
MEMORY_FRACTION = 0.5  # the cache may take at most this share of the available memory


class ContextLengthError(ValueError):
    """Tokens that do not fit the context, or a context the machine cannot hold."""


def layer_rows(layout: KVLayout, n_ctx: int, n_batch: int) -> int:
    if layout.window <= 0:
        return n_ctx
    return min(n_ctx, layout.window + n_batch)


def cache_nbytes(layouts: list[KVLayout], n_ctx: int, n_batch: int) -> int:
    return sum(
        layer_rows(lay, n_ctx, n_batch)
        * lay.n_kv_head
        * (lay.head_dim_k + lay.head_dim_v)
        * KV_ITEM_BYTES
        for lay in layouts
    )


def choose_n_ctx(
    requested: int | None,
    n_ctx_train: int,
    layouts: list[KVLayout],
    n_batch: int,
    available: int | None = None,
) -> int:
    """The context length to allocate.

    None: min(DEFAULT_N_CTX, the model's trained context), shrunk to fit MEMORY_FRACTION of
    the available memory. 0: the model's trained context. Otherwise the number asked for.
    An explicit request the memory cannot hold is an error, not a silent shrink.
    """
    if available is None:
        available = psutil.virtual_memory().available
    budget = int(available * MEMORY_FRACTION)
    if requested is None:
        n_ctx = min(DEFAULT_N_CTX, n_ctx_train) if n_ctx_train > 0 else DEFAULT_N_CTX
        while n_ctx > MIN_N_CTX and cache_nbytes(layouts, n_ctx, n_batch) > budget:
            n_ctx //= 2
        return max(n_ctx, MIN_N_CTX)
    if requested < 0:
        raise ContextLengthError(f"n_ctx must be positive (or 0 for the model's), got {requested}")
    n_ctx = requested or n_ctx_train
    need = cache_nbytes(layouts, n_ctx, n_batch)
    if need > budget:
        raise ContextLengthError(
            f"a context of {n_ctx} tokens needs a {need / 2**20:.0f} MiB KV cache, more than "
            f"half of the {available / 2**20:.0f} MiB available; ask for a smaller n_ctx"
        )
    return n_ctx


class KVCache:
    """Keys and values of the tokens evaluated so far, at positions 0 .. n_past - 1."""

    def __init__(self, layouts: list[KVLayout], n_ctx: int, n_batch: int):
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.layouts = layouts
        self.k: list[np.ndarray] = []  # per layer (n_kv_head, rows, head_dim_k) uint16
        self.v: list[np.ndarray] = []  # per layer (n_kv_head, rows, head_dim_v) uint16
        for lay in layouts:
            rows = layer_rows(lay, n_ctx, n_batch)
            # np.zeros maps untouched pages lazily: memory grows with use, not with n_ctx
            self.k.append(np.zeros((lay.n_kv_head, rows, lay.head_dim_k), np.uint16))
            self.v.append(np.zeros((lay.n_kv_head, rows, lay.head_dim_v), np.uint16))
        self.tokens: list[int] = []  # the token at each cached position

    @property
    def n_past(self) -> int:
        return len(self.tokens)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.k) + sum(a.nbytes for a in self.v)

    def layer(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.k[i], self.v[i]

    def clear(self) -> None:
        self.tokens.clear()

    def rewind(self, n: int) -> int:
        """Keep only the first n positions; returns how many are really kept.

        A ring (sliding-window) layer has overwritten the oldest keys; going back more than
        rows - window + 1 positions would need some of them, so then nothing is kept.
        """
        n = max(0, min(n, self.n_past))
        back = self.n_past - n
        for lay, k in zip(self.layouts, self.k, strict=True):
            rows = k.shape[1]
            if lay.window > 0 and rows < self.n_ctx and back > rows - lay.window + 1:
                n = 0
                break
        del self.tokens[n:]
        return n
