"""The vocabulary part of a GGUF tokenizer: token texts, attributes, special ids, flags.

Read from `tokenizer.ggml.*` metadata the way llama.cpp's llama_vocab::load reads it,
including its defaults for missing keys and its detection of end-of-turn and
end-of-generation tokens by their text.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..formats.keys import Keys, TokenType
from .tokenizer_bpe import BYTE_TO_CHAR
from .tokenizer_pretok import PreTokenizer, resolve_pre_tokenizer

log = logging.getLogger(__name__)

K = Keys.Tokenizer


class TokenizerError(ValueError):
    """The file's tokenizer metadata cannot be used, or a token id is out of range."""


class TokenAttr(enum.IntFlag):
    """llama.cpp's llama_token_attr bits."""

    UNDEFINED = 0
    UNKNOWN = 1 << 0
    UNUSED = 1 << 1
    NORMAL = 1 << 2
    CONTROL = 1 << 3
    USER_DEFINED = 1 << 4
    BYTE = 1 << 5
    NORMALIZED = 1 << 6
    LSTRIP = 1 << 7
    RSTRIP = 1 << 8
    SINGLE_WORD = 1 << 9


_ATTR_OF_TYPE = {
    TokenType.NORMAL: TokenAttr.NORMAL,
    TokenType.UNKNOWN: TokenAttr.UNKNOWN,
    TokenType.CONTROL: TokenAttr.CONTROL,
    TokenType.USER_DEFINED: TokenAttr.USER_DEFINED,
    TokenType.UNUSED: TokenAttr.UNUSED,
    TokenType.BYTE: TokenAttr.BYTE,
}

