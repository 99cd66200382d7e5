"""SentencePiece-style tokenizer (`tokenizer.ggml.model = llama`) on the `tokenizers` library.

llama.cpp's SPM session starts from single characters and repeatedly merges the adjacent
pair whose concatenation is the vocabulary entry with the highest score (leftmost first on
ties); characters left over that are not entries become <0xNN> byte tokens. That is BPE
whose merge ranks are the scores of the merged entries, so the merges are derived here from
the vocabulary: every split of every entry into two entries, ranked by the entry's score.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models

SPACE = "\u2581"  # '▁', how SentencePiece writes a space inside pieces
MERGES_FORMAT = b"spm-merges-1"  # part of the cache key: change it when derive_merges changes


def derive_merges(vocab: dict[str, int], scores: np.ndarray) -> list[tuple[str, str]]:
    """All (left, right) pairs with left, right and left+right in the vocabulary.

    Ordered by the score of left+right, highest first; equal scores by token id.
    """
    ranked = []  # (-score, id of the merged entry, left, right)
    score_of = scores.tolist()
    for text, tid in vocab.items():
        for k in range(1, len(text)):
            left = text[:k]
            if left in vocab:
                right = text[k:]
                if right in vocab:
                    ranked.append((-score_of[tid], tid, left, right))
    ranked.sort()
    return [(left, right) for _, _, left, right in ranked]


def merges_cache_file(vocab: dict[str, int], scores: np.ndarray) -> Path:
    """Where the merges of this vocabulary are cached: named by a hash of everything they
    are derived from (a big vocabulary takes seconds to derive, milliseconds to load)."""
    from .catalog import cache_dir

    h = hashlib.sha256(MERGES_FORMAT)
    h.update("\0".join(vocab).encode("utf-8", "surrogatepass"))
    h.update(np.fromiter(vocab.values(), np.int64, len(vocab)).tobytes())
    h.update(np.ascontiguousarray(scores, np.float32).tobytes())
    return cache_dir() / ".tokenizers" / f"spm-merges-{h.hexdigest()[:32]}.npy"


def _load_merges(path: Path, vocab: dict[str, int]) -> list[tuple[str, str]] | None:
    try:
        pairs = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.dtype != np.int32:
        return None
    ids = np.fromiter(vocab.values(), np.int64, len(vocab))
    text_of = np.full(int(ids.max(initial=-1)) + 1, None, dtype=object)  # id -> text
    text_of[ids] = list(vocab)
    if pairs.size and (pairs.min() < 0 or pairs.max() >= text_of.size):
        return None  # not this vocabulary's ids: a damaged file
    left, right = text_of[pairs[:, 0]].tolist(), text_of[pairs[:, 1]].tolist()
    if None in left or None in right:
        return None
    return list(zip(left, right, strict=True))


def _save_merges(path: Path, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
    pairs = np.array([(vocab[a], vocab[b]) for a, b in merges], np.int32).reshape(-1, 2)
    with contextlib.suppress(OSError):  # a cache that cannot be written is only slower
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".merges-", suffix=".npy", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, pairs)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def cached_merges(vocab: dict[str, int], scores: np.ndarray) -> list[tuple[str, str]]:
    """derive_merges, through an on-disk cache."""
    path = merges_cache_file(vocab, scores)
    merges = _load_merges(path, vocab)
    if merges is None:
        merges = derive_merges(vocab, scores)
        _save_merges(path, vocab, merges)
    return merges


def build_spm(vocab: dict[str, int], scores: np.ndarray) -> HFTokenizer:
    """A `tokenizers` pipeline for one fragment whose spaces are already written as '▁'."""
    merges = cached_merges(vocab, scores)
    model = models.BPE(vocab=vocab, merges=merges, byte_fallback=True, fuse_unk=False)
    return HFTokenizer(model)  # no normalizer, no pre-tokenizer: the fragment is one word


def escape_spaces(text: str) -> str:
    return text.replace(" ", SPACE)


def unescape_spaces(text: str) -> str:
    return text.replace(SPACE, " ")
