"""A GGUF file loaded into its architecture: packed weights, scratch, KV cache, evaluation.

    model = Model.load(path, n_ctx=2048)
    logits = model.eval(tokens)                 # (n_vocab,) logits of the last token
    logits = model.eval(tokens, logits="all")   # (n, n_vocab)

`eval` appends tokens to the cache: prefill runs batches of up to n_batch tokens through the
matrix-matrix kernels, a single token goes through the matrix-vector ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numba
import numpy as np
import psutil

from ..formats.gguf_reader import GGUFFile
from ..kernels import linear
from .archs import get_architecture
from .kv_cache import ContextLengthError, KVCache, cache_nbytes, choose_n_ctx

DEFAULT_N_BATCH = 512
LOGITS_CHUNK = 64  # rows of logits computed at once when all positions are wanted


def default_threads() -> int:
    """Physical cores (hyper-threads share the memory bandwidth decode is bound by)."""
    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    return max(1, min(cores, numba.config.NUMBA_NUM_THREADS))


class Model:
    def __init__(
        self,
        path: str | os.PathLike,
        n_ctx: int | None = None,
        n_batch: int = DEFAULT_N_BATCH,
        n_threads: int | None = None,
    ):
        self.path = Path(path)
        self.file = GGUFFile(self.path)  # stays open: packed weights may view its mapping
        self.metadata = self.file.metadata
        self.arch_name = self.file.architecture
        cls = get_architecture(self.arch_name)
        args = cls.Args.from_gguf(self.file)
        layouts = cls.kv_layout(args)
        if n_batch < 1:
            raise ValueError(f"n_batch must be at least 1, got {n_batch}")
        self.n_ctx = choose_n_ctx(n_ctx, args.n_ctx_train, layouts, min(n_batch, n_ctx or n_batch))
        self.n_batch = min(n_batch, self.n_ctx)
        self.n_threads = self._check_threads(n_threads)
        self.arch = cls(self.file, self.n_batch, self.n_ctx)
        self.args = args
        self.n_vocab = args.n_vocab
        self.n_embd = args.dim
        self.n_ctx_train = args.n_ctx_train
        self.cache = KVCache(layouts, self.n_ctx, self.n_batch)
        self._last_logits = np.empty((1, self.n_vocab), np.float32)  # (1, n_vocab)
        self._logits_chunk = None  # (LOGITS_CHUNK, n_vocab), made when first needed

    @staticmethod
    def _check_threads(n_threads: int | None) -> int:
        if n_threads is None:
            return default_threads()
        if not 1 <= n_threads <= numba.config.NUMBA_NUM_THREADS:
            raise ValueError(
                f"n_threads must be between 1 and {numba.config.NUMBA_NUM_THREADS}, got {n_threads}"
            )
        return int(n_threads)

    # -- sizes ------------------------------------------------------------------------------

    @property
    def n_past(self) -> int:
        return self.cache.n_past

    @property
    def weights_nbytes(self) -> int:
        return sum(t.nbytes for t in self.file.tensors.values())

    @property
    def kv_nbytes(self) -> int:
        return cache_nbytes(self.cache.layouts, self.n_ctx, self.n_batch)

    # -- evaluation -------------------------------------------------------------------------

    def _check_fits(self, n_new: int) -> None:
        if self.n_past + n_new > self.n_ctx:
            raise ContextLengthError(
                f"{self.n_past} cached + {n_new} new tokens exceed the context of "
                f"{self.n_ctx} tokens; create the model with a larger n_ctx"
            )

    def _tokens_array(self, tokens) -> np.ndarray:
        ids = np.ascontiguousarray(tokens, dtype=np.int32).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.n_vocab):
            bad = int(ids[(ids < 0) | (ids >= self.n_vocab)][0])
            raise ValueError(f"token id {bad} is outside the vocabulary of {self.n_vocab}")
        return ids

    def _batches(self, ids: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Run ids through the model batch by batch; yields (start index, hidden (n, dim))."""
        self._check_fits(len(ids))
        linear.set_num_threads(self.n_threads)  # Numba's thread count is per calling thread
        for start in range(0, len(ids), self.n_batch):
            batch = ids[start : start + self.n_batch]  # (n,)
            positions = np.arange(self.n_past, self.n_past + len(batch), dtype=np.int32)
            hidden = self.arch.forward(batch, positions, self.cache)  # (n, dim)
            self.cache.tokens.extend(int(t) for t in batch)
            yield start, hidden

    def eval(self, tokens, logits: str = "last") -> np.ndarray | None:
        """Append tokens to the cache. logits: "last" -> (n_vocab,) of the last token, a view
        reused by the next call; "all" -> (n, n_vocab), a new array; "none" -> None."""
        ids = self._tokens_array(tokens)
        if ids.size == 0:
            raise ValueError("eval needs at least one token")
        if logits == "all":
            out = np.empty((len(ids), self.n_vocab), np.float32)
            for start, chunk in self.eval_logits(ids):
                out[start : start + len(chunk)] = chunk
            return out
        if logits not in ("last", "none"):
            raise ValueError(f"logits must be 'last', 'all' or 'none', got {logits!r}")
        last = None
        for _, hidden in self._batches(ids):
            last = hidden[-1:]  # (1, dim)
        if logits == "none":
            return None
        self.arch.logits(last, self._last_logits)
        return self._last_logits[0]

    def eval_logits(self, tokens, first_row: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """Append tokens; yield (index of first row, logits (m, n_vocab)) for every token from
        first_row on, in chunks of at most LOGITS_CHUNK rows (a reused buffer: copy what you
        keep). Rows before first_row cost no output projection."""
        ids = self._tokens_array(tokens)
        if self._logits_chunk is None:
            self._logits_chunk = np.empty((LOGITS_CHUNK, self.n_vocab), np.float32)
        for start, hidden in self._batches(ids):
            skip = min(max(first_row - start, 0), len(hidden))
            for row in range(skip, len(hidden), LOGITS_CHUNK):
                rows = hidden[row : row + LOGITS_CHUNK]  # (m, dim)
                out = self._logits_chunk[: len(rows)]  # (m, n_vocab)
                self.arch.logits(rows, out)
                yield start + row, out

    def eval_hidden(self, tokens) -> np.ndarray:
        """Append tokens; the final normed hidden state of each, (n, n_embd) (a new array)."""
        ids = self._tokens_array(tokens)
        out = np.empty((len(ids), self.n_embd), np.float32)
        for start, hidden in self._batches(ids):
            out[start : start + len(hidden)] = hidden
        return out

    def reset(self) -> None:
        """Forget every cached token."""
        self.cache.clear()

    def rewind(self, n: int) -> int:
        """Keep the first n cached tokens (fewer if a sliding-window ring lost them)."""
        return self.cache.rewind(n)

    def close(self) -> None:
        self.file.close()

    def __repr__(self) -> str:
        return (
            f"Model({self.path.name!r}, arch={self.arch_name}, n_ctx={self.n_ctx}, "
            f"n_threads={self.n_threads})"
        )
