"""The command line: one-line errors with non-zero exits, and inspect's figures."""

from __future__ import annotations

import json
import subprocess
import sys

import gguf
import numpy as np
import pytest

from llamba.engine.memory import estimate_memory
from llamba.formats.gguf_reader import GGUFFile


def llamba(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llamba", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def corrupt_copy(src, dst, keep: int):
    dst.write_bytes(src.read_bytes()[:keep])
    return dst


@pytest.mark.parametrize(
    "make_path",
    [
        pytest.param(lambda tmp, model: tmp / "missing.gguf", id="missing"),
        pytest.param(lambda tmp, model: tmp, id="directory"),
        pytest.param(
            lambda tmp, model: (
                (tmp / "notes.txt").write_text("hello, not a model") and tmp / "notes.txt"
            ),
            id="not-gguf",
        ),
        pytest.param(
            lambda tmp, model: corrupt_copy(model, tmp / "cut.gguf", 100_000), id="truncated"
        ),
    ],
)
def test_inspect_bad_input_is_one_line_and_nonzero(tmp_path, smollm2_path, make_path):
    path = make_path(tmp_path, smollm2_path)
    r = llamba("inspect", str(path))
    assert r.returncode != 0
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("llamba inspect: error:")
    assert "Traceback" not in r.stderr


def test_inspect_corrupt_header_names_offset(tmp_path, smollm2_path):
    data = bytearray(smollm2_path.read_bytes()[:4096])
    data[8:16] = (2**62).to_bytes(8, "little")  # absurd tensor count
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(data))
    r = llamba("inspect", str(bad))
    assert r.returncode == 1
    assert "at byte 8" in r.stderr


@pytest.mark.slow
def test_inspect_json_matches_gguf_py(real_model_path):
    r = llamba("inspect", str(real_model_path), "--json", "--ctx", "2048")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    ref = gguf.GGUFReader(real_model_path)
    n_params = sum(int(np.prod(t.shape)) for t in ref.tensors)
    n_bytes = sum(int(t.n_bytes) for t in ref.tensors)
    assert s["n_params"] == n_params
    assert s["tensor_bytes"] == n_bytes
    assert s["n_tensors"] == len(ref.tensors)
    assert s["bits_per_weight"] == pytest.approx(8 * n_bytes / n_params)
    arch = ref.fields["general.architecture"].contents()
    assert s["architecture"] == arch
    assert s["hyperparameters"]["block_count"] == ref.fields[f"{arch}.block_count"].contents()
    types = {}
    for t in ref.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    assert {k: v["tensors"] for k, v in s["types"].items()} == types
    assert s["memory"]["n_ctx"] == 2048


def test_inspect_human_output(smollm2_path):
    r = llamba("inspect", str(smollm2_path))
    assert r.returncode == 0, r.stderr
    assert "architecture: llama" in r.stdout
    assert "tensor types:" in r.stdout
    assert "memory at context 4096" in r.stdout


@pytest.mark.slow
def test_kv_cache_estimate_matches_llama_cpp(smollm2_path, capfd):
    """llama.cpp reports its f16 KV cache size when it creates a context; ours must agree."""
    import llama_cpp

    n_ctx = 2048
    llm = llama_cpp.Llama(str(smollm2_path), n_ctx=n_ctx, verbose=True)
    del llm
    err = capfd.readouterr().err
    line = next(ln for ln in err.splitlines() if "llama_kv_cache" in ln and "size =" in ln)
    mib = float(line.split("size =")[1].split("MiB")[0])
    with GGUFFile(smollm2_path) as f:
        ours = estimate_memory(f, n_ctx).kv_cache
    assert ours / 2**20 == pytest.approx(mib, abs=0.01)


def test_list_shows_catalog(smollm2_path):
    r = llamba("list", "--json")
    assert r.returncode == 0, r.stderr
    models = {m["name"]: m for m in json.loads(r.stdout)["models"]}
    assert models["smollm2-135m-instruct"]["present"]
    assert [name for name, m in models.items() if m["default"]] == ["smollm2-135m-instruct-f16"]


def test_unknown_model_is_one_line(tmp_path):
    r = llamba("pull", "no-such-model")
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0
    assert "unknown model" in r.stderr


@pytest.mark.slow
def test_kv_cache_estimate_matches_the_runtime(gemma3_path):
    """Sliding-window layers keep a ring, not the whole context: the estimate is what loads."""
    from llamba.engine.model import Model

    n_ctx = 2048
    model = Model(gemma3_path, n_ctx=n_ctx)
    with GGUFFile(gemma3_path) as f:
        assert estimate_memory(f, n_ctx).kv_cache == model.kv_nbytes
    model.close()
