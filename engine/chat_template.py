"""Chat templates: the file's Jinja template (`tokenizer.chat_template`), or a built-in one.

Templates render in jinja2's ImmutableSandboxedEnvironment with the globals and filters
Hugging Face's apply_chat_template provides (raise_exception, strftime_now, tojson,
loop controls, the {% generation %} tag), trim_blocks and lstrip_blocks on, so a file's
template renders here as it does in transformers and llama-cpp-python. Any failure, from a
syntax error to a sandbox refusal, is one ChatTemplateError with a one-line message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..formats.keys import Keys

__all__ = [
    "BUILTIN_TEMPLATES",
    "ChatTemplate",
    "ChatTemplateError",
    "guess_builtin_name",
]


class ChatTemplateError(ValueError):
    """A chat template failed to compile or render."""


# ---- built-in templates: the formats of llama.cpp's named templates (llama-chat.cpp),
# which leave BOS to the tokenizer. Written on one line each: whitespace is explicit.
_TRIM = r"trim(' \t\n\v\f\r')"  # C isspace(), as llama.cpp trims

_CHATML = (
    r"{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    r"{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_LLAMA3 = (
    r"{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + "
    r"(m['content'] | " + _TRIM + r") + '<|eot_id|>' }}{% endfor %}"
    r"{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    r"{% endif %}"
)
_GEMMA = (
    r"{% set ns = namespace(system='') %}{% for m in messages %}"
    r"{% if m['role'] == 'system' %}{% set ns.system = ns.system + (m['content'] | "
    + _TRIM
    + r") %}"
    r"{% else %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    r"{{ '<start_of_turn>' + role + '\n' }}"
    r"{% if ns.system and role != 'model' %}{{ ns.system + '\n\n' }}{% set ns.system = '' %}{% endif %}"
    r"{{ (m['content'] | " + _TRIM + r") + '<end_of_turn>\n' }}{% endif %}{% endfor %}"
    r"{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def _llama2(system_block: bool) -> str:
    system = (
        r"'<<SYS>>\n' + m['content'] + '\n<</SYS>>\n\n'" if system_block else r"m['content'] + '\n'"
    )
    return (
        r"{% set ns = namespace(inside=true) %}{{ '[INST] ' }}{% for m in messages %}"
        r"{% if not ns.inside %}{% set ns.inside = true %}{{ '[INST] ' }}{% endif %}"
        r"{% if m['role'] == 'system' %}{{ " + system + r" }}"
        r"{% elif m['role'] == 'user' %}{{ m['content'] + ' [/INST]' }}"
        r"{% else %}{{ m['content'] + '</s>' }}{% set ns.inside = false %}{% endif %}{% endfor %}"
    )


def _mistral(lead: str, trail: str, trim_answer: bool) -> str:
    answer = "(m['content'] | " + _TRIM + ")" if trim_answer else "m['content']"
    return (
        r"{% set ns = namespace(inside=false) %}{% for m in messages %}"
        r"{% if not ns.inside %}{{ '" + lead + "[INST]" + trail + r"' }}{% set ns.inside = true %}"
        r"{% endif %}{% if m['role'] == 'system' %}{{ m['content'] + '\n\n' }}"
        r"{% elif m['role'] == 'user' %}{{ m['content'] + '" + lead + r"[/INST]' }}"
        r"{% else %}{{ '" + trail + "' + " + answer + r" + '</s>' }}{% set ns.inside = false %}"
        r"{% endif %}{% endfor %}"
    )


_MISTRAL_V7 = (
    r"{% for m in messages %}{% if m['role'] == 'system' %}"
    r"{{ '[SYSTEM_PROMPT] ' + m['content'] + '[/SYSTEM_PROMPT]' }}"
    r"{% elif m['role'] == 'user' %}{{ '[INST] ' + m['content'] + '[/INST]' }}"
    r"{% else %}{{ ' ' + m['content'] + '</s>' }}{% endif %}{% endfor %}"
)
_PHI3 = (
    r"{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}"
    r"{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
_ZEPHYR = (
    r"{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|endoftext|>\n' }}"
    r"{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

BUILTIN_TEMPLATES: dict[str, str] = {
    "chatml": _CHATML,
    "llama3": _LLAMA3,
    "gemma": _GEMMA,
    "llama2": _llama2(system_block=False),
    "llama2-sys": _llama2(system_block=True),
    "mistral-v1": _mistral(" ", " ", trim_answer=False),
    "mistral-v3": _mistral("", " ", trim_answer=True),
    "mistral-v3-tekken": _mistral("", "", trim_answer=False),
    "mistral-v7": _MISTRAL_V7,
    "phi3": _PHI3,
    "zephyr": _ZEPHYR,
}
BUILTIN_TEMPLATES["mistral"] = BUILTIN_TEMPLATES["mistral-v3"]

# a vocabulary's marker tokens -> the built-in format it was trained with
_FORMAT_MARKERS = (
    (("<start_of_turn>",), "gemma"),
    (("<|start_header_id|>",), "llama3"),
    (("<|im_start|>",), "chatml"),
    (("<|assistant|>", "<|end|>"), "phi3"),
    (("<|assistant|>",), "zephyr"),
    (("[INST]",), "mistral-v3"),
)


def guess_builtin_name(token_texts: Sequence[str] | set[str], default: str = "chatml") -> str:
    """The built-in format whose marker tokens the vocabulary has (default: chatml)."""
    present = token_texts if isinstance(token_texts, set) else set(token_texts)
    for markers, name in _FORMAT_MARKERS:
        if all(m in present for m in markers):
            return name
    return default


# ---- the sandbox -----------------------------------------------------------------------


class _GenerationTag(jinja2.ext.Extension):
    """Hugging Face's {% generation %}...{% endgeneration %}: renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


