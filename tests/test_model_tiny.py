"""The forward pass of each architecture on tiny random models against a float64 numpy
reference, plus the runtime's batching, cache and error behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from reference_forward import ReferenceModel
from tiny_models import TINY, write_tiny_model

from llamba.engine.archs import UnsupportedModelError, get_architecture
from llamba.engine.kv_cache import ContextLengthError
from llamba.engine.model import Model

TOKENS = [3, 17, 42, 8, 91, 5, 60, 23, 77, 11, 2, 64, 30, 9, 55, 1, 88, 40, 12, 70]

# F32 weights, and f16 rounding where llama.cpp rounds (KV cache, Q, softmax weights, GELU)
# in both: float32 vs float64 arithmetic only, and the f16 rounding flips that difference
# causes; relative to the largest logit. Measured: llama 2e-6, gemma3 2.6e-5.
F32_REL = 1e-4


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def tiny(request, tmp_path_factory):
    arch = request.param
    path = write_tiny_model(tmp_path_factory.mktemp(arch) / f"{arch}.gguf", arch)
    want = ReferenceModel(path).forward(TOKENS)
    return arch, path, want, F32_REL * np.abs(want).max()


def test_prefill_matches_reference(tiny):
    arch, path, want, tol = tiny
    model = Model(path, n_ctx=64)
    got = model.eval(TOKENS, logits="all")
    assert got.shape == (len(TOKENS), TINY[arch]["n_vocab"])
    np.testing.assert_allclose(got, want, atol=tol, rtol=0)
    assert model.n_past == len(TOKENS)


def test_batches_and_decode_match_one_prefill(tiny):
    """Small prefill batches (sliding-window rings wrap), then token-by-token decoding."""
    arch, path, want, tol = tiny
    model = Model(path, n_ctx=64, n_batch=3)
    if arch == "gemma3":  # window 4 + batch 3: sliding layers keep a 7-row ring
        assert model.cache.k[0].shape[1] == 7 and model.cache.k[5].shape[1] == 64
    got = model.eval(TOKENS[:11], logits="all")
    np.testing.assert_allclose(got, want[:11], atol=tol, rtol=0)
    for i in range(11, len(TOKENS)):
        np.testing.assert_allclose(model.eval([TOKENS[i]]), want[i], atol=tol, rtol=0)


def test_rewind_reuses_the_prefix(tiny):
    arch, path, want, tol = tiny
    model = Model(path, n_ctx=64, n_batch=3)
    model.eval(TOKENS[:12], logits="none")
    kept = model.rewind(10)
    assert kept == 10  # two positions back is within every ring's slack
    np.testing.assert_allclose(model.eval(TOKENS[10:14]), want[13], atol=tol, rtol=0)
    model.eval(TOKENS[14:20], logits="none")
    kept = model.rewind(2)  # 18 back: the 7-row rings have lost what position 2 needs
    assert kept == (0 if arch == "gemma3" else 2)


def test_mixed_weight_types(tmp_path):
    """Q8_0 projections next to F16 ones: fused groups split where the type changes."""
    types = {"attn_q": "Q8_0", "attn_k": "Q8_0", "attn_v": "F16", "ffn_gate": "Q8_0",
             "ffn_up": "Q8_0", "ffn_down": "Q8_0", "token_embd": "Q8_0"}  # fmt: skip
    path = write_tiny_model(tmp_path / "mixed.gguf", "llama", types)
    model = Model(path, n_ctx=32)
    assert len(model.arch.layers[0].qkv.weights) == 2  # q+k packed together, v apart
    assert len(model.arch.layers[0].gate_up.weights) == 1
    got = model.eval(TOKENS, logits="all")
    want = ReferenceModel(path).forward(TOKENS)
    # activations quantized to 8 bits: relative error ~1 %, measured against the logit scale
    scale = np.abs(want).max()
    assert np.abs(got - want).max() < 0.03 * scale


def test_context_overflow_and_bad_tokens(tmp_path):
    path = write_tiny_model(tmp_path / "t.gguf", "llama")
    model = Model(path, n_ctx=16)
    with pytest.raises(ContextLengthError, match="exceed the context of 16"):
        model.eval(list(range(17)))
    assert model.n_past == 0
    model.eval(list(range(10)), logits="none")
    with pytest.raises(ContextLengthError):
        model.eval(list(range(7)))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.eval([TINY["llama"]["n_vocab"]])
    with pytest.raises(ValueError, match="n_threads"):
        Model(path, n_ctx=16, n_threads=10_000)
    with pytest.raises(ContextLengthError, match="smaller n_ctx"):
        Model(path, n_ctx=1 << 40)


def test_unknown_architecture_names_the_supported_ones(tmp_path):
    with pytest.raises(UnsupportedModelError, match="supported: gemma3, llama"):
        get_architecture("mamba")
