"""The linear kernels (pack_weight, matvec, matmul, get_rows, dequantize) against the numpy
reference (llamba.formats.quants), for every type and every instruction-set path this CPU runs.

matvec/matmul are checked against float64 dot products with the reference-dequantized weights,
within a bound derived from how the kernels quantize activations (see `error_bound`), and the
instruction-set paths must agree with each other.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_bounds import ISAS, error_bound

from llamba.formats import quants as ref
from llamba.formats.ggml_types import TYPE_INFO, GGMLType
from llamba.kernels import linear

BLOCK_32 = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
K_QUANTS = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
FLOATS = ["F32", "F16", "BF16"]
ALL_TYPES = BLOCK_32 + K_QUANTS + FLOATS


def make_weight(name: str, n_out: int, n_in: int, seed: int = 0) -> np.ndarray:
    """Reference-quantized blocks (n_out, row_bytes) of a random matrix with uneven row scales."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n_out, n_in)).astype(np.float32)
    w *= rng.uniform(0.01, 2.0, (n_out, 1)).astype(np.float32)
    return ref.quantize(w, name)


def widths(name: str) -> list[int]:
    # the real models' widths 576 and 640 are not multiples of 256: no k-quant has them
    return [512, 1536] if name in K_QUANTS else [576, 640, 2048]


def run_matmul(pw, x: np.ndarray, isa: str) -> np.ndarray:
    out = np.full((x.shape[0], pw.n_out), np.nan, np.float32)
    linear.matmul(pw, x, out, isa=isa)
    return out


@pytest.mark.parametrize("name", ALL_TYPES)
def test_dequantize_bit_exact(name):
    for n_in in widths(name):
        raw = make_weight(name, 37, n_in)  # 2 tiles of 16 rows + 5 tail rows
        pw = linear.pack_weight(raw, name, n_in)
        want = ref.dequantize(raw, name, (37, n_in))
        got = linear.dequantize(pw)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
        np.testing.assert_array_equal(linear.dequantize_row(pw, 36), want[36])


