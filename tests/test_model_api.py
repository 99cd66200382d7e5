"""llamba.Llama on the real SmolLM2: response shapes, streaming, stops, limits, logits and
embeddings, each checked against the runtime underneath or llama-cpp-python's conventions."""

from __future__ import annotations

import numpy as np
import pytest

import llamba
from llamba.engine.kv_cache import ContextLengthError

pytestmark = pytest.mark.slow

CHAT = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture(scope="module")
def llm(smollm2_path):
    return llamba.Llama(str(smollm2_path), n_ctx=256, seed=7)


def test_completion_shape_and_streaming_agree(llm):
    out = llm.create_completion("The quick brown fox", max_tokens=12, temperature=0)
    assert out["object"] == "text_completion" and out["id"].startswith("cmpl-")
    (choice,) = out["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] in ("stop", "length")
    n_prompt = len(llm.tokenize("The quick brown fox", special=True))
    assert out["usage"]["prompt_tokens"] == n_prompt
    assert out["usage"]["total_tokens"] == n_prompt + out["usage"]["completion_tokens"]
    assert out["usage"]["completion_tokens"] <= 12
    chunks = list(llm.create_completion("The quick brown fox", max_tokens=12, temperature=0,
                                        stream=True))  # fmt: skip
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == choice["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == choice["finish_reason"]


def test_greedy_completion_is_the_argmax_chain(llm):
    """temperature 0 follows the arg-max of the model's own logits."""
    prompt = llm.tokenize("1, 2, 3, 4,")
    llm.reset()
    llm.eval(prompt)
    chain = []
    for _ in range(6):
        chain.append(int(np.argmax(llm.logits)))
        llm.eval([chain[-1]])
    out = llm.create_completion(prompt, max_tokens=6, temperature=0)
    assert out["choices"][0]["text"] == llm.detokenize(chain).decode()


def test_stop_strings_and_max_tokens(llm):
    full = llm.create_completion("1, 2, 3, 4,", max_tokens=10, temperature=0)
    text = full["choices"][0]["text"]
    assert full["choices"][0]["finish_reason"] == "length"
    stop = text[3:5]  # a stop string that occurs inside the greedy continuation
    cut = llm.create_completion("1, 2, 3, 4,", max_tokens=10, temperature=0, stop=[stop])
    assert cut["choices"][0]["text"] == text[: text.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"


def test_chat_completion_shape_and_stream(llm):
    # each call from an empty cache: a repeated prompt would reuse the cached prefix and
    # evaluate its last token alone, which (as in llama.cpp) sums attention in the
    # single-token order and may round a near tie the other way
    llm.reset()
    out = llm.create_chat_completion(CHAT, max_tokens=16, temperature=0)
    llm.reset()
    assert out["object"] == "chat.completion" and out["id"].startswith("chatcmpl-")
    message = out["choices"][0]["message"]
    assert message["role"] == "assistant" and message["content"]
    chunks = list(llm.create_chat_completion(CHAT, max_tokens=16, temperature=0, stream=True))
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[-1]["choices"][0]["delta"] == {}
    assert chunks[-1]["choices"][0]["finish_reason"] == out["choices"][0]["finish_reason"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == message["content"]


def test_seeded_sampling_is_reproducible(smollm2_path):
    a = llamba.Llama(str(smollm2_path), n_ctx=64, seed=3)
    b = llamba.Llama(str(smollm2_path), n_ctx=64, seed=3)

    def text(llm, **kw):
        return llm.create_completion("Once upon a time", max_tokens=10, **kw)["choices"][0]["text"]

    assert text(a) == text(b)  # same Llama seed, same sequence of calls
    assert text(a, seed=11) == text(b, seed=11)  # an explicit per-call seed


def test_logits_all_scores_match_eval(smollm2_path):
    llm = llamba.Llama(str(smollm2_path), n_ctx=64, logits_all=True)
    tokens = llm.tokenize("The capital of France")
    llm.eval(tokens)
    assert llm.scores.shape == (64, llm.n_vocab()) and llm.n_tokens == len(tokens)
    np.testing.assert_array_equal(llm.scores[len(tokens) - 1], llm.logits)
    assert list(llm.input_ids) == tokens
    # the same rows from a model evaluating one prefix at a time
    step = llamba.Llama(str(smollm2_path), n_ctx=64)
    step.eval(tokens[:3])
    np.testing.assert_allclose(step.logits, llm.scores[2], atol=1e-3)


def test_prompt_longer_than_context(smollm2_path):
    llm = llamba.Llama(str(smollm2_path), n_ctx=32)
    long_prompt = " ".join(["word"] * 80)
    with pytest.raises(ContextLengthError, match="context of 32"):
        llm.create_completion(long_prompt, max_tokens=4)
    with pytest.warns(UserWarning, match="truncated"):
        out = llm.create_completion(long_prompt, max_tokens=4, truncate=True, temperature=0)
    assert out["usage"]["prompt_tokens"] == 28
    assert out["usage"]["completion_tokens"] <= 4


def test_embeddings(llm):
    one = llm.embed("hello world")
    assert len(one) == llm.n_embd()
    many = llm.embed(["hello world", "the sea is blue"], normalize=True)
    assert len(many) == 2
    np.testing.assert_allclose(np.linalg.norm(many, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(many[0], np.asarray(one) / np.linalg.norm(one), rtol=1e-5)
    per_token = llm.embed("hello world", pooling="none")
    assert len(per_token) == len(llm.tokenize("hello world"))
    np.testing.assert_allclose(np.mean(per_token, axis=0), one, rtol=1e-5, atol=1e-6)
    resp = llm.create_embedding(["a", "b"])
    assert resp["object"] == "list" and [d["index"] for d in resp["data"]] == [0, 1]


def test_generate_reuses_the_cached_prefix(llm):
    prompt = llm.tokenize("The weather today is")
    gen = llm.generate(prompt, temp=0.0)
    first = [next(gen) for _ in range(3)]
    assert llm.n_tokens == len(prompt) + 2  # the last sampled token is not evaluated yet
    again = llm.generate(prompt, temp=0.0)
    assert [next(again) for _ in range(3)] == first
