"""Tokenizer against llama.cpp (llama-cpp-python, vocab_only) on both real models."""

from __future__ import annotations

import ctypes
import functools
import logging

import llama_cpp
import numpy as np
import pytest

from llamba.engine.tokenizer import Tokenizer, TokenizerError
from llamba.engine.tokenizer_pretok import PRE_TOKENIZERS
from llamba.formats.gguf_reader import GGUFFile
from llamba.formats.gguf_writer import GGUFWriter

CORPUS = [
    "",
    " ",
    "\n",
    "Hello world",
    "Hello, world! How are you?",
    "  two leading spaces",
    "trailing spaces   ",
    "a\n\nb\n\n\nc\n",
    "x\r\ny\r\n\r\nz",
    "tab\there\t\tand\t\t\tmore",
    "        eight spaces then text",
    "def f(x):\n    return x * 2  # double\n\n\tif y: pass\n",
    'for (int i = 0; i < n; ++i) { a[i] = b[i] + "str"; }',
    "<div class='x'><b>bold</b></div> <table><tr><td>1</td></tr></table>",
    "1234567890 3.14159 1,000,000 -42 1e-9 0x1F",
    "$100 + 5% = 105 ^~|` @#&*",
    "日本語のテキストです。中文文本。한국어 텍스트",
    "emoji 😀🎉 👨‍👩‍👧 🇫🇷 ❤️",
    "naïve café résumé Ωμέγα ÀÉÎÕÜ ß",
    "ελληνικά русский текст עברית العربية हिन्दी",
    "¿Qué? ¡Sí! «quote» — dash… “curly” ‘single’",
    "Ｆｕｌｌｗｉｄｔｈ　ＡＢＣ！ ideographic\u3000space \u00a0nbsp",
    "١٢٣ ²³ ½ Ⅻ ①②",
    "I'm you're they've it's we'll he'd I'M YOU'RE",
    "spaced , out . marks ! here ? and ' quoted ' it 's I 'm we 're they 've don 't he 'd we 'll",
    "a ' ' b ' c '' d 's",
    "CamelCaseWord HTTPServer iPhone snake_case_name kebab-case",
    "path/to/file.txt https://example.com/a?b=c&d=e",
    "supercalifragilisticexpialidocious" * 4,
    "pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
    "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text after a bos",
    "<s>sentence</s> <unk> <pad> <eos>",
    "<|endoftext|>after<|endoftext|>",
    "<unused12> <mask> [multimodal] <start_of_image>",
    "<|im_start|<|im_end|><<|im_start|>>",
    "\u2581already\u2581escaped\u2581spaces",
    "Mixed\u200bzero\u200cwidth\u200djoiners\ufeffbom",
    "control\x00chars\x01\x1f\x7f",
]


def _load(path):
    with GGUFFile(path) as f:
        return f.metadata


def _vocab(model):
    return llama_cpp.llama_model_get_vocab(model.model)


def _llama_detokenize(model, ids, remove_special, unparse_special) -> bytes:
    arr = (llama_cpp.llama_token * max(len(ids), 1))(*ids)
    size = 64 + 64 * len(ids)
    buf = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_detokenize(
        _vocab(model), arr, len(ids), buf, size, remove_special, unparse_special
    )
    assert n >= 0
    return buf.raw[:n]


def _llama_piece(model, tid, special) -> bytes:
    buf = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_token_to_piece(_vocab(model), tid, buf, 256, 0, special)
    assert n >= 0
    return buf.raw[:n]


def _write_like(path, meta, dst, replace):
    """Copy a file's metadata (no tensors), with some keys replaced or dropped (value None)."""
    with GGUFFile(path) as src, GGUFWriter(dst) as w:
        for key, field in src.fields.items():
            if key not in replace:
                w.add_field(field)
        for key, value in replace.items():
            if value is not None:
                w.add(key, value)


@functools.cache
def _pair(path: str):
    """(our Tokenizer, llama.cpp vocab-only model) for a file, built once per session."""
    tok = Tokenizer.from_metadata(_load(path))
    ref = llama_cpp.Llama(path, vocab_only=True, verbose=False)
    return tok, ref


