"""Real tensors of both real models through the linear kernels, against the numpy reference.

For every (type, shape) of matrix in each file, one tensor (row-sliced when large, keeping
an odd number of rows so a tail is left past the tiles) is packed, dequantized (bit-exact),
multiplied on every instruction-set path (within the activation-rounding bound) and looked up
by rows.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_bounds import ISAS, error_bound

from llamba.formats import quants as ref
from llamba.formats.gguf_reader import GGUFFile
from llamba.kernels import linear

MAX_ROWS = 777  # 48 tiles of 16 rows and a tail of 9


def one_tensor_per_kind(f: GGUFFile) -> list[str]:
    """The first 2-D tensor of each (type, shape) in the file."""
    seen: dict[tuple, str] = {}
    for name, info in f.tensors.items():
        if len(info.shape) == 2:
            seen.setdefault((info.type, tuple(info.shape)), name)
    return sorted(seen.values())


def check_tensor(f: GGUFFile, name: str, rng: np.random.Generator) -> None:
    info = f.tensors[name]
    n_in = info.shape[0]
    raw = f.tensor_bytes(name)[:MAX_ROWS]  # zero-copy view of the file's blocks
    n_out = raw.shape[0]
    pw = linear.pack_weight(raw, info.type, n_in)
    assert pw.nbytes == raw.nbytes
    want = ref.dequantize(np.ascontiguousarray(raw), info.type, (n_out, n_in))
    got = linear.dequantize(pw)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=name)

    ids = rng.integers(0, n_out, 7)
    rows = np.empty((ids.size, n_in), np.float32)
    linear.get_rows(pw, ids, rows)
    np.testing.assert_array_equal(rows, want[ids], err_msg=name)

    w = want.astype(np.float64)
    x = rng.standard_normal((3, n_in)).astype(np.float32)
    exact = x.astype(np.float64) @ w.T
    bound = error_bound(info.type.name, w, x)
    for isa in ISAS:
        out = np.empty((3, n_out), np.float32)
        linear.matmul(pw, x, out, isa=isa)
        err = np.abs(out - exact)
        assert np.all(err <= bound), (name, isa, float((err / bound).max()))
        vec = np.empty(n_out, np.float32)
        linear.matvec(pw, x[0], vec, isa=isa)
        np.testing.assert_allclose(vec, out[0], rtol=1e-6, atol=1e-6 * np.abs(out[0]).max())


@pytest.mark.slow
def test_smollm2_tensors(smollm2_path):
    rng = np.random.default_rng(0)
    with GGUFFile(smollm2_path) as f:
        names = one_tensor_per_kind(f)
        assert {f.tensors[n].type.name for n in names} == {"Q4_1", "Q8_0"}
        for name in names:
            check_tensor(f, name, rng)


@pytest.mark.slow
def test_gemma3_tensors(gemma3_path):
    rng = np.random.default_rng(1)
    with GGUFFile(gemma3_path) as f:
        names = one_tensor_per_kind(f)
        assert {f.tensors[n].type.name for n in names} == {"Q4_K", "Q5_0", "Q6_K", "Q8_0"}
        for name in names:
            check_tensor(f, name, rng)


@pytest.mark.slow
def test_whole_embedding_matrix(gemma3_path):
    """The largest matrix (262144 x 640 Q8_0, also the output projection) packs whole."""
    with GGUFFile(gemma3_path) as f:
        raw = f.tensor_bytes("token_embd.weight")
        pw = linear.pack_weight(raw, "Q8_0", 640)
        assert pw.nbytes == raw.nbytes
        ids = np.array([0, 2, 262143, 131071])
        rows = np.empty((ids.size, 640), np.float32)
        linear.get_rows(pw, ids, rows)
        want = ref.dequantize(np.ascontiguousarray(raw[ids]), "Q8_0", (ids.size, 640))
        np.testing.assert_array_equal(rows, want)
        x = np.random.default_rng(2).standard_normal(640).astype(np.float32)
        logits = np.empty(262144, np.float32)
        linear.matvec(pw, x, logits)
        sample = np.arange(0, 262144, 4099)
        w = ref.dequantize(np.ascontiguousarray(raw[sample]), "Q8_0", (sample.size, 640))
        exact = w.astype(np.float64) @ x
        bound = error_bound("Q8_0", w.astype(np.float64), x[None])[0]
        assert np.all(np.abs(logits[sample] - exact) <= bound)
