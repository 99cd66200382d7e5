"""BPE pre-tokenizers by `tokenizer.ggml.pre` name: the regexes and flags llama.cpp uses.

Each regex splits every piece the previous one produced into matches and the text between
them ("isolated" splitting), as llama.cpp's unicode_regex_split does. The regexes are
llama.cpp's (which sometimes rewrite the model's own tokenizer.json regex for std::regex);
they run here on Oniguruma through the `tokenizers` library.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

# the GPT-2 regex and the variants most models derive from it
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
LLAMA3 = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2 = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN35 = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# upper-then-lower letter runs, written with lookaheads as llama.cpp does
_UPPER_LOWER = (
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+"
    r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*"
)
_UPPER_LOWER_CONTRACTED = (
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+" + _CONTRACTIONS + "?"
    r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*" + _CONTRACTIONS + "?"
)
TEKKEN = _UPPER_LOWER + r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
GPT4O = _UPPER_LOWER_CONTRACTED + r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
TINY_AYA_LETTERS = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    + _CONTRACTIONS
    + r"?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    + _CONTRACTIONS
    + r"?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PORO = " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"
# letters of cased scripts, as listed by DeepSeek's tokenizer
_DEEPSEEK_LETTERS = (
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293"
    "\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c"
    "\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5"
    "\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77"
    "\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59"
    "\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc"
    "\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107"
    "\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
    "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee"
    "\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e"
    "\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a"
    "\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2"
    "\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943]+"
)
_DEEPSEEK_PUNCT = "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+"
_CJK_HANGUL = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"
_CJK_KANA = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"
_PUNCT_WORDS = (
    r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
    r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class PreTokenizer:
    """How llama.cpp prepares text for one BPE family."""

    regexes: tuple[str, ...]
    clean_spaces: bool = True  # detokenize drops the space before . , ! ? and 's 're 've 'm
    ignore_merges: bool = False  # a whole pre-tokenized word found in the vocab is one token
    add_bos: bool = False  # the default when the file has no add_bos_token flag
    has_bos: bool = True  # False: no BOS token unless the file names one


DEFAULT = PreTokenizer((r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"))
_STARCODER = (r"\p{N}", GPT2)

# name -> pre-tokenizer; names that share an entry are the aliases llama.cpp accepts
PRE_TOKENIZERS: dict[str, PreTokenizer] = {"default": DEFAULT}


def _register(names: str, pre: PreTokenizer) -> None:
    for name in names.split():
        PRE_TOKENIZERS[name] = pre


_register(
    "llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano",
    PreTokenizer((LLAMA3,), ignore_merges=True, add_bos=True),
)
_register("dbrx smaug-bpe", PreTokenizer((LLAMA3,)))
_register(
    "deepseek-llm",
    PreTokenizer(
        ("[\r\n]", _DEEPSEEK_LETTERS, _DEEPSEEK_PUNCT, r"\s+$", _CJK_HANGUL, r"\p{N}+"),
        clean_spaces=False,
    ),
)
_register(
    "deepseek-coder",
    PreTokenizer(("[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK_HANGUL, r"\p{N}"), clean_spaces=False),
)
_register(
    "deepseek-v3 hunyuan-dense joyai-llm hy_v4",
    PreTokenizer((r"\p{N}{1,3}", _CJK_KANA, _PUNCT_WORDS), clean_spaces=False),
)
_register(
    "falcon",
    PreTokenizer((r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]")),
)
_register("starcoder refact codeshell exaone minerva-7b mellum2", PreTokenizer(_STARCODER))
_register("command-r smollm", PreTokenizer(_STARCODER, clean_spaces=False))
_register(
    "gpt-2 gpt2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de a.x-4.0 mellum modern-bert "
    "exaone4 mpt olmo jais jina-v1-en jina-v2-code roberta-bpe",
    PreTokenizer((GPT2,)),
)
_register("trillion granite-docling", PreTokenizer((GPT2,), clean_spaces=False))
_register("stablelm2 megrez", PreTokenizer((QWEN2,)))
_register(
    "qwen2 deepseek-r1-qwen kormo f2llmv2 hunyuan solar-open",
    PreTokenizer((QWEN2,), clean_spaces=False),
)
_register("qwen35", PreTokenizer((QWEN35,), clean_spaces=False))
_register("poro-chat", PreTokenizer((PORO,), clean_spaces=False))
_register("bloom gpt3-finnish", PreTokenizer((PORO,)))
_register("viking", PreTokenizer((PORO, r"\p{N}"), clean_spaces=False))
_register("glm4 chatglm-bpe", PreTokenizer((LLAMA3,), has_bos=False))
_register("tekken", PreTokenizer((TEKKEN,), clean_spaces=False, ignore_merges=True, add_bos=True))
_register(
    "chameleon",
    PreTokenizer(
        (
            "<sentinel:[0-9]+>",
            "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
            "([\\t\\n]|    |  )",
            r"\p{N}",
            r"[\p{P}!-/:-@\[-`{-~]",
            GPT2,
        ),
        clean_spaces=False,
        add_bos=True,
    ),
)
_register("gpt-4o llama4 kanana2 talkie minimax-m2", PreTokenizer((GPT4O,), clean_spaces=False))
_register(
    "tiny_aya cohere2moe",
    PreTokenizer((r"\d{1,3}(?=(?:\d{3})*\b)", TINY_AYA_LETTERS), clean_spaces=False),
)
_register(
    "bailingmoe bailingmoe2 llada-moe",
    PreTokenizer(
        (
            r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
            r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",
        ),
        clean_spaces=False,
    ),
)
_register(
    "seed-coder",
    PreTokenizer(
        (
            _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+",
        ),
        clean_spaces=False,
    ),
)
_register("grok-2", PreTokenizer((QWEN2,), clean_spaces=False))
_register(
    "ufakzeka",
    PreTokenizer(
        (r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",),
        clean_spaces=False,
    ),
)
_register("laguna", PreTokenizer((r"[^\n]+|[\n]+", QWEN2), clean_spaces=False))
_register(
    "exaone-moe",
    PreTokenizer(
        (
            _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}"
            r"| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+",
        ),
    ),
)
_register(
    "minicpm5",
    PreTokenizer(
        (
            r"\p{N}{1,3}",
            _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+",
        ),
        ignore_merges=True,
    ),
)
_register(
    "jais-2",
    PreTokenizer(
        (
            _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)"
            r"|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}",
        ),
    ),
)
_register(
    "spark2_5",
    PreTokenizer(
        (
            r"\p{N}{1,3}",
            _CJK_KANA,
            r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
            r"| ?[\p{P}\p{S}]+|[\r\n]|\s+(?!\S)|\s+",
            r"\p{N}",
        ),
        clean_spaces=False,
    ),
)

# names llama.cpp knows whose pre-tokenizer needs code of its own, not a regex table
UNSUPPORTED = frozenset(
    [
        "kimi-k2",
        "afmoe",
        "superbpe",
        "whitespace",
        "gemma4",
        "sarvam-moe",
        "granite-embed-multi-311m",
        "youtu",
        "granite-embed-multi-97m",
    ]
)


def resolve_pre_tokenizer(name: str | None) -> tuple[str, PreTokenizer]:
    """The pre-tokenizer a file names; a missing or unknown name falls back to 'default'."""
    if not name:
        log.warning("tokenizer.ggml.pre is missing; using the 'default' pre-tokenizer")
        return "default", DEFAULT
    pre = PRE_TOKENIZERS.get(name)
    if pre is not None:
        return name, pre
    if name in UNSUPPORTED:
        raise ValueError(f"BPE pre-tokenizer {name!r} is not supported")
    log.warning("unknown BPE pre-tokenizer %r; using 'default' (tokens may differ)", name)
    return "default", DEFAULT
