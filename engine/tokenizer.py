"""Tokenizer built from a GGUF file's own metadata, giving the same tokens as llama.cpp.

    tok = Tokenizer.from_metadata(gguf_file.metadata)
    ids = tok.tokenize("Hello", add_special=True, parse_special=False)
    text = tok.detokenize(ids)

Text is first cut at special tokens (control tokens only when parse_special; user-defined
tokens always), as llama.cpp's tokenizer_st_partition does; each remaining fragment goes
through the model's tokenizer (byte-level BPE or SentencePiece, both run by the `tokenizers`
library); BOS/EOS are added per the file's flags.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .tokenizer_bpe import build_bpe, decode_byte_level
from .tokenizer_spm import build_spm, escape_spaces, unescape_spaces
from .tokenizer_vocab import TokenAttr, TokenizerError, Vocab, load_vocab

__all__ = ["IncrementalDetokenizer", "Tokenizer", "TokenizerError"]

_HIDDEN = int(TokenAttr.CONTROL | TokenAttr.UNKNOWN)  # rendered only when asked for specials
_VERBATIM = _HIDDEN | int(TokenAttr.USER_DEFINED)  # rendered as their text
_C_SPACE = " \t\n\v\f\r"  # C isspace(), what LSTRIP/RSTRIP strip


class Tokenizer:
    """Text <-> token ids for one GGUF vocabulary."""

    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        # lone surrogates (undecodable bytes in the file) cannot reach `tokenizers`
        hf_vocab = (
            {t: i for t, i in vocab.ids.items() if not _has_surrogate(t)}
            if _has_surrogate("".join(vocab.ids))
            else dict(vocab.ids)
        )
        if vocab.is_spm:
            if vocab.scores is None:
                raise TokenizerError("a SentencePiece vocabulary needs tokenizer.ggml.scores")
            self._hf = build_spm(hf_vocab, vocab.scores)
        else:
            merges = [m for m in vocab.merges if not _has_surrogate(m)]
            self._hf = build_bpe(hf_vocab, merges, vocab.pre)
        self._pieces: list[bytes | None] = [None] * vocab.n_vocab
        nl = self.tokenize("\n", add_special=False) if not vocab.is_spm else []
        self.nl_id = vocab.byte_token(0x0A) if vocab.is_spm else (nl[0] if nl else self.pad_id)

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> Tokenizer:
        """From a GGUF metadata mapping (as GGUFFile.metadata gives it)."""
        return cls(load_vocab(meta))

    # -- vocabulary facts -----------------------------------------------------------------

    @property
    def n_vocab(self) -> int:
        return self.vocab.n_vocab

    @property
    def bos_id(self) -> int | None:
        return self.vocab.special["bos"]

    @property
    def eos_id(self) -> int | None:
        return self.vocab.special["eos"]

    @property
    def eot_id(self) -> int | None:
        return self.vocab.special["eot"]

    @property
    def eom_id(self) -> int | None:
        return self.vocab.special["eom"]

    @property
    def unk_id(self) -> int | None:
        return self.vocab.special["unk"]

    @property
    def pad_id(self) -> int | None:
        return self.vocab.special["pad"]

    @property
    def add_bos(self) -> bool:
        return self.vocab.add_bos

    @property
    def add_eos(self) -> bool:
        return self.vocab.add_eos

    @property
    def eog_ids(self) -> frozenset[int]:
        """Tokens that end generation (EOS, end of turn, and the like)."""
        return self.vocab.eog_ids

    def is_eog(self, token_id: int) -> bool:
        return token_id in self.vocab.eog_ids

    def token_text(self, token_id: int) -> str:
        """The vocabulary entry as stored in the file (e.g. 'Ġworld', '▁world', '<0x0A>')."""
        self._check_id(token_id)
        return self.vocab.texts[token_id]

    def token_attr(self, token_id: int) -> TokenAttr:
        self._check_id(token_id)
        return TokenAttr(int(self.vocab.attrs[token_id]))

    @property
    def bos_text(self) -> str | None:
        return None if self.bos_id is None else self.vocab.texts[self.bos_id]

    @property
    def eos_text(self) -> str | None:
        return None if self.eos_id is None else self.vocab.texts[self.eos_id]

    # -- text -> ids ----------------------------------------------------------------------

    def tokenize(
        self, text: str, add_special: bool = True, parse_special: bool = False
    ) -> list[int]:
        """Token ids of `text`.

        add_special: add BOS/EOS as the file's flags say.
        parse_special: recognise control tokens written in the text (e.g. '<|im_start|>');
        user-defined tokens are always recognised, as in llama.cpp.
        """
        if not isinstance(text, str):
            raise TypeError(f"tokenize takes a str, not {type(text).__name__}")
        vocab = self.vocab
        out: list[int] = []
        if add_special and vocab.add_bos:
            out.append(vocab.special["bos"])
        prev_special = True  # SentencePiece: a fragment after a special token gets a space
        for frag in self._partition(text, parse_special) if text else ():
            if isinstance(frag, int):
                out.append(frag)
                prev_special = True
                continue
            if vocab.is_spm:
                if vocab.add_space_prefix and prev_special:
                    frag = " " + frag
                frag = escape_spaces(frag)
            out.extend(self._encode_fragment(frag))
            prev_special = False
        if add_special and vocab.add_eos:
            out.append(vocab.special["eos"])
        return out

    def tokenize_chat(self, rendered: str) -> list[int]:
        """Tokens of a rendered chat template: special tokens parsed, never a doubled BOS.

        The BOS the file asks for is added only when the rendering does not already start
        with the BOS text.
        """
        return self.drop_double_bos(self.tokenize(rendered, add_special=True, parse_special=True))

    def drop_double_bos(self, ids: Sequence[int]) -> list[int]:
        """Drop a leading BOS added by tokenization when a second BOS follows it."""
        ids = list(ids)
        bos = self.bos_id
        if self.add_bos and bos is not None and len(ids) >= 2 and ids[0] == bos == ids[1]:
            return ids[1:]
        return ids

    def _encode_fragment(self, frag: str) -> list[int]:
        try:
            return self._hf.encode(frag, add_special_tokens=False).ids
        except Exception as e:  # `tokenizers` rejects text Python cannot encode as UTF-8
            if _has_surrogate(frag):
                raise TokenizerError("text contains lone surrogates, not valid Unicode") from None
            raise TokenizerError(f"tokenization failed: {e}") from None

    def _partition(self, text: str, parse_special: bool) -> list[str | int]:
        """Cut `text` at special tokens, longest first, as llama.cpp does."""
        vocab = self.vocab
        frags: list[str | int] = [text]
        for tid in vocab.special_cache:
            attr = int(vocab.attrs[tid])
            if not parse_special and attr & _HIDDEN:
                continue
            special = vocab.texts[tid]
            if special not in text:
                continue
            lstrip = attr & TokenAttr.LSTRIP
            rstrip = attr & TokenAttr.RSTRIP
            new: list[str | int] = []
            for frag in frags:
                if isinstance(frag, int) or special not in frag:
                    new.append(frag)
                    continue
                parts = frag.split(special)
                last = len(parts) - 1
                for j, part in enumerate(parts):
                    if j > 0:
                        new.append(tid)
                        if rstrip:
                            part = part.lstrip(_C_SPACE)
                    if j < last and lstrip:
                        part = part.rstrip(_C_SPACE)
                    if part:
                        new.append(part)
            frags = new
        return frags

    # -- ids -> text ----------------------------------------------------------------------

    def token_to_piece(self, token_id: int, special: bool = False) -> bytes:
        """The bytes one token stands for (may be part of a UTF-8 character).

        Control and unknown tokens give b"" unless `special`.
        """
        self._check_id(token_id)
        attr = int(self.vocab.attrs[token_id])
        if not special and attr & _HIDDEN:
            return b""
        piece = self._pieces[token_id]
        if piece is None:
            piece = self._pieces[token_id] = self._make_piece(token_id, attr)
        return piece

    def _make_piece(self, token_id: int, attr: int) -> bytes:
        text = self.vocab.texts[token_id]
        if attr & _VERBATIM:
            return text.encode("utf-8", "surrogateescape")
        if attr & TokenAttr.NORMAL:
            if self.vocab.is_spm:
                return unescape_spaces(text).encode("utf-8", "surrogateescape")
            return decode_byte_level(text)
        if attr & TokenAttr.BYTE:
            try:
                return bytes([int(text[3:5], 16)])
            except ValueError:
                raise TokenizerError(f"byte token {token_id} is {text!r}, not <0xNN>") from None
        return b""  # unused and undefined tokens render as nothing

    def detokenize_bytes(
        self, ids: Iterable[int], special: bool = False, remove_special: bool = False
    ) -> bytes:
        """llama.cpp's llama_detokenize: pieces joined, then its space clean-up."""
        ids = list(ids)
        vocab = self.vocab
        remove_space = vocab.add_space_prefix
        if remove_special and vocab.add_bos and ids and ids[0] == self.bos_id:
            remove_space = False
            ids = ids[1:]
        if remove_special and vocab.add_eos and ids and ids[-1] == self.eos_id:
            ids = ids[:-1]
        out = bytearray()
        for tid in ids:
            piece = self.token_to_piece(tid, special)
            if remove_space and piece[:1] == b" ":
                piece = piece[1:]
            remove_space = False
            out += piece
        if vocab.clean_spaces:
            _clean_spaces(out)
        return bytes(out)

    def detokenize(
        self, ids: Iterable[int], special: bool = False, remove_special: bool = False
    ) -> str:
        """Text of `ids` (invalid UTF-8 becomes U+FFFD).

        special: render control tokens as their text.
        remove_special: drop the leading BOS / trailing EOS the file's flags would add.
        """
        return self.detokenize_bytes(ids, special, remove_special).decode("utf-8", "replace")

    def stream(self, special: bool = False) -> IncrementalDetokenizer:
        """An incremental detokenizer for generated tokens."""
        return IncrementalDetokenizer(self, special)

    def _check_id(self, token_id: int) -> None:
        if not 0 <= token_id < self.vocab.n_vocab:
            raise TokenizerError(
                f"token id {token_id} is outside the vocabulary (0..{self.vocab.n_vocab - 1})"
            )