# texts llama.cpp recognises when the file does not name these tokens (first found wins)
EOT_TEXTS = (
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<\uff5cend\u2581of\u2581sentence\uff5c>", "<end_of_utterance>",
)  # fmt: skip
EOM_TEXTS = ("<|eom_id|>",)
FIM_TEXTS = {
    K.FIM_PRE_ID: ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
                   "<\uff5cfim\u2581begin\uff5c>", "<PRE>", "\u2581<PRE>", "<|code_prefix|>",
                   "<|prefix|>"),
    K.FIM_SUF_ID: ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
                   "<\uff5cfim\u2581hole\uff5c>", "<SUF>", "\u2581<SUF>", "<|code_suffix|>",
                   "<|suffix|>"),
    K.FIM_MID_ID: ("<|fim_middle|>", "<fim-middle>", "<fim_middle>",
                   "<\uff5cfim\u2581end\uff5c>", "<MID>", "\u2581<MID>", "<|code_middle|>",
                   "<|middle|>"),
    K.FIM_PAD_ID: ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>",
                                        "[PAD]"),
    K.FIM_REP_ID: ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                        "<REPO>", "<reponame>"),
    K.FIM_SEP_ID: ("<|file_sep|>",),
}  # fmt: skip
# every token with one of these texts ends generation
EOG_TEXTS = (
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\uff5cend\u2581of\u2581sentence\uff5c>", "[e~[",
)  # fmt: skip
# gpt-oss: always rendered, never control
ALWAYS_RENDERED = ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>")


def _as_bool(value: Any, key: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TokenizerError(f"{key} should be a bool, not {type(value).__name__}")


@dataclass
class Vocab:
    """Token texts and everything llama.cpp derives from the metadata around them."""

    model: str  # "gpt2" (byte-level BPE) or "llama" (SentencePiece)
    texts: list[str]  # (n_vocab,) token texts as stored
    attrs: np.ndarray  # (n_vocab,) uint16 TokenAttr bits
    scores: np.ndarray | None  # (n_vocab,) float32, SentencePiece merge priorities
    merges: list[str]  # byte-level BPE merges "left right", in rank order
    pre_name: str | None  # resolved pre-tokenizer name (BPE only)
    pre: PreTokenizer | None
    ids: dict[str, int]  # text -> id
    special: dict[str, int | None]  # role -> id: bos eos eot eom unk sep pad mask fim_*
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    clean_spaces: bool
    eog_ids: frozenset[int]
    special_cache: list[int] = field(default_factory=list)  # split out of text, longest first

    @property
    def n_vocab(self) -> int:
        return len(self.texts)

    @property
    def is_spm(self) -> bool:
        return self.model == "llama"

    def has(self, tid: int, attr: TokenAttr) -> bool:
        return bool(int(self.attrs[tid]) & attr)

    def byte_token(self, byte: int) -> int | None:
        """The token for one raw byte (<0xNN> in SentencePiece, a byte-level char in BPE)."""
        if self.is_spm:
            tid = self.ids.get(f"<0x{byte:02X}>")
            return tid if tid is not None else self.ids.get(chr(byte))
        return self.ids.get(BYTE_TO_CHAR[byte])


def _string_list(meta: Mapping[str, Any], key: str, required: bool) -> list[str]:
    value = meta.get(key)
    if value is None:
        if required:
            raise TokenizerError(f"tokenizer metadata has no {key}")
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) for s in value):
        raise TokenizerError(f"{key} should be an array of strings")
    return list(value)


def _number_array(meta: Mapping[str, Any], key: str, n: int, dtype) -> np.ndarray | None:
    value = meta.get(key)
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.dtype.kind not in "iuf" or len(arr) < n:
        raise TokenizerError(f"{key} should be a numeric array of at least {n} entries")
    return arr[:n].astype(dtype)


def load_vocab(meta: Mapping[str, Any]) -> Vocab:
    """Build the vocabulary from a GGUF metadata mapping (key -> value)."""
    model = meta.get(K.MODEL)
    if not isinstance(model, str):
        raise TokenizerError(f"tokenizer metadata has no {K.MODEL}")
    if model not in ("gpt2", "llama"):
        raise TokenizerError(
            f"tokenizer model {model!r} is not supported (supported: 'gpt2' BPE, 'llama' SPM)"
        )
    texts = _string_list(meta, K.TOKENS, required=True)
    n = len(texts)
    if n == 0:
        raise TokenizerError(f"{K.TOKENS} is empty")

    # defaults by model family, as llama.cpp sets them before reading the keys
    if model == "llama":
        special: dict[str, int | None] = {"bos": 1, "eos": 2, "unk": 0}
        add_bos, add_space_prefix, clean_spaces = True, True, False
        pre_name, pre, merges = None, None, []
    else:
        special = {"bos": 11, "eos": 11, "unk": None}
        try:
            pre_name, pre = resolve_pre_tokenizer(meta.get(K.PRE))
        except ValueError as e:
            raise TokenizerError(str(e)) from None
        merges = _string_list(meta, K.MERGES, required=True)
        add_bos, add_space_prefix, clean_spaces = pre.add_bos, False, pre.clean_spaces
        if not pre.has_bos:
            special["bos"] = None
    add_eos = False
    if K.ADD_SPACE_PREFIX in meta:
        add_space_prefix = _as_bool(meta[K.ADD_SPACE_PREFIX], K.ADD_SPACE_PREFIX)

    # empty texts get llama.cpp's placeholder; duplicates make ids ambiguous
    for i, t in enumerate(texts):
        if not t:
            texts[i] = f"[EMPTY_{i}]"
    ids = {t: i for i, t in enumerate(texts)}
    if len(ids) != n:
        seen: dict[str, int] = {}
        for i, t in enumerate(texts):
            if t in seen:
                raise TokenizerError(f"duplicate token {t!r} in the vocabulary: ids {seen[t]}, {i}")
            seen[t] = i

    scores = _number_array(meta, K.SCORES, n, np.float32)
    types = _number_array(meta, K.TOKEN_TYPE, n, np.int64)
    attr_table = np.zeros(8, np.uint16)
    for ttype, attr in _ATTR_OF_TYPE.items():
        attr_table[ttype] = int(attr)
    if types is None:
        attrs = np.full(n, int(TokenAttr.NORMAL), np.uint16)
    else:
        attrs = attr_table[np.where((types >= 0) & (types < 8), types, 0)]

    # ids the file names override the defaults when in range
    id_keys = {
        "bos": K.BOS_ID, "eos": K.EOS_ID, "eot": K.EOT_ID, "eom": K.EOM_ID, "unk": K.UNK_ID,
        "sep": K.SEP_ID, "pad": K.PAD_ID, "mask": K.MASK_ID, "fim_pre": K.FIM_PRE_ID,
        "fim_suf": K.FIM_SUF_ID, "fim_mid": K.FIM_MID_ID,
        "fim_pad": K.FIM_PAD_ID, "fim_rep": K.FIM_REP_ID, "fim_sep": K.FIM_SEP_ID,
    }  # fmt: skip
    for role, key in id_keys.items():
        tid = special.get(role)
        if tid is not None and tid >= n:
            tid = None
        value = meta.get(key)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if 0 <= value < n:
                tid = int(value)
            else:
                log.warning("%s = %s is out of the vocabulary; ignored", key, value)
        special[role] = tid

    if K.ADD_BOS in meta:
        add_bos = _as_bool(meta[K.ADD_BOS], K.ADD_BOS)
    if K.ADD_EOS in meta:
        add_eos = _as_bool(meta[K.ADD_EOS], K.ADD_EOS)
    if add_bos and special["bos"] is None:
        raise TokenizerError(f"{K.ADD_BOS} is true, but {K.BOS_ID} is not set")
    if add_eos and special["eos"] is None:
        raise TokenizerError(f"{K.ADD_EOS} is true, but {K.EOS_ID} is not set")

    def mark_control(tid: int) -> None:
        attrs[tid] |= int(TokenAttr.CONTROL)

    # end-of-turn / end-of-message / fill-in-the-middle tokens found by their text
    for role, candidates in (("eot", EOT_TEXTS), ("eom", EOM_TEXTS)):
        if special[role] is None:
            special[role] = next((ids[t] for t in candidates if t in ids), None)
            if special[role] is not None:
                mark_control(special[role])
    for key, candidates in FIM_TEXTS.items():
        role = next(r for r, k in id_keys.items() if k == key)
        if special[role] is None:
            special[role] = next((ids[t] for t in candidates if t in ids), None)
            if special[role] is not None:
                mark_control(special[role])

    # control tokens named "unused" are unused
    for tid in np.nonzero(attrs & int(TokenAttr.CONTROL))[0]:
        if "unused" in texts[tid]:
            attrs[tid] |= int(TokenAttr.UNUSED)

    eog = {special[r] for r in ("fim_pad", "fim_rep", "fim_sep") if special[r] is not None}
    for t in EOG_TEXTS:
        if t in ids:
            eog.add(ids[t])
            mark_control(ids[t])
    for t in ALWAYS_RENDERED:
        if t in ids:
            attrs[ids[t]] = int(TokenAttr.USER_DEFINED)
    eog |= {special[r] for r in ("eos", "eot", "eom") if special[r] is not None}
    eog_texts = {texts[i] for i in eog}
    # harmony-style vocabularies: <|end|> ends a message, not the generation
    if "<|end|>" in eog_texts and (
        {"<|return|>", "<|call|>"} <= eog_texts or {"<|calls|>", "<|flush|>"} <= eog_texts
    ):
        eog.discard(ids["<|end|>"])
        attrs[ids["<|end|>"]] = int(TokenAttr.USER_DEFINED)
    if {"<|tool_response>", "</s>"} <= eog_texts:
        eog.discard(ids["</s>"])
        attrs[ids["</s>"]] = int(TokenAttr.NORMAL)

    # tokens split out of raw text before the model's tokenizer runs, longest (in bytes) first
    cache_mask = int(TokenAttr.CONTROL | TokenAttr.USER_DEFINED | TokenAttr.UNKNOWN)
    cached = np.nonzero(attrs & cache_mask)[0].tolist()
    cached.sort(key=lambda i: (-len(texts[i].encode("utf-8", "surrogateescape")), i))

    # Phi-3 files: whitespace after special tokens belongs to them
    name = meta.get(Keys.General.NAME)
    if isinstance(name, str) and ("phi-3" in name.lower() or "phi3" in name.lower()):
        for tid in cached:
            attrs[tid] |= int(TokenAttr.RSTRIP)
        if "</s>" in ids:
            attrs[ids["</s>"]] |= int(TokenAttr.RSTRIP)
        for t in ("<unk>", "<s>", "<|endoftext|>"):
            if t in ids:
                attrs[ids[t]] &= ~int(TokenAttr.RSTRIP) & 0xFFFF

    return Vocab(
        model=model,
        texts=texts,
        attrs=attrs,
        scores=scores,
        merges=merges,
        pre_name=pre_name,
        pre=pre,
        ids=ids,
        special=special,
        add_bos=add_bos,
        add_eos=add_eos,
        add_space_prefix=add_space_prefix,
        clean_spaces=clean_spaces,
        eog_ids=frozenset(eog),
        special_cache=cached,
    )