def _raise_exception(message: str):
    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    return json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationTag, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class ChatTemplate:
    """A compiled chat template and the BOS/EOS texts it may refer to."""

    def __init__(self, source: str, bos_token: str = "", eos_token: str = "", name: str = "file"):
        if not isinstance(source, str) or not source.strip():
            raise ChatTemplateError(f"chat template {name!r} is empty")
        self.source = source
        self.name = name
        self.bos_token = bos_token or ""
        self.eos_token = eos_token or ""
        try:
            self._template = _environment().from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise ChatTemplateError(
                f"chat template {name!r} has a syntax error at line {e.lineno}: {_one_line(e)}"
            ) from None

    @classmethod
    def builtin(cls, name: str, bos_token: str = "", eos_token: str = "") -> ChatTemplate:
        """One of BUILTIN_TEMPLATES by name."""
        if name not in BUILTIN_TEMPLATES:
            known = ", ".join(sorted(BUILTIN_TEMPLATES))
            raise ChatTemplateError(f"no built-in chat template {name!r} (known: {known})")
        return cls(BUILTIN_TEMPLATES[name], bos_token, eos_token, name=name)

    @classmethod
    def from_metadata(
        cls,
        meta: Mapping[str, Any],
        tokenizer: Any = None,
        variant: str | None = None,
        fallback: str | None = None,
    ) -> ChatTemplate:
        """The file's template (or its named `variant`), else a built-in one.

        bos_token / eos_token are the texts of the file's BOS/EOS tokens (from `tokenizer`,
        a llamba Tokenizer, when given: it knows llama.cpp's defaults for missing ids).
        Without a template in the file, `fallback` (a built-in name) is used, or the format
        guessed from the vocabulary's marker tokens.
        """
        texts = meta.get(Keys.Tokenizer.TOKENS) or []
        if tokenizer is not None:
            bos, eos = tokenizer.bos_text or "", tokenizer.eos_text or ""
        else:
            bos = _token_text(meta, texts, Keys.Tokenizer.BOS_ID)
            eos = _token_text(meta, texts, Keys.Tokenizer.EOS_ID)
        key = Keys.Tokenizer.CHAT_TEMPLATE
        if variant is not None:
            key = Keys.Tokenizer.CHAT_TEMPLATE_NAMED.format(name=variant)
            if key not in meta:
                raise ChatTemplateError(f"the file has no chat template named {variant!r}")
        source = meta.get(key)
        if isinstance(source, str) and source.strip():
            return cls(source, bos, eos, name=variant or "file")
        return cls.builtin(fallback or guess_builtin_name(texts), bos, eos)

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = True,
        tools: Sequence[Mapping[str, Any]] | None = None,
        **extra: Any,
    ) -> str:
        """The prompt text for `messages` ([{'role': ..., 'content': ...}, ...])."""
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            raise ChatTemplateError("messages must be a list of {'role', 'content'} mappings")
        for i, m in enumerate(messages):
            if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
                raise ChatTemplateError(f"message {i} must be a mapping with a string 'role'")
        context = {
            "messages": [dict(m) for m in messages],
            "add_generation_prompt": add_generation_prompt,
            "tools": tools,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            **extra,
        }
        try:
            return self._template.render(**context)
        except jinja2.TemplateError as e:
            raise ChatTemplateError(f"chat template {self.name!r}: {_one_line(e)}") from None
        except Exception as e:  # a template can fail any Python operation it performs
            raise ChatTemplateError(
                f"chat template {self.name!r}: {type(e).__name__}: {_one_line(e)}"
            ) from None


def _token_text(meta: Mapping[str, Any], texts: Sequence[str], key: str) -> str:
    tid = meta.get(key)
    if isinstance(tid, int) and 0 <= tid < len(texts):
        return texts[tid]
    return ""