class IncrementalDetokenizer:
    """Text of a token stream, released only in whole UTF-8 characters.

    push(id) returns the text that became complete; a character whose bytes are spread over
    several tokens (byte tokens <0xNN>, byte-level BPE pieces) is held until its last byte
    arrives. Pieces are joined as llama.cpp streams them (no space clean-up).
    """

    def __init__(self, tokenizer: Tokenizer, special: bool = False):
        self.tokenizer = tokenizer
        self.special = special
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._decoder.decode(self.tokenizer.token_to_piece(token_id, self.special))

    def push_many(self, ids: Iterable[int]) -> str:
        return "".join(self.push(t) for t in ids)

    def flush(self) -> str:
        """Whatever is held (an unfinished character becomes U+FFFD); resets the stream."""
        return self._decoder.decode(b"", final=True)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _clean_spaces(text: bytearray) -> None:
    """llama.cpp's clean_up_tokenization_spaces passes, in place on the bytes."""
    if not any(p in text for p in (b" ?", b" !", b" .", b" ,", b" '")):
        return
    # drop the space before ? ! . ,
    n, total = len(text), 1 if text else 0
    for i in range(1, n):
        x = text[i]
        if text[i - 1] == 0x20 and x in b"?!.,":
            total -= 1
        text[total] = x
        total += 1
    del text[total:]
    # " ' " -> "'"
    n, total, i = len(text), 1 if text else 0, 1
    while i < n:
        x = text[i]
        if x == 0x27 and i + 1 < n and text[i - 1] == 0x20 and text[i + 1] == 0x20:
            total -= 1
            i += 1
            text[i] = 0
        text[total] = x
        total += 1
        i += 1
    del text[total:]
    # " 's", " 'm", " 're", " 've" lose their space
    n, total = len(text), 1 if text else 0
    for i in range(1, n):
        x = text[i]
        if text[i - 1] == 0x20 and x == 0x27 and i + 1 < n:
            x1 = text[i + 1]
            if x1 in b"sm" or (i + 2 < n and text[i + 1 : i + 3] in (b"re", b"ve")):
                total -= 1
        text[total] = x
        total += 1
    del text[total:]
