"""Chat templates against llama-cpp-python's Jinja2 renderer and llama.cpp's built-in formats."""

from __future__ import annotations

import ctypes
import json

import jinja2
import llama_cpp
import pytest
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from llamba.engine.chat_template import (
    BUILTIN_TEMPLATES,
    ChatTemplate,
    ChatTemplateError,
    guess_builtin_name,
)
from llamba.engine.tokenizer import Tokenizer
from llamba.formats.gguf_reader import GGUFFile

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "  You are terse.\n"},
        {"role": "user", "content": " Hi there \n"},
        {"role": "assistant", "content": " Hello! How can I help? "},
        {"role": "user", "content": "Écris « bonjour » en 日本語 😀"},
    ],
    [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c\n\nd"},
        {"role": "assistant", "content": "e"},
    ],
]


def _meta(path):
    with GGUFFile(path) as f:
        return f.metadata


@pytest.mark.slow
def test_smollm2_template_renders_as_llama_cpp_python(smollm2_path):
    meta = _meta(smollm2_path)
    template = ChatTemplate.from_metadata(meta)
    assert template.source == meta["tokenizer.chat_template"]
    with_tokenizer = ChatTemplate.from_metadata(meta, tokenizer=Tokenizer.from_metadata(meta))
    assert (with_tokenizer.bos_token, with_tokenizer.eos_token) == (
        template.bos_token,
        template.eos_token,
    )
    for add in (True, False):
        reference = Jinja2ChatFormatter(
            template.source,
            eos_token=template.eos_token,
            bos_token=template.bos_token,
            add_generation_prompt=add,
        )
        for messages in CONVERSATIONS:
            want = reference(messages=messages).prompt
            assert template.render(messages, add_generation_prompt=add) == want


def _llama_cpp_builtin(name: str, messages, add_generation_prompt: bool) -> str:
    chat = (llama_cpp.llama_chat_message * len(messages))(
        *[llama_cpp.llama_chat_message(m["role"].encode(), m["content"].encode()) for m in messages]
    )
    buf = ctypes.create_string_buffer(1 << 14)
    n = llama_cpp.llama_chat_apply_template(
        name.encode(), chat, len(messages), add_generation_prompt, buf, len(buf)
    )
    assert 0 <= n < len(buf)
    return buf.raw[:n].decode()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUILTIN_TEMPLATES))
def test_builtin_templates_match_llama_cpp(name):
    template = ChatTemplate.builtin(name)
    llama_name = "mistral-v3" if name == "mistral" else name
    for messages in CONVERSATIONS:
        for add in (True, False):
            want = _llama_cpp_builtin(llama_name, messages, add)
            assert template.render(messages, add_generation_prompt=add) == want


@pytest.mark.slow
def test_file_without_template_gets_the_format_of_its_vocabulary(gemma3_path):
    meta = _meta(gemma3_path)
    assert "tokenizer.chat_template" not in meta
    template = ChatTemplate.from_metadata(meta)
    assert template.name == "gemma"
    assert template.bos_token == "<bos>" and template.eos_token == "<eos>"
    want = _llama_cpp_builtin("gemma", CONVERSATIONS[1], True)
    assert template.render(CONVERSATIONS[1]) == want
    assert ChatTemplate.from_metadata(meta, fallback="chatml").name == "chatml"


def test_guess_builtin_name():
    assert guess_builtin_name(["<|start_header_id|>", "<|eot_id|>"]) == "llama3"
    assert guess_builtin_name(["<|assistant|>", "<|end|>"]) == "phi3"
    assert guess_builtin_name(["<|assistant|>", "<|user|>"]) == "zephyr"
    assert guess_builtin_name(["a", "b"]) == "chatml"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.__class__.__init__.__globals__ }}",
        "{{ raise_exception.__globals__['__builtins__'] }}",
        "{% set x = messages.append({'role': 'user'}) %}{{ x }}",
        "{{ messages[0].update({'role': 'x'}) }}",
        "{{ cycler.__init__.__globals__.os.system('echo pwned') }}",
    ],
)
def test_sandbox_escapes_are_refused(source):
    with pytest.raises(ChatTemplateError, match="unsafe") as err:
        ChatTemplate(source).render([{"role": "user", "content": "hi"}])
    assert "\n" not in str(err.value)


def test_raise_exception_is_a_chat_template_error():
    source = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "{{ m['content'] }}{% endfor %}"
    )
    template = ChatTemplate(source)
    assert template.render([{"role": "user", "content": "ok"}]) == "ok"
    with pytest.raises(ChatTemplateError, match="System role not supported"):
        template.render([{"role": "system", "content": "x"}])


def test_errors_are_one_line():
    with pytest.raises(ChatTemplateError, match="syntax error at line 2"):
        ChatTemplate("ok\n{% for m in messages %}{{ m }\n")
    with pytest.raises(ChatTemplateError, match="TypeError"):
        ChatTemplate("{{ 1 + messages[0]['content'] }}").render([{"role": "u", "content": "x"}])
    with pytest.raises(ChatTemplateError, match="no built-in chat template"):
        ChatTemplate.builtin("nope")
    with pytest.raises(ChatTemplateError, match="role"):
        ChatTemplate.builtin("chatml").render([{"content": "no role"}])
    with pytest.raises(ChatTemplateError, match="list"):
        ChatTemplate.builtin("chatml").render("just a string")


def test_huggingface_helpers_are_available():
    source = (
        "{% for m in messages %}{% if loop.index > 2 %}{% break %}{% endif %}"
        "{% generation %}{{ m['content'] | tojson }}{% endgeneration %}{% endfor %}"
        "{{ strftime_now('%Y') | length }}{{ bos_token }}{{ tools | tojson }}"
    )
    template = ChatTemplate(source, bos_token="<s>")
    messages = [{"role": "user", "content": c} for c in ("é", "b", "c")]
    want = json.dumps("é", ensure_ascii=False) + json.dumps("b") + "4<s>" + json.dumps([{"a": 1}])
    assert template.render(messages, tools=[{"a": 1}]) == want


def test_trim_and_lstrip_blocks_as_huggingface():
    source = "{% for m in messages %}\n    {{ m['content'] }}\n{% endfor %}"
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    messages = [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]
    want = env.from_string(source).render(messages=messages)
    assert ChatTemplate(source).render(messages) == want
