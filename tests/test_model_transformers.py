"""Logits against transformers' own implementation of the same weights: transformers loads
the GGUF itself (dequantizing to float32) and runs LlamaForCausalLM / Gemma3ForCausalLM.

Both sides run F16 files made from the real models by llama.cpp's quantizer, so no 8-bit
activation noise enters (see test_model_llamacpp.py). llamba rounds to f16 where llama.cpp
does (activations into the F16 products, the KV cache, Q and the softmax weights, GELU);
transformers computes in float32. Tolerance: max |diff| of all positions' logits <= 0.15
(measured: SmolLM2 0.048, Gemma-3 0.017), and the same arg-max everywhere.

transformers reads every metadata field with gguf-py, slowly for a 262144-token vocabulary;
the copies given to it leave out the tokenizer arrays (the weights are the same bytes).
"""

from __future__ import annotations

import llama_cpp
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from llamba.engine.model import Model
from llamba.engine.tokenizer import Tokenizer
from llamba.formats.gguf_reader import GGUFFile
from llamba.formats.gguf_writer import GGUFWriter
from llamba.formats.keys import GGUFValueType, Keys

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is Paris. The capital of Germany is"
TOKENIZER_ARRAYS = {Keys.Tokenizer.TOKENS, Keys.Tokenizer.SCORES, Keys.Tokenizer.TOKEN_TYPE,
                    Keys.Tokenizer.MERGES}  # fmt: skip


def f16_copy(src, dst) -> None:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_F16
    params.allow_requantize = True
    params.nthread = 2
    assert llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params) == 0


def without_tokenizer_arrays(src, dst) -> None:
    """Same tensors and metadata, minus the vocabulary arrays; vocab_size stated instead."""
    with GGUFFile(src) as f, GGUFWriter(dst) as w:
        arch = f.architecture
        for field in f.fields.values():
            if field.key not in TOKENIZER_ARRAYS:
                w.add_field(field)
        vocab_key = Keys.LLM.VOCAB_SIZE.format(arch=arch)
        if vocab_key not in f.fields:
            w.add(vocab_key, int(f.tensors["token_embd.weight"].shape[1]), GGUFValueType.UINT32)
        for name, t in f.tensors.items():
            w.add_tensor_info(name, t.shape, t.type)
        for name in f.tensors:
            w.write_tensor_data(name, f.tensor_bytes(name))


@pytest.mark.parametrize("which", ["smollm2", "gemma3"])
def test_logits_close_to_transformers(which, smollm2_path, gemma3_path, tmp_path):
    src = smollm2_path if which == "smollm2" else gemma3_path
    ours_file = tmp_path / "model-f16.gguf"
    f16_copy(src, ours_file)
    theirs_file = tmp_path / "hf" / "model-f16.gguf"
    theirs_file.parent.mkdir()
    without_tokenizer_arrays(ours_file, theirs_file)

    model = Model(ours_file, n_ctx=64)
    tokens = Tokenizer.from_metadata(model.metadata).tokenize(PROMPT)
    got = model.eval(tokens, logits="all").astype(np.float64)
    model.close()

    hf = AutoModelForCausalLM.from_pretrained(
        theirs_file.parent, gguf_file=theirs_file.name, dtype=torch.float32
    )
    with torch.no_grad():
        want = hf(torch.tensor([tokens])).logits[0].double().numpy()
    diff = np.abs(got - want)
    print(f"{which}: max |logit diff| vs transformers {diff.max():.4f}")
    assert diff.max() <= 0.15, diff.max()
    np.testing.assert_array_equal(got.argmax(axis=1), want.argmax(axis=1))
