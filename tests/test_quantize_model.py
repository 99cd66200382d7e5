"""`llamba quantize` against llama.cpp's own quantizer (llama_model_quantize through
llama-cpp-python): for the same input and preset the two output files are byte-identical,
which covers the tensor types (the mixture rules and fallbacks), the tensor order, the
metadata and every quantized block."""

from __future__ import annotations

import filecmp
import hashlib
import os
import subprocess
import sys

import llama_cpp
import pytest
import tiny_models

from llamba.engine import catalog
from llamba.engine.quantize_model import QuantizeError, quantize_model
from llamba.formats.gguf_reader import GGUFFile

FTYPES = {
    "F16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16,
    "Q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0,
    "Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
    "Q2_K": llama_cpp.LLAMA_FTYPE_MOSTLY_Q2_K,
    "Q3_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q3_K_M,
    "Q4_K_S": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_S,
    "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
    "Q5_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M,
}


def llama_quantize(src, dst, preset: str) -> None:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[preset]
    params.allow_requantize = True
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    assert rc == 0, f"llama.cpp's quantizer failed with {rc}"


def llamba(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llamba", *args], capture_output=True, text=True, timeout=300
    )


def assert_same_file(ours, theirs) -> None:
    if filecmp.cmp(ours, theirs, shallow=False):
        return
    a, b = GGUFFile(ours), GGUFFile(theirs)  # say where they differ
    assert list(a.tensors) == list(b.tensors), "tensor order"
    types = {n: (a.tensors[n].type.name, b.tensors[n].type.name) for n in a.tensors}
    assert {n: t for n, t in types.items() if t[0] != t[1]} == {}, "tensor types"
    assert list(a.fields) == list(b.fields), "metadata keys"
    raise AssertionError("files differ in metadata values or tensor bytes")


@pytest.mark.slow
@pytest.mark.parametrize("preset", list(FTYPES))
def test_smollm2_presets_are_byte_identical_to_llama_quantize(smollm2_path, tmp_path, preset):
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "theirs.gguf"
    steps = quantize_model(smollm2_path, ours, preset, allow_requantize=True)
    llama_quantize(smollm2_path, theirs, preset)
    assert_same_file(ours, theirs)
    assert len(steps) == len(GGUFFile(smollm2_path).tensors)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["Q8_0", "Q3_K_M"])
def test_gemma3_presets_are_byte_identical_to_llama_quantize(gemma3_path, tmp_path, preset):
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "theirs.gguf"
    quantize_model(gemma3_path, ours, preset, allow_requantize=True)
    llama_quantize(gemma3_path, theirs, preset)
    assert_same_file(ours, theirs)


@pytest.fixture
def odd_width_model(tmp_path, monkeypatch):
    """A float32 llama whose rows (48, 80) fit neither k-quant blocks nor 32-wide blocks."""
    monkeypatch.setitem(
        tiny_models.TINY,
        "llama",
        dict(dim=48, n_layer=2, n_head=4, n_kv_head=2, head_dim=12, n_ff=80, n_vocab=96),
    )
    return tiny_models.write_tiny_model(tmp_path / "odd.gguf", "llama")


def test_rows_that_fit_no_block_fall_back_as_llama_cpp_does(odd_width_model, tmp_path):
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "theirs.gguf"
    r = llamba("quantize", str(odd_width_model), str(ours), "Q4_K_M", "-q")
    assert r.returncode == 0, r.stderr
    llama_quantize(odd_width_model, theirs, "Q4_K_M")
    assert_same_file(ours, theirs)


def test_requantizing_needs_permission(smollm2_path, tmp_path):
    out = tmp_path / "out.gguf"
    with pytest.raises(QuantizeError, match="allow_requantize"):
        quantize_model(smollm2_path, out, "Q8_0")
    r = llamba("quantize", str(smollm2_path), str(out), "Q8_0")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "--allow-requantize" in r.stderr
    assert os.listdir(tmp_path) == []  # no output, no temp file


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Q9_9"], "unknown quantization type"),
        (["Q8_0", "--output-tensor-type", "Q7"], "unknown tensor type"),
    ],
)
def test_bad_types_are_one_line_errors(odd_width_model, tmp_path, args, message):
    r = llamba("quantize", str(odd_width_model), str(tmp_path / "out.gguf"), *args)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and message in r.stderr
    assert not (tmp_path / "out.gguf").exists()


def test_output_must_not_be_the_input(odd_width_model):
    before = odd_width_model.read_bytes()
    r = llamba("quantize", str(odd_width_model), str(odd_width_model), "Q8_0")
    assert r.returncode == 1 and "must not be the input" in r.stderr
    assert odd_width_model.read_bytes() == before


@pytest.mark.slow
def test_the_default_chat_model_is_derived_from_its_base(smollm2_path, tmp_path, monkeypatch):
    """A `derive` catalog entry is made locally from its base model and checked against the
    catalog's sha256 (which is also that of llama-quantize's output for the same preset)."""
    monkeypatch.setenv(catalog.CACHE_ENV, str(tmp_path))
    os.link(smollm2_path, tmp_path / smollm2_path.name)  # the base is already "pulled"
    cat = catalog.load_catalog()
    entry = cat.entries[cat.default]
    assert entry.derive["from"] == "smollm2-135m-instruct"
    path = catalog.pull(cat.default, sources=("derive",), say=lambda m: None)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256
    theirs = tmp_path / "theirs.gguf"
    llama_quantize(smollm2_path, theirs, entry.derive["quantize"])
    assert filecmp.cmp(path, theirs, shallow=False)
    assert sorted(os.listdir(tmp_path)) == sorted([smollm2_path.name, path.name, theirs.name])


def test_non_finite_weights_are_refused(tmp_path):
    """llama.cpp validates quantized rows; here a NaN weight stops the write before any file
    appears under the output name."""
    import numpy as np

    src = tiny_models.write_tiny_model(tmp_path / "tiny.gguf", "llama")
    with GGUFFile(src) as f:
        offset = f.tensors["blk.1.ffn_up.weight"].offset
    with open(src, "r+b") as fh:
        fh.seek(offset + 4 * 7)
        fh.write(np.float32("nan").tobytes())
    out = tmp_path / "out.gguf"
    r = llamba("quantize", str(src), str(out), "Q8_0", "-q")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "blk.1.ffn_up.weight holds inf or NaN" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["tiny.gguf"]
