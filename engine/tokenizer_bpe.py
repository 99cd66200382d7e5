"""Byte-level BPE (`tokenizer.ggml.model = gpt2`) on the `tokenizers` library.

Vocabulary entries are byte-level strings: every byte of the UTF-8 text is one printable
character (GPT-2's bytes_to_unicode table). Text is pre-tokenized by the file's regexes,
byte-encoded, and merged by rank with the file's merges, as llama.cpp's BPE session does.
"""

from __future__ import annotations

from tokenizers import Regex, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from .tokenizer_pretok import PreTokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table: printable Latin-1 bytes stand for themselves, the rest map above 255."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


BYTE_TO_CHAR: dict[int, str] = _bytes_to_unicode()
CHAR_TO_BYTE: dict[str, int] = {c: b for b, c in BYTE_TO_CHAR.items()}


def decode_byte_level(text: str) -> bytes:
    """Bytes a byte-level vocabulary entry stands for.

    A character outside the table becomes llama.cpp's "[UNK_BYTE_0x..]" marker.
    """
    out = bytearray()
    for ch in text:
        b = CHAR_TO_BYTE.get(ch)
        if b is not None:
            out.append(b)
        else:
            raw = ch.encode("utf-8", "surrogatepass")
            out += b"[UNK_BYTE_0x" + raw.hex().encode() + text.encode("utf-8", "surrogatepass")
            out += b"]"
    return bytes(out)


def split_merge(merge: str) -> tuple[str, str] | None:
    """'a b' -> ('a', 'b'), split at the first space after the first character."""
    pos = merge.find(" ", 1)
    if pos < 0:
        return None
    return merge[:pos], merge[pos + 1 :]


def build_bpe(vocab: dict[str, int], merges: list[str], pre: PreTokenizer) -> HFTokenizer:
    """A `tokenizers` pipeline that tokenizes one text fragment (no special tokens)."""
    pairs = []
    for m in merges:
        pair = split_merge(m)
        # a merge whose halves or result are not in the vocabulary can never apply
        if pair is None or pair[0] not in vocab or pair[1] not in vocab:
            continue
        if pair[0] + pair[1] not in vocab:
            continue
        pairs.append(pair)
    model = models.BPE(vocab=vocab, merges=pairs, ignore_merges=pre.ignore_merges, fuse_unk=False)
    tok = HFTokenizer(model)
    steps = [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in pre.regexes]
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
    return tok