@pytest.mark.parametrize("name", ALL_TYPES)
def test_matmul_matvec_every_isa(name):
    rng = np.random.default_rng(1)
    for n_in, n_out in zip(widths(name), (37, 16, 3), strict=False):
        raw = make_weight(name, n_out, n_in, seed=n_in)
        pw = linear.pack_weight(raw, name, n_in)
        w = ref.dequantize(raw, name, (n_out, n_in)).astype(np.float64)
        x = rng.standard_normal((5, n_in)).astype(np.float32)
        x[1] *= 100.0  # tokens of very different scales
        x[2, : n_in // 2] = 0.0  # all-zero activation blocks
        exact = x.astype(np.float64) @ w.T
        bound = error_bound(name, w, x)
        results = {}
        for isa in ISAS:
            got = run_matmul(pw, x, isa)
            err = np.abs(got - exact)
            assert np.all(err <= bound), (isa, n_in, n_out, float((err / bound).max()))
            vec = np.full(n_out, np.nan, np.float32)
            linear.matvec(pw, x[3], vec, isa=isa)
            np.testing.assert_allclose(vec, got[3], rtol=1e-6, atol=1e-6 * np.abs(got[3]).max())
            results[isa] = got
        for got in results.values():  # the paths do the same integer sums
            atol = 1e-6 * np.abs(got).max()
            np.testing.assert_allclose(got, results[ISAS[0]], rtol=1e-5, atol=atol)


@pytest.mark.parametrize("name", K_QUANTS + ["Q4_0", "Q5_0", "Q5_1", "Q8_0"])
def test_matmul_many_tokens(name):
    """Prefill-sized batches (tokens two at a time for 32-weight types, an odd one last) give
    the same rows as one token at a time, except where llama.cpp sums a batch in another
    order (Q4_K's repacked gemm takes the first n - n % 4 tokens, Q6_K's tiled kernel batches
    of 8 or more): there the rows agree to float rounding."""
    raw = make_weight(name, 48, 512)
    pw = linear.pack_weight(raw, name, 512)
    x = np.random.default_rng(2).standard_normal((67, 512)).astype(np.float32)
    got = run_matmul(pw, x, ISAS[0])
    other_order = {"Q4_K": range(64), "Q6_K": range(67)}.get(name, ())
    for t in (0, 33, 66):
        vec = np.empty(48, np.float32)
        linear.matvec(pw, x[t], vec)
        if t in other_order:
            np.testing.assert_allclose(got[t], vec, rtol=1e-5, atol=1e-5 * np.abs(vec).max())
        else:
            np.testing.assert_array_equal(vec, got[t])


@pytest.mark.parametrize("n_tok", [32, 67])
@pytest.mark.parametrize("name", BLOCK_32 + K_QUANTS)
def test_batches_give_the_same_bits_on_every_isa(name, n_tok):
    """A prompt batch sums in the same order on every instruction-set path, whether it takes
    the tokens one, two, (AVX-512) four or (AMX) sixteen at a time: 48 rows (three tiles),
    32 tokens (all on AMX tiles where there are some, over an odd number of 32-weight
    blocks) and 67 (64 on tiles, 3 not)."""
    n_in = widths(name)[0] + (32 if n_tok == 32 and name in BLOCK_32 else 0)
    pw = linear.pack_weight(make_weight(name, 48, n_in, seed=5), name, n_in)
    x = np.random.default_rng(6).standard_normal((n_tok, n_in)).astype(np.float32)
    x[5] *= 100.0
    want = run_matmul(pw, x, ISAS[0])
    for isa in ISAS[1:]:
        np.testing.assert_array_equal(run_matmul(pw, x, isa), want, err_msg=isa)


@pytest.mark.parametrize("name", BLOCK_32 + K_QUANTS)
def test_single_tokens_give_the_same_bits_on_every_isa(name):
    """Decode (one token) sums in the same integer and float order on every path, though
    the shapes differ (on AVX-512, Q2_K reads each quant word once for four groups, Q3_K
    unpacks all 16 scales at once)."""
    n_in = widths(name)[-1]
    pw = linear.pack_weight(make_weight(name, 40, n_in, seed=7), name, n_in)
    rng = np.random.default_rng(8)
    for scale in (1.0, 100.0):
        x = (scale * rng.standard_normal(n_in)).astype(np.float32)
        want = np.empty(40, np.float32)
        linear.matvec(pw, x, want, isa=ISAS[0])
        for isa in ISAS[1:]:
            got = np.empty(40, np.float32)
            linear.matvec(pw, x, got, isa=isa)
            np.testing.assert_array_equal(got, want, err_msg=isa)


def largest_sums_weight(name: str) -> np.ndarray:
    """48 rows of 512 whose codes are at their maximum (and a few at 0), quantized."""
    rows = np.ones((48, 512), np.float32)  # mins' types: 1 -> the top code, 0 -> code 0
    rows[:, ::16] = 0.0
    if name in ("Q3_K", "Q6_K"):  # symmetric: the largest magnitude gets code 0, -1 the top
        rows[:] = -1.0
        rows[:, ::16] = 1.01
    rows *= np.linspace(0.5, 2.0, 48, dtype=np.float32)[:, None]
    return ref.quantize(rows, name)


@pytest.mark.parametrize("name", K_QUANTS)
def test_single_tokens_at_the_largest_partial_sums(name):
    """As below, one token at a time: AVX-512's Q2_K shape takes every group sum through
    int16 (codes 3 against +-127: 16 * 3 * 4 * 127 with its in-place bit pairs)."""
    raw = largest_sums_weight(name)
    pw = linear.pack_weight(raw, name, 512)
    w = ref.dequantize(raw, name, (48, 512)).astype(np.float64)
    for sign in (1.0, -1.0):
        x = np.full(512, sign, np.float32)
        want = np.empty(48, np.float32)
        linear.matvec(pw, x, want, isa=ISAS[0])
        np.testing.assert_allclose(want, w @ x.astype(np.float64), rtol=1e-5)
        for isa in ISAS[1:]:
            got = np.empty(48, np.float32)
            linear.matvec(pw, x, got, isa=isa)
            np.testing.assert_array_equal(got, want, err_msg=isa)


@pytest.mark.parametrize("name", K_QUANTS)
def test_batches_at_the_largest_partial_sums(name):
    """Codes at their maximum against activations at +127 everywhere: the largest integer
    sums a group can make, which the AVX-512 four-token shapes flush through int16 where
    they fit, and the AMX tile rows scale in float where they stay below 2**24 (32 tokens
    on tiles, 8 not). Every path must still give the same bits (the others in int32)."""
    raw = largest_sums_weight(name)
    pw = linear.pack_weight(raw, name, 512)
    x = np.ones((40, 512), np.float32)
    x[::2] = -1.0  # and -127 everywhere
    want = run_matmul(pw, x, ISAS[0])
    exact = x.astype(np.float64) @ ref.dequantize(raw, name, (48, 512)).astype(np.float64).T
    np.testing.assert_allclose(want, exact, rtol=1e-5)
    for isa in ISAS[1:]:
        np.testing.assert_array_equal(run_matmul(pw, x, isa), want, err_msg=isa)


@pytest.mark.parametrize("name", ALL_TYPES)
def test_one_token_runner_gives_matmuls_bits(name):
    # the engine's decode path: matmul's one-token kernels without its per-call checks
    n_in = widths(name)[0]
    pw = linear.pack_weight(make_weight(name, 37, n_in, seed=3), name, n_in)  # 2 tiles + tail
    x = np.random.default_rng(4).standard_normal((1, n_in)).astype(np.float32)
    for isa in ISAS:
        want = run_matmul(pw, x, isa)
        got = np.full_like(want, np.nan)
        linear.one_token_runner(pw, isa=isa)(x, got)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["Q8_0", "Q6_K", "F16"])