@pytest.fixture(params=["smollm2", "gemma3"])
def pair(request):
    return _pair(str(request.getfixturevalue(f"{request.param}_path")))


@pytest.mark.slow
def test_tokenize_identical_to_llama_cpp(pair):
    tok, ref = pair
    mismatches = []
    for text in CORPUS:
        for add_special in (True, False):
            for parse_special in (True, False):
                want = ref.tokenize(text.encode(), add_bos=add_special, special=parse_special)
                got = tok.tokenize(text, add_special=add_special, parse_special=parse_special)
                if got != want:
                    mismatches.append((text, add_special, parse_special, want, got))
    assert not mismatches, mismatches[:3]


@pytest.mark.slow
def test_detokenize_identical_to_llama_cpp(pair):
    tok, ref = pair
    for text in CORPUS:
        ids = ref.tokenize(text.encode(), add_bos=True, special=True)
        for remove_special in (True, False):
            for unparse_special in (True, False):
                want = _llama_detokenize(ref, ids, remove_special, unparse_special)
                got = tok.detokenize_bytes(ids, unparse_special, remove_special)
                assert got == want, (text, remove_special, unparse_special)


@pytest.mark.slow
def test_token_to_piece_identical_to_llama_cpp(pair):
    tok, ref = pair
    # every special token, the byte tokens, and a spread of the rest
    n = tok.n_vocab
    ids = set(tok.vocab.special_cache) | set(range(0, n, max(1, n // 20000)))
    ids |= {i for i in range(min(n, 600))}
    for tid in sorted(ids):
        for special in (True, False):
            assert tok.token_to_piece(tid, special) == _llama_piece(ref, tid, special), tid


@pytest.mark.slow
def test_special_ids_and_end_of_generation(pair):
    tok, ref = pair
    v = _vocab(ref)
    assert tok.n_vocab == llama_cpp.llama_vocab_n_tokens(v)
    assert tok.bos_id == llama_cpp.llama_vocab_bos(v)
    assert tok.eos_id == llama_cpp.llama_vocab_eos(v)
    assert tok.nl_id == llama_cpp.llama_vocab_nl(v)
    assert tok.add_bos == llama_cpp.llama_vocab_get_add_bos(v)
    assert tok.add_eos == llama_cpp.llama_vocab_get_add_eos(v)
    want_eog = {i for i in range(tok.n_vocab) if llama_cpp.llama_vocab_is_eog(v, i)}
    assert set(tok.eog_ids) == want_eog
    assert all(tok.is_eog(i) for i in want_eog)
    # the end-of-turn token (llama.cpp picks among candidates in hash order) is an EOG token
    assert tok.eot_id in want_eog


@pytest.mark.slow
def test_round_trip(pair):
    tok, _ = pair
    for text in CORPUS:
        if "\u2581" in text:
            continue  # SentencePiece writes spaces as '▁': that character cannot survive
        ids = tok.tokenize(text, add_special=False, parse_special=True)
        assert tok.detokenize(ids, special=True) == text
        ids = tok.tokenize(text, add_special=True, parse_special=False)
        assert tok.detokenize(ids, remove_special=True) == text


@pytest.mark.slow
def test_incremental_detokenizer_holds_split_characters(pair):
    tok, _ = pair
    text = "日本 😀 naïve 👨‍👩‍👧 €"
    # byte-level pieces of each character: a character spread over several tokens
    ids = []
    for byte in text.encode():
        ids.append(tok.vocab.byte_token(byte))
    stream = tok.stream()
    outs = [stream.push(t) for t in ids]
    assert "".join(outs) + stream.flush() == text
    assert all("\ufffd" not in o for o in outs)
    # each chunk is released exactly when its character's last byte arrives
    raw = text.encode()
    released = [i + 1 for i, o in enumerate(outs) if o]
    boundaries = [len(text[: k + 1].encode()) for k in range(len(text))]
    assert released == boundaries
    # the model's own tokenization, streamed, gives the text back
    stream = tok.stream()
    real = tok.tokenize(text, add_special=False)
    assert stream.push_many(real) + stream.flush() == tok.detokenize(real) == text
    assert raw == text.encode()


@pytest.mark.slow
def test_incremental_detokenizer_flushes_broken_bytes(pair):
    tok, _ = pair
    stream = tok.stream()
    first = tok.vocab.byte_token(0xE6)  # lead byte of a 3-byte character, never completed
    assert stream.push(first) == ""
    assert stream.push(tok.vocab.byte_token(ord("a"))) == "\ufffda"
    assert stream.push(first) == ""
    assert stream.flush() == "\ufffd"


@pytest.mark.slow
def test_no_double_bos_from_chat_rendering(gemma3_path):
    tok, ref = _pair(str(gemma3_path))
    rendered = "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    doubled = ref.tokenize(rendered.encode(), add_bos=True, special=True)
    assert doubled[:2] == [tok.bos_id, tok.bos_id]
    assert tok.tokenize_chat(rendered) == doubled[1:]
    plain = "<start_of_turn>user\nHi<end_of_turn>\n"
    assert tok.tokenize_chat(plain) == ref.tokenize(plain.encode(), add_bos=True, special=True)


# the common models' names, then one name for each other distinct regex table
_FAMILY_NAMES = [
    "default",
    "gpt-2",
    "gpt2",
    "llama3",
    "llama-bpe",
    "qwen2",
    "smollm",
    "deepseek-llm",
    "deepseek-coder",
    "falcon",
    "starcoder",
    "refact",
    "command-r",
    "olmo",
    "mpt",
    "stablelm2",
    "phi-2",
    "tekken",
]
_seen = {PRE_TOKENIZERS[n] for n in _FAMILY_NAMES}
for _name, _pre in PRE_TOKENIZERS.items():
    # tiny_aya's letter classes (\p{Lu}, \p{Ll}...) are not supported by llama.cpp's regex
    # engine, which reads them as literal characters; `tokenizers` follows the model's regex
    if _pre not in _seen and _name not in ("tiny_aya", "cohere2moe"):
        _seen.add(_pre)
        _FAMILY_NAMES.append(_name)


@pytest.mark.slow
@pytest.mark.parametrize("pre_name", _FAMILY_NAMES)
def test_bpe_pre_tokenizers_match_llama_cpp(smollm2_path, tmp_path, pre_name):
    """SmolLM2's vocabulary under each pre-tokenizer name: same tokens as llama.cpp."""
    meta = _load(smollm2_path)
    meta["tokenizer.ggml.pre"] = pre_name
    meta.pop("tokenizer.ggml.add_bos_token")  # let each family's own default apply
    tok = Tokenizer.from_metadata(meta)
    dst = tmp_path / "vocab.gguf"
    if pre_name == "gpt2":  # not a llama.cpp name: compare with the GPT-2 entry it aliases
        replace = {"tokenizer.ggml.pre": "gpt-2"}
    else:
        replace = {"tokenizer.ggml.pre": pre_name}
    replace["tokenizer.ggml.add_bos_token"] = None
    _write_like(smollm2_path, meta, dst, replace)
    ref = llama_cpp.Llama(str(dst), vocab_only=True, verbose=False)
    assert tok.add_bos == llama_cpp.llama_vocab_get_add_bos(_vocab(ref))
    for text in CORPUS:
        for parse_special in (True, False):
            want = ref.tokenize(text.encode(), add_bos=True, special=parse_special)
            assert tok.tokenize(text, True, parse_special) == want, (text, parse_special)
        ids = tok.tokenize(text, add_special=False)
        assert tok.detokenize_bytes(ids) == _llama_detokenize(ref, ids, False, False), text


@pytest.mark.slow
def test_unknown_pre_tokenizer_falls_back_to_default(smollm2_path, caplog):
    meta = _load(smollm2_path)
    meta["tokenizer.ggml.pre"] = "no-such-pre-tokenizer"
    with caplog.at_level(logging.WARNING):
        tok = Tokenizer.from_metadata(meta)
    assert "no-such-pre-tokenizer" in caplog.text
    meta["tokenizer.ggml.pre"] = "default"
    default = Tokenizer.from_metadata(meta)
    for text in CORPUS:
        assert tok.tokenize(text) == default.tokenize(text)


@pytest.mark.slow
@pytest.mark.parametrize("add_space_prefix", [True, False])
def test_sentencepiece_space_prefix_matches_llama_cpp(gemma3_path, tmp_path, add_space_prefix):
    """A cut-down Gemma vocabulary with and without add_space_prefix (Llama-2 style)."""
    meta = _load(gemma3_path)
    keep = np.r_[0:20000, 236000 : len(meta["tokenizer.ggml.tokens"])]
    replace = {
        "tokenizer.ggml.tokens": [meta["tokenizer.ggml.tokens"][i] for i in keep],
        "tokenizer.ggml.scores": meta["tokenizer.ggml.scores"][keep],
        "tokenizer.ggml.token_type": meta["tokenizer.ggml.token_type"][keep],
        "tokenizer.ggml.add_space_prefix": add_space_prefix,
    }
    meta.update(replace)
    tok = Tokenizer.from_metadata(meta)
    dst = tmp_path / "spm.gguf"
    _write_like(gemma3_path, meta, dst, replace)
    ref = llama_cpp.Llama(str(dst), vocab_only=True, verbose=False)
    for text in CORPUS:
        for add_special in (True, False):
            for parse_special in (True, False):
                want = ref.tokenize(text.encode(), add_bos=add_special, special=parse_special)
                got = tok.tokenize(text, add_special, parse_special)
                assert got == want, (text, add_special, parse_special)
        ids = ref.tokenize(text.encode(), add_bos=True, special=True)
        for remove_special in (True, False):
            want = _llama_detokenize(ref, ids, remove_special, False)
            assert tok.detokenize_bytes(ids, False, remove_special) == want, text


def test_bad_metadata_is_a_clear_error():
    with pytest.raises(TokenizerError, match="tokenizer.ggml.model"):
        Tokenizer.from_metadata({})
    with pytest.raises(TokenizerError, match="not supported"):
        Tokenizer.from_metadata({"tokenizer.ggml.model": "rwkv", "tokenizer.ggml.tokens": ["a"]})
    with pytest.raises(TokenizerError, match="tokens"):
        Tokenizer.from_metadata({"tokenizer.ggml.model": "gpt2"})
    with pytest.raises(TokenizerError, match="duplicate"):
        Tokenizer.from_metadata(
            {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a", "a"],
             "tokenizer.ggml.merges": [], "tokenizer.ggml.pre": "gpt-2"}
        )  # fmt: skip
    with pytest.raises(TokenizerError, match="scores"):
        Tokenizer.from_metadata(
            {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": ["<unk>", "<s>", "</s>"]}
        )


def test_out_of_range_ids_are_a_clear_error():
    tok = Tokenizer.from_metadata(
        {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a", "b", "ab"],
         "tokenizer.ggml.merges": ["a b"], "tokenizer.ggml.pre": "gpt-2"}
    )  # fmt: skip
    assert tok.tokenize("abba", add_special=False) == [2, 1, 0]
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        tok.detokenize([0, 3])
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        tok.token_to_piece(-1)


@pytest.mark.slow
def test_spm_merges_cache_gives_the_derived_merges(gemma3_path, tmp_path, monkeypatch):
    """Gemma's 262k-entry vocabulary derives its merges once and then loads them from the
    cache; a damaged cache file is ignored and replaced, never trusted."""
    from llamba.engine import catalog, tokenizer_spm

    monkeypatch.setenv(catalog.CACHE_ENV, str(tmp_path))
    with GGUFFile(gemma3_path) as f:
        tok = Tokenizer.from_metadata(f.metadata)
    vocab = {t: i for t, i in tok.vocab.ids.items()}
    scores = tok.vocab.scores
    path = tokenizer_spm.merges_cache_file(vocab, scores)
    assert path.is_file() and path.parent.parent == tmp_path
    derived = tokenizer_spm.derive_merges(vocab, scores)
    assert tokenizer_spm.cached_merges(vocab, scores) == derived
    for damage in (b"not a numpy file", None):
        if damage is None:  # a valid file whose ids are not this vocabulary's
            np.save(path, np.array([[len(vocab) + 5, 0]], np.int32))
        else:
            path.write_bytes(damage)
        assert tokenizer_spm.cached_merges(vocab, scores) == derived
        assert tokenizer_spm.cached_merges(vocab, scores) == derived  # rewritten, loads again
