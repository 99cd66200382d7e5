"""The runtime against llama.cpp (llama-cpp-python) on the real models and on files made
from each of them with llama.cpp's own quantizer.

Tolerances. With quantized weights both engines quantize activations to 8-bit blocks before
every matrix product; a rounding flip anywhere moves the logits of a 135M model by up to
about 1 (scaling the embeddings by 1 + 1e-6 alone moves them by 0.9), and llama.cpp itself
differs from an exact float64 forward by the same amount. So the closeness test allows:
max |diff| of the last position's logits <= 1.5, mean |diff| <= 0.3, KL(llama.cpp || llamba)
<= 0.02 and the same arg-max; with F16 weights (activations only rounded to f16) max |diff|
<= 0.1.

With Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q6_K and F16 weights llamba follows ggml's float
summation order everywhere (the matrix products' 8 lanes, tinyBLAS in prompt batches and
vec_dot for single tokens, the repacked Q4_K kernels, softmax, rope and GELU as ggml rounds
them), so for every file here, both real models' own among them, the logits are llama.cpp's
to the bit and greedy continuations identical (the tolerances above still apply to them,
trivially: they are what a file of another type should meet).
"""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from llamba.engine.api import Llama
from llamba.engine.model import Model
from llamba.engine.perplexity import perplexity
from llamba.engine.tokenizer import Tokenizer

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is Paris. The capital of Germany is"
STORY = "Once upon a time, in a small village by the sea, there lived an old fisherman who"
N_CTX = 128
TEXT = (Path(__file__).parent / "data" / "perplexity_sample.txt").read_text(encoding="utf-8")


def quantize_with_llama_cpp(src, dst, ftype: int) -> None:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    assert rc == 0, f"llama.cpp's quantizer failed with {rc}"