def test_get_rows(name):
    n_in = widths(name)[0]
    raw = make_weight(name, 37, n_in)
    pw = linear.pack_weight(raw, name, n_in)
    want = ref.dequantize(raw, name, (37, n_in))
    ids = np.array([36, 0, 17, 17, 31, 32], np.int32)  # tail rows, repeats, tile edges
    out = np.empty((ids.size, n_in), np.float32)
    linear.get_rows(pw, ids, out)
    np.testing.assert_array_equal(out, want[ids])
    linear.get_rows(pw, np.array([], np.int64), np.empty((0, n_in), np.float32))


@pytest.mark.parametrize("name", ALL_TYPES)
def test_packed_size_is_the_file_size(name):
    n_in = widths(name)[0]
    raw = make_weight(name, 37, n_in)
    pw = linear.pack_weight(raw, name, n_in)
    assert (pw.n_out, pw.n_in, pw.ggml_type) == (37, n_in, GGMLType[name])
    assert (
        pw.nbytes
        == raw.nbytes
        == 37 * n_in // TYPE_INFO[GGMLType[name]].block_size * (TYPE_INFO[GGMLType[name]].type_size)
    )


def test_float_inputs_accepted_as_arrays():
    w = np.random.default_rng(3).standard_normal((20, 64)).astype(np.float32)
    x = np.random.default_rng(4).standard_normal(64).astype(np.float32)
    for raw, name in ((w, "F32"), (w.astype(np.float16), "F16")):
        pw = linear.pack_weight(raw, name, 64)
        out = np.empty(20, np.float32)
        linear.matvec(pw, x, out)
        w64 = w.astype(raw.dtype).astype(np.float64)
        bound = error_bound(name, w64, x[None])[0]
        assert np.all(np.abs(out - w64 @ x) <= bound)


def test_bad_inputs_raise_clear_errors():
    raw = make_weight("Q4_0", 16, 64)
    with pytest.raises(ValueError, match="no kernels for GGML type IQ2_XXS"):
        linear.pack_weight(raw, "IQ2_XXS", 64)
    with pytest.raises(ValueError, match="uint8"):
        linear.pack_weight(raw[:, :-1], "Q4_0", 64)
    with pytest.raises(ValueError, match="multiple"):
        linear.pack_weight(raw, "Q4_0", 60)
    pw = linear.pack_weight(raw, "Q4_0", 64)
    with pytest.raises(ValueError, match="X must be"):
        linear.matmul(pw, np.zeros((2, 64), np.float64), np.zeros((2, 16), np.float32))
    with pytest.raises(ValueError, match="X must be"):
        linear.matmul(pw, np.zeros((64, 2), np.float32).T, np.zeros((2, 16), np.float32))
    with pytest.raises(ValueError, match="out must be"):
        linear.matvec(pw, np.zeros(64, np.float32), np.zeros(15, np.float32))
    with pytest.raises(IndexError):
        linear.get_rows(pw, np.array([16]), np.zeros((1, 64), np.float32))
    with pytest.raises(ValueError, match="unknown instruction set"):
        linear.matvec(pw, np.zeros(64, np.float32), np.zeros(16, np.float32), isa="sse9")


