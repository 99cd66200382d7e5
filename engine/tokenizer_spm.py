"""SentencePiece-style tokenizer (`tokenizer.ggml.model = llama`) on the `tokenizers` library.

llama.cpp's SPM session starts from single characters and repeatedly merges the adjacent
pair whose concatenation is the vocabulary entry with the highest score (leftmost first on
ties); characters left over that are not entries become <0xNN> byte tokens. That is BPE
whose merge ranks are the scores of the merged entries, so the merges are derived here from
the vocabulary: every split of every entry into two entries, ranked by the entry's score.
"""

from __future__ import annotations

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models

SPACE = "\u2581"  # '▁', how SentencePiece writes a space inside pieces


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


def build_spm(vocab: dict[str, int], scores: np.ndarray) -> HFTokenizer:
    """A `tokenizers` pipeline for one fragment whose spaces are already written as '▁'."""
    merges = derive_merges(vocab, scores)
    model = models.BPE(vocab=vocab, merges=merges, byte_fallback=True, fuse_unk=False)
    return HFTokenizer(model)  # no normalizer, no pre-tokenizer: the fragment is one word


def escape_spaces(text: str) -> str:
    return text.replace(" ", SPACE)


def unescape_spaces(text: str) -> str:
    return text.replace(SPACE, " ")
