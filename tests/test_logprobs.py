"""Log-probabilities in completions and chat completions, in llama-cpp-python's shapes, on
the F16 SmolLM2 (where greedy tokens match llama.cpp's): the same tokens and offsets, and
log-probabilities within 0.02 of those llama.cpp's logits give (measured: within 0.006)."""

from __future__ import annotations

import llama_cpp
import numpy as np
import pytest

from llamba.engine.api import Llama

pytestmark = pytest.mark.slow

PROMPT = "The three primary colors are"
TOL = 0.02


@pytest.fixture(scope="module")
def pair(smollm2_f16_path):
    ours = Llama(smollm2_f16_path, n_ctx=256, logits_all=True)
    ref = llama_cpp.Llama(
        str(smollm2_f16_path), n_ctx=256, logits_all=True, verbose=False, n_threads=2
    )
    return ours, ref


def reference_logprobs(ref, tokens: list[int]) -> np.ndarray:
    """float64 log_softmax of llama.cpp's logits after each of `tokens`, (n, n_vocab)."""
    ref.reset()
    ref.eval(tokens)
    logits = np.array(ref.scores[: len(tokens)], dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def test_completion_logprobs_match_llama_cpp_python(pair):
    ours, ref = pair
    a = ours.create_completion(PROMPT, max_tokens=8, temperature=0, logprobs=3)["choices"][0]
    b = ref.create_completion(PROMPT, max_tokens=8, temperature=0, logprobs=3)["choices"][0]
    assert a["text"] == b["text"]
    la, lb = a["logprobs"], b["logprobs"]
    assert la["tokens"] == lb["tokens"]
    assert la["text_offset"] == lb["text_offset"]
    np.testing.assert_allclose(la["token_logprobs"], lb["token_logprobs"], atol=TOL)
    for top_a, top_b in zip(la["top_logprobs"], lb["top_logprobs"], strict=True):
        assert top_a.keys() == top_b.keys()
        np.testing.assert_allclose([top_a[k] for k in top_b], list(top_b.values()), atol=TOL)


def test_chat_logprobs_match_llama_cpp_python(pair):
    ours, ref = pair
    messages = [{"role": "user", "content": "Hi"}]
    kw = dict(max_tokens=6, temperature=0, logprobs=True, top_logprobs=2)
    a = ours.create_chat_completion(messages, **kw)["choices"][0]["logprobs"]["content"]
    b = ref.create_chat_completion(messages, **kw)["choices"][0]["logprobs"]["content"]
    assert [e["token"] for e in a] == [e["token"] for e in b]
    np.testing.assert_allclose([e["logprob"] for e in a], [e["logprob"] for e in b], atol=TOL)
    for ea, eb in zip(a, b, strict=True):
        assert [t["token"] for t in ea["top_logprobs"]] == [t["token"] for t in eb["top_logprobs"]]
        assert bytes(ea["bytes"]).decode() == ea["token"]  # OpenAI's bytes: the token's UTF-8


def test_logprobs_are_log_softmax_of_the_logits_sampled_from(pair):
    """With sampling (temperature 1), each token's log-probability is that of the raw
    logits at its position, as recorded in `scores`; the top entries are the largest."""
    ours, _ = pair
    out = ours.create_completion(PROMPT, max_tokens=6, temperature=1.0, seed=3, logprobs=4)
    lp = out["choices"][0]["logprobs"]
    n_prompt = len(ours.tokenize(PROMPT))
    generated = [int(t) for t in ours.input_ids[n_prompt:]]
    logits = ours.scores[n_prompt - 1 : n_prompt - 1 + len(lp["tokens"])].astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    want = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    for i, token in enumerate(generated[: len(lp["tokens"])]):
        assert lp["tokens"][i] == ours.detokenize([token]).decode("utf-8", "ignore")
        assert lp["token_logprobs"][i] == pytest.approx(want[i, token], abs=1e-5)
        best = np.sort(want[i])[::-1][:4]
        got = sorted(lp["top_logprobs"][i].values(), reverse=True)[:4]
        np.testing.assert_allclose(got, best, atol=1e-5)


def test_echo_logprobs_score_the_prompt_as_llama_cpp_logits_do(pair):
    """(llama-cpp-python's own echo logprobs are misaligned by its indexing, so the reference
    here is llama.cpp's logits for the prompt.)"""
    ours, ref = pair
    out = ours.create_completion(PROMPT, max_tokens=2, temperature=0, logprobs=1, echo=True)
    lp = out["choices"][0]["logprobs"]
    tokens = ours.tokenize(PROMPT)
    want = reference_logprobs(ref, tokens)
    n = len(tokens)
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert "".join(lp["tokens"][:n]) == PROMPT
    assert lp["text_offset"][:n] == [len("".join(lp["tokens"][:i])) for i in range(n)]
    np.testing.assert_allclose(
        lp["token_logprobs"][1:n], [want[i - 1, tokens[i]] for i in range(1, n)], atol=TOL
    )
    assert lp["text_offset"][n] == len(PROMPT)


def test_streamed_logprobs_are_the_same(pair):
    ours, _ = pair
    whole = ours.create_completion(PROMPT, max_tokens=5, temperature=0, logprobs=2)
    chunks = list(ours.create_completion(PROMPT, max_tokens=5, temperature=0, logprobs=2,
                                         stream=True))  # fmt: skip
    streamed = [c["choices"][0]["logprobs"] for c in chunks if c["choices"][0]["logprobs"]]
    for key in ("tokens", "text_offset", "token_logprobs", "top_logprobs"):
        assert [x for s in streamed for x in s[key]] == whole["choices"][0]["logprobs"][key]


def test_echo_logprobs_need_logits_all(smollm2_f16_path):
    llm = Llama(smollm2_f16_path, n_ctx=64)
    with pytest.raises(ValueError, match="logits_all"):
        llm.create_completion(PROMPT, max_tokens=1, logprobs=1, echo=True)
    out = llm.create_completion(PROMPT, max_tokens=2, temperature=0, logprobs=1)  # fine
    assert len(out["choices"][0]["logprobs"]["tokens"]) == 2