def ggml_codes(name: str, raw: np.ndarray):
    """(d, m or None, codes) of a Q8_0 / Q4_1 / Q5_0 / Q5_1 matrix's blocks: (n_out, nb)
    float32 scales and (n_out, nb, 32) int64 codes (with Q5_0's offset) in weight order."""
    f32 = np.float32
    block = {"Q8_0": 34, "Q4_1": 20, "Q5_0": 22, "Q5_1": 24}[name]
    blocks = raw.reshape(raw.shape[0], -1, block)
    d = blocks[:, :, :2].copy().view(np.float16)[..., 0].astype(f32)
    if name == "Q8_0":
        return d, None, blocks[:, :, 2:].view(np.int8).astype(np.int64)
    qs = blocks[:, :, -16:].astype(np.int64)
    codes = np.concatenate([qs & 0xF, qs >> 4], axis=-1)
    if name in ("Q5_0", "Q5_1"):
        at = 2 if name == "Q5_0" else 4
        qh = blocks[:, :, at : at + 4].copy().view(np.uint32)[..., 0].astype(np.int64)
        codes |= ((qh[..., None] >> np.arange(32)) & 1) << 4
    if name == "Q5_0":
        return d, None, codes - 16
    m = blocks[:, :, 2:4].copy().view(np.float16)[..., 0].astype(f32)
    return d, m, codes