@pytest.fixture(scope="session")
def model_files(smollm2_path, gemma3_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("quantized")
    files = {"smollm2-q4_1": smollm2_path, "gemma3-q4_k_m": gemma3_path}
    made = [(model, name) for model in ("smollm2", "gemma3") for name in ("f16", "q8_0")]
    made += [("smollm2", "q4_0"), ("smollm2", "q5_0"), ("gemma3", "q6_k")]
    for model, name in made:
        dst = out / f"{model}-{name}.gguf"
        src = smollm2_path if model == "smollm2" else gemma3_path
        quantize_with_llama_cpp(src, dst, getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name.upper()}"))
        files[f"{model}-{name}"] = dst
    return files


def llama_cpp_model(path, n_ctx=N_CTX):
    return llama_cpp.Llama(str(path), n_ctx=n_ctx, logits_all=True, verbose=False, n_threads=2)


# files whose every tensor type llamba sums in llama.cpp's order (F16, Q8_0, Q4_0, Q4_1, Q5_0,
# Q4_K, Q6_K; Gemma's Q6_K file holds Q6_K where rows allow, Q8_0 elsewhere; its Q4_K_M file,
# the catalog's, Q4_K, Q6_K, Q5_0 and Q8_0)
EXACT_FILES = ["smollm2-q4_1", "smollm2-f16", "smollm2-q8_0", "smollm2-q4_0", "smollm2-q5_0",
               "gemma3-f16", "gemma3-q8_0", "gemma3-q6_k", "gemma3-q4_k_m"]  # fmt: skip


@pytest.mark.parametrize("name", EXACT_FILES)
def test_last_logits_close_to_llama_cpp(model_files, name):
    path = model_files[name]
    ours = Model(path, n_ctx=N_CTX)
    tokens = Tokenizer.from_metadata(ours.metadata).tokenize(PROMPT)
    got = ours.eval(tokens, logits="last").astype(np.float64)
    ref_model = llama_cpp_model(path)
    ref_model.eval(tokens)
    want = np.array(ref_model.scores[len(tokens) - 1], dtype=np.float64)
    diff = np.abs(got - want)
    if name.endswith("f16"):
        assert diff.max() <= 0.1, diff.max()
        return
    p = np.exp(want - want.max())
    p /= p.sum()
    log_q = got - got.max() - np.log(np.exp(got - got.max()).sum())
    kl = float((p * (np.log(p + 1e-300) - log_q)).sum())
    assert diff.max() <= 1.5, diff.max()
    assert diff.mean() <= 0.3, diff.mean()
    assert kl <= 0.02, kl
    assert got.argmax() == want.argmax()


GREEDY_PROMPTS = [
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "The three primary colors are",
    "def fibonacci(n):",
]


def greedy_pair(path, prompt: str, n: int = 32):
    """Greedy continuations by llamba (through Llama.generate) and by llama.cpp (arg-max of its
    own logits, fed back)."""
    llm = Llama(path, n_ctx=N_CTX)
    ids = llm.tokenize(prompt)
    ours = []
    for token in llm.generate(ids, temp=0.0):
        ours.append(token)
        if len(ours) == n:
            break
    ref_model = llama_cpp_model(path)
    ref_model.eval(ids)
    theirs = []
    for _ in range(n):
        theirs.append(int(np.argmax(ref_model.scores[ref_model.n_tokens - 1])))
        ref_model.eval([theirs[-1]])
    return llm, ours, theirs


@pytest.mark.parametrize("prompt", GREEDY_PROMPTS)
@pytest.mark.parametrize("name", EXACT_FILES)
def test_greedy_32_tokens_identical_to_llama_cpp(model_files, name, prompt):
    llm, ours, theirs = greedy_pair(model_files[name], prompt)
    assert ours == theirs, (llm.detokenize(ours), llm.detokenize(theirs))


@pytest.mark.parametrize("name", EXACT_FILES)
def test_logits_bit_identical_to_llama_cpp(model_files, name):
    """Every position of a prompt batch, then 24 single-token steps: the same float32 logits
    as llama.cpp's, bit for bit."""
    path = model_files[name]
    ours = Model(path, n_ctx=N_CTX)
    tokens = Tokenizer.from_metadata(ours.metadata).tokenize(STORY)
    ref_model = llama_cpp_model(path)
    ref_model.eval(tokens)
    got = ours.eval(tokens, logits="all")
    np.testing.assert_array_equal(got, np.array(ref_model.scores[: len(tokens)], np.float32))
    for _ in range(24):
        token = int(np.argmax(ref_model.scores[ref_model.n_tokens - 1]))
        ref_model.eval([token])
        got = ours.eval([token])
        np.testing.assert_array_equal(
            got, np.array(ref_model.scores[ref_model.n_tokens - 1], np.float32)
        )


def llama_cpp_perplexity(path, tokens, n_ctx, bos_id):
    """llama-perplexity's computation on llama.cpp's logits, written out here on its own."""
    ref_model = llama_cpp_model(path, n_ctx)
    nll, count = 0.0, 0
    for c in range(len(tokens) // n_ctx):
        chunk = list(tokens[c * n_ctx : (c + 1) * n_ctx])
        if bos_id is not None:
            chunk[0] = bos_id
        ref_model.reset()
        ref_model.eval(chunk)
        for j in range(n_ctx // 2, n_ctx - 1):
            row = np.array(ref_model.scores[j], dtype=np.float64)
            log_z = row.max() + np.log(np.exp(row - row.max()).sum())
            nll -= row[tokens[c * n_ctx + j + 1]] - log_z
            count += 1
    return float(np.exp(nll / count))


@pytest.mark.parametrize("name", ["smollm2-q4_1", "gemma3-q4_k_m"])
def test_perplexity_within_one_percent_of_llama_cpp(model_files, name):
    """The whole text (about 1750 tokens, 13 chunks, 819 scored): per-token log-likelihoods
    differ by the 8-bit activation noise (std 0.1-0.13 nats, mean ~0), so fewer tokens would
    make the 1 % bound a matter of luck. Measured: SmolLM2 27.459 vs 27.439, Gemma-3 25.753
    vs 25.703."""
    path = model_files[name]
    model = Model(path, n_ctx=N_CTX)
    tok = Tokenizer.from_metadata(model.metadata)
    tokens = tok.tokenize(TEXT, add_special=True)
    bos = tok.bos_id if tok.add_bos else None
    ours = perplexity(model, tokens, N_CTX, bos)
    theirs = llama_cpp_perplexity(path, tokens, N_CTX, bos)
    print(f"{name}: perplexity llamba {ours.perplexity:.4f}, llama.cpp {theirs:.4f}")
    assert abs(ours.perplexity - theirs) <= 0.01 * theirs
    assert ours.n_chunks == len(tokens) // N_CTX >= 13
    assert ours.n_scored == ours.n_chunks * (N_CTX - N_CTX // 2 - 1)