def ref_legacy_ggml(name: str, raw: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Q8_0 / Q4_1 / Q5_0 / Q5_1 W @ x as ggml computes it on x86 (vec_dot_q8_0_q8_0,
    vec_dot_q4_1_q8_1, vec_dot_q5_0_q8_0, vec_dot_q5_1_q8_1; tinyBLAS sums Q8_0 and Q5_0
    batches in the same order):
    activations quantized as quantize_row_q8_0 / q8_1 do there (d = amax / 127, codes
    rint(x * 127 / amax), s = f16(d * sum of codes)); then per row 8 float lanes, lane l
    accumulating fma(sum of its 4 code products, d_w * d_x) over the blocks, hsum_float_8's
    tree, and for Q4_1 / Q5_1 the float sum of m * s over the blocks added last."""
    f32 = np.float32
    w_d, w_m, w_q = ggml_codes(name, raw)
    n_out = raw.shape[0]
    xb = x.reshape(x.shape[0], -1, 32)
    amax = np.abs(xb).max(-1)
    with np.errstate(divide="ignore"):
        inv = np.where(amax > 0, f32(127.0) / amax, f32(0.0)).astype(f32)
    x_q = np.rint(xb * inv[..., None]).astype(np.int64)  # (n_tok, nb, 32)
    d_x = (amax / f32(127.0)).astype(f32)
    x_d = d_x.astype(np.float16).astype(f32)
    x_s = (d_x * x_q.sum(-1).astype(f32)).astype(np.float16).astype(f32)
    out = np.empty((x.shape[0], n_out), f32)
    for t in range(x.shape[0]):
        lane_sums = (w_q * x_q[t]).reshape(n_out, -1, 8, 4).sum(-1)  # (n_out, nb, 8) exact
        dd = (w_d * x_d[t]).astype(f32)  # (n_out, nb)
        acc = np.zeros((n_out, 8), f32)
        summs = np.zeros(n_out, f32)
        for b in range(dd.shape[1]):
            acc = (np.longdouble(lane_sums[:, b]) * dd[:, b, None] + acc).astype(f32)
            if w_m is not None:
                summs = summs + w_m[:, b] * x_s[t, b]
        out[t] = ((acc[:, 0] + acc[:, 4]) + (acc[:, 2] + acc[:, 6])) + (
            (acc[:, 1] + acc[:, 5]) + (acc[:, 3] + acc[:, 7])
        )
        out[t] += summs
    return out


@pytest.mark.parametrize("name", ["Q8_0", "Q4_1", "Q5_0", "Q5_1"])
def test_legacy_sums_as_ggml_does(name):
    """Q8_0, Q4_1, Q5_0 and Q5_1 results are llama.cpp's to the bit (its vec_dot and
    tinyBLAS order), tiled rows and tail rows, one token and a batch (on unpacked rows), on
    every instruction-set path.
    (Q4_0 it repacks on AVX2, into kernels with one float sum per row and block, as llamba's
    plain shape keeps; the model tests check that file.)"""
    raw = make_weight(name, 37, 576)
    pw = linear.pack_weight(raw, name, 576)
    x = np.random.default_rng(3).standard_normal((6, 576)).astype(np.float32)
    x[1] *= 50.0
    want = ref_legacy_ggml(name, raw, x)
    for isa in ISAS:
        np.testing.assert_array_equal(run_matmul(pw, x, isa), want)
        vec = np.empty(37, np.float32)
        linear.matvec(pw, x[2], vec, isa=isa)
        np.testing.assert_array_equal(vec, want[2])


def fma_f32(a, b, c):
    """a * b + c rounded once to float32 (the product is exact in long double)."""
    return (np.longdouble(a) * np.longdouble(b) + np.longdouble(c)).astype(np.float32)


def ref_f16_ggml(w16: np.ndarray, x: np.ndarray) -> np.ndarray:
    """F16 W @ x as llama.cpp's CPU backend sums it (AVX2): activations rounded to f16; one
    token by ggml_vec_dot_f16 (four 8-lane FMA chains 32 apart, reduced (0+2)+(1+3), two
    hadds, the n % 32 tail added in float64), a batch by tinyBLAS (one 8-lane chain, then
    hsum_float_8's tree)."""
    f32 = np.float32
    w = w16.astype(f32)
    xr = x.astype(np.float16).astype(f32)
    n_tok, n_in = x.shape
    out = np.empty((n_tok, w.shape[0]), f32)
    for t in range(n_tok):
        if n_tok > 1 and n_in % 8 == 0:
            acc = np.zeros((w.shape[0], 8), f32)
            for i in range(0, n_in, 8):
                acc = fma_f32(w[:, i : i + 8], xr[t, i : i + 8], acc)
            out[t] = ((acc[:, 0] + acc[:, 4]) + (acc[:, 2] + acc[:, 6])) + (
                (acc[:, 1] + acc[:, 5]) + (acc[:, 3] + acc[:, 7])
            )
            continue
        acc = np.zeros((4, w.shape[0], 8), f32)
        n32 = n_in - n_in % 32
        for i in range(0, n32, 32):
            for a in range(4):
                j = i + 8 * a
                acc[a] = fma_f32(w[:, j : j + 8], xr[t, j : j + 8], acc[a])
        v = (acc[0] + acc[2]) + (acc[1] + acc[3])
        total = (
            ((v[:, 0] + v[:, 4]) + (v[:, 1] + v[:, 5]))
            + ((v[:, 2] + v[:, 6]) + (v[:, 3] + v[:, 7]))
        ).astype(np.float64)
        for i in range(n32, n_in):
            total += (w[:, i] * xr[t, i]).astype(np.float64)
        out[t] = total.astype(f32)
    return out


@pytest.mark.parametrize("n_in", [576, 584])
def test_f16_sums_as_ggml_does(n_in):
    """F16 results are llama.cpp's to the bit, one token and a batch (584: a row that is not
    a whole number of 32-weight steps takes ggml's float64 tail)."""
    rng = np.random.default_rng(4)
    w16 = (rng.standard_normal((37, n_in)) * 0.1).astype(np.float16)
    pw = linear.pack_weight(w16, "F16", n_in)
    x = rng.standard_normal((5, n_in)).astype(np.float32)
    np.testing.assert_array_equal(run_matmul(pw, x, ISAS[0]), ref_f16_ggml(w16, x))
    vec = np.empty(37, np.float32)
    linear.matvec(pw, x[1], vec)
    np.testing.assert_array_equal(vec, ref_f16_ggml(w16, x[1:2])[0])
