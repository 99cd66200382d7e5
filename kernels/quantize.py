"""Fast weight quantization: rows of float32 -> GGUF blocks, byte for byte the numpy reference.

    quantize(x, qtype) -> uint8 (n_rows, row_bytes)      x: (n_rows, n_per_row) float32

Rows are quantized in parallel. The arithmetic is the reference's (llamba.formats.quants,
itself ggml's quantize_row_*_ref without an importance matrix): float32 throughout, one
rounding per operation in source order, sums left to right, ggml's nearest_int, fp16 stores
rounded to nearest even. Types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K (what the
Q4_K_M family of presets needs, and their fallbacks on rows that are not multiples of 256).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..formats.ggml_types import TYPE_INFO, GGMLType, ggml_type
from . import type_ids as T
from .inline import inline
from .quantize_search import (
    GROUP_MAX_EPS,
    LANES_8,
    LANES_16,
    MAGIC,
    nearest_int_lanes,
    qkx2_lanes,
    qx_lanes,
)
from .scalar import f16_to_f32, f32_to_bits, f32_to_f16
from .simd import (
    clamp_i32,
    eq,
    load_f32,
    load_i32,
    store_f32,
    store_i32,
    vabs,
    vsqrt,
    where,
    zeros_f32,
)
from .simd import (
    lanes as lanes_of,
)
from .static import DirectCall, static, static_dispatch

f32 = np.float32
i32 = np.int32


@inline
def nearest_int(v):
    """ggml's nearest_int: round half to even through the float32 mantissa."""
    return i32(f32_to_bits(f32(v) + MAGIC) & np.uint32(0x007FFFFF)) - i32(0x00400000)


@inline
def fp16_store(v):
    """(uint16 bits, float32 value read back) of v stored as fp16 (NaN as sign | 0x7E00)."""
    if v != v:
        bits = np.uint16((f32_to_bits(v) >> np.uint32(16)) & np.uint32(0x8000)) | np.uint16(0x7E00)
    else:
        bits = f32_to_f16(v)
    return bits, f16_to_f32(bits)


@inline
def put_u16(out, o, bits):
    out[o] = np.uint8(bits & 0xFF)
    out[o + 1] = np.uint8(bits >> 8)


@inline
def safe_div(num, den):
    return f32(num / den) if den != 0 else f32(0.0)


@inline
def first_absmax(x):
    """The signed value of largest |x| (first on ties), 0 if all are zero."""
    amax = f32(0.0)
    mx = f32(0.0)
    for v in x:
        if abs(v) > amax:
            amax = abs(v)
            mx = v
    return mx


# ------------------------------------------------------------------ 32-weight blocks


@inline
def pack_nibbles_32(q, out, o):
    """Codes q (32,) -> 16 bytes at out[o]: weight j low nibble, weight j + 16 high."""
    for j in range(16):
        out[o + j] = np.uint8((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4))


@inline
def pack_high_bits_32(q, out, o):
    """Bit 4 of codes q (32,) -> the little-endian uint32 at out[o]."""
    for k in range(4):
        byte = 0
        for j in range(8):
            byte |= ((q[8 * k + j] >> 4) & 1) << j
        out[o + k] = np.uint8(byte)


@njit(cache=True)
def quantize_row_q8_0(x, out):
    q = np.empty(32, np.int32)
    for b in range(x.size // 32):
        xb = x[b * 32 : b * 32 + 32]
        amax = f32(0.0)
        for v in xb:
            amax = max(amax, abs(v))
        d = amax / f32(127.0)
        inv = safe_div(f32(1.0), d)
        o = b * 34
        put_u16(out, o, fp16_store(d)[0])
        for j in range(32):
            v = xb[j] * inv
            a = abs(v)
            r = np.floor(a)
            r = r + f32(1.0) if a - r >= f32(0.5) else r  # roundf: halves away from zero
            q[j] = i32(r) if v >= 0 else -i32(r)
            out[o + 2 + j] = np.uint8(q[j] & 0xFF)


@inline
def quantize_row_symmetric_32(x, out, levels, has_high_bit, block_bytes):
    """Q4_0 (levels 8) / Q5_0 (16): d = absmax / -levels, q = min(2 levels - 1, trunc(x/d +
    levels + 0.5))."""
    q = np.empty(32, np.int32)
    for b in range(x.size // 32):
        xb = x[b * 32 : b * 32 + 32]
        d = first_absmax(xb) / f32(-levels)
        inv = safe_div(f32(1.0), d)
        o = b * block_bytes
        put_u16(out, o, fp16_store(d)[0])
        for j in range(32):
            q[j] = min(2 * levels - 1, i32(xb[j] * inv + f32(levels + 0.5)))
        if has_high_bit:
            pack_high_bits_32(q, out, o + 2)
            pack_nibbles_32(q, out, o + 6)
        else:
            pack_nibbles_32(q, out, o + 2)


@inline
def quantize_row_range_32(x, out, levels, has_high_bit, block_bytes):
    """Q4_1 (levels 15) / Q5_1 (31): d = (max - min) / levels, q = trunc((x - min) / d + 0.5);
    Q5_1 keeps ggml's missing clamp (the code wraps at 8 bits)."""
    q = np.empty(32, np.int32)
    for b in range(x.size // 32):
        xb = x[b * 32 : b * 32 + 32]
        lo = xb[0]
        hi = xb[0]
        for v in xb:
            if v < lo:
                lo = v
            if v > hi:
                hi = v
        d = (hi - lo) / f32(levels)
        inv = safe_div(f32(1.0), d)
        o = b * block_bytes
        put_u16(out, o, fp16_store(d)[0])
        put_u16(out, o + 2, fp16_store(lo)[0])
        for j in range(32):
            v = i32((xb[j] - lo) * inv + f32(0.5))
            q[j] = (v & 0xFF) if has_high_bit else min(15, v)
        if has_high_bit:
            pack_high_bits_32(q, out, o + 4)
            pack_nibbles_32(q, out, o + 8)
        else:
            pack_nibbles_32(q, out, o + 4)


@njit(cache=True)
def quantize_row_q4_0(x, out):
    quantize_row_symmetric_32(x, out, 8, False, 18)


@njit(cache=True)
def quantize_row_q5_0(x, out):
    quantize_row_symmetric_32(x, out, 16, True, 22)


@njit(cache=True)
def quantize_row_q4_1(x, out):
    quantize_row_range_32(x, out, 15, False, 20)


@njit(cache=True)
def quantize_row_q5_1(x, out):
    quantize_row_range_32(x, out, 31, True, 24)


# ------------------------------------------------------------------ k-quant super-blocks


@inline
def quantize_row_q45_k(x, out, nmax, rmin, rdelta, nstep, block_bytes):
    """Q4_K (nmax 15) / Q5_K (31): 8 groups of 32 with 6-bit scales and mins."""
    lanes = LANES_8
    xt = np.empty(256, np.float32)  # (32 weights, 8 groups)
    wt = np.empty(256, np.float32)
    L = np.empty(256, np.int32)  # codes, (32, 8) like xt
    Laux = np.empty(256, np.int32)
    scales = np.empty(8, np.float32)
    mins = np.empty(8, np.float32)
    ls = np.empty(8, np.int32)
    lm = np.empty(8, np.int32)
    dg = np.empty(8, np.float32)
    dm = np.empty(8, np.float32)
    for b in range(x.size // 256):
        xb = x[b * 256 : b * 256 + 256]
        o = b * block_bytes
        for i in range(32):
            for j in range(8):
                xt[i * 8 + j] = xb[j * 32 + i]
        sum_x2 = zeros_f32(lanes)
        for i in range(32):
            xi = load_f32(lanes, xt, i * 8)
            sum_x2 = sum_x2 + xi * xi
        av_x = vsqrt(sum_x2 / f32(32.0))
        for i in range(32):
            store_f32(wt, i * 8, av_x + vabs(load_f32(lanes, xt, i * 8)))
        scale_v, min_v = qkx2_lanes(lanes, xt, wt, 32, nmax, rmin, rdelta, nstep, L, Laux)
        store_f32(scales, 0, scale_v)
        store_f32(mins, 0, min_v)
        max_scale = f32(0.0)
        max_min = f32(0.0)
        for j in range(8):
            if scales[j] > max_scale:
                max_scale = scales[j]
            if mins[j] > max_min:
                max_min = mins[j]
        inv_scale = safe_div(f32(63.0), max_scale)
        inv_min = safe_div(f32(63.0), max_min)
        for j in range(8):
            ls[j] = min(63, nearest_int(inv_scale * scales[j]) & 0xFF)
            lm[j] = min(63, nearest_int(inv_min * mins[j]) & 0xFF)
        d_bits, d = fp16_store(max_scale / f32(63.0))
        dmin_bits, dmin = fp16_store(max_min / f32(63.0))
        put_u16(out, o, d_bits)
        put_u16(out, o + 2, dmin_bits)
        for j in range(4):  # the 12 packed scale bytes
            out[o + 4 + j] = np.uint8(ls[j] | ((ls[j + 4] >> 4) << 6))
            out[o + 8 + j] = np.uint8(lm[j] | ((lm[j + 4] >> 4) << 6))
            out[o + 12 + j] = np.uint8((ls[j + 4] & 0x0F) | ((lm[j + 4] & 0x0F) << 4))
        for j in range(8):
            dg[j] = d * f32(ls[j])
            dm[j] = dmin * f32(lm[j])
        requantize(lanes, xt, dg, dm, 32, 0, nmax, 0, L)
        qs = o + (48 if nmax == 31 else 16)
        for c in range(4):
            for i in range(32):
                lo = L[i * 8 + 2 * c]
                hi = L[i * 8 + 2 * c + 1]
                out[qs + c * 32 + i] = np.uint8((lo & 0x0F) | ((hi & 0x0F) << 4))
        if nmax == 31:  # qh: bit j of byte i is bit 4 of weight 32j + i
            for i in range(32):
                byte = 0
                for j in range(8):
                    byte |= ((L[i * 8 + j] >> 4) & 1) << j
                out[o + 16 + i] = np.uint8(byte)


@inline
def requantize(lanes, xt, dg, dm, n, lo, hi, offset, L):
    """Codes for the stored group scales: clamp(nearest_int((x + dm) / dg), lo, hi) + offset,
    per lane; lanes whose dg is 0 keep their codes."""
    g = lanes_of(lanes)
    d = load_f32(lanes, dg, 0)
    m = load_f32(lanes, dm, 0)
    keep = eq(d, f32(0.0))
    for i in range(n):
        xi = load_f32(lanes, xt, i * g)
        code = clamp_i32(nearest_int_lanes((xi + m) / d), lo, hi) + offset
        store_i32(L, i * g, where(keep, load_i32(lanes, L, i * g), code))


@njit(cache=True, error_model="numpy")
def quantize_row_q4_k(x, out):
    quantize_row_q45_k(x, out, 15, -1.0, 0.1, 20, 144)


@njit(cache=True, error_model="numpy")
def quantize_row_q5_k(x, out):
    quantize_row_q45_k(x, out, 31, -0.5, 0.1, 15, 176)


@njit(cache=True, error_model="numpy")
def quantize_row_q6_k(x, out):
    lanes = LANES_16
    xt = np.empty(256, np.float32)  # (16 weights, 16 groups)
    L = np.empty(256, np.int32)
    Laux = np.empty(256, np.int32)
    scales = np.empty(16, np.float32)
    sc = np.empty(16, np.int32)
    dg = np.empty(16, np.float32)
    no_min = np.zeros(16, np.float32)
    for b in range(x.size // 256):
        xb = x[b * 256 : b * 256 + 256]
        o = b * 210
        for i in range(16):
            for g in range(16):
                xt[i * 16 + g] = xb[g * 16 + i]
        store_f32(scales, 0, qx_lanes(lanes, xt, 16, 32, L, Laux))
        max_scale = first_absmax(scales)
        if abs(max_scale) < GROUP_MAX_EPS:  # ggml writes an all-zero block
            for k in range(210):
                out[o + k] = 0
            continue
        iscale = f32(-128.0) / max_scale
        for g in range(16):
            v = min(127, nearest_int(iscale * scales[g]))
            sc[g] = ((v + 128) & 0xFF) - 128  # C's int -> int8_t
        d_bits, d = fp16_store(f32(1.0) / iscale)
        for g in range(16):
            dg[g] = d * f32(sc[g])
        requantize(lanes, xt, dg, no_min, 16, -32, 31, 32, L)
        for g in range(16):  # codes back to weight order
            for i in range(16):
                Laux[g * 16 + i] = L[i * 16 + g]
        for h in range(2):  # ql: nibble k // 2 of byte 64h + 32(k % 2) + l; qh: crumb k of 32h + l
            for i in range(32):
                q0 = Laux[h * 128 + i]
                q1 = Laux[h * 128 + 32 + i]
                q2 = Laux[h * 128 + 64 + i]
                q3 = Laux[h * 128 + 96 + i]
                out[o + h * 64 + i] = np.uint8((q0 & 0x0F) | ((q2 & 0x0F) << 4))
                out[o + h * 64 + 32 + i] = np.uint8((q1 & 0x0F) | ((q3 & 0x0F) << 4))
                out[o + 128 + h * 32 + i] = np.uint8(
                    (q0 >> 4) | ((q1 >> 4) << 2) | ((q2 >> 4) << 4) | ((q3 >> 4) << 6)
                )
        for g in range(16):
            out[o + 192 + g] = np.uint8(sc[g] & 0xFF)
        put_u16(out, o + 208, d_bits)


# ------------------------------------------------------------------ rows in parallel

QUANTIZE_ROW = {
    T.Q4_0: quantize_row_q4_0,
    T.Q4_1: quantize_row_q4_1,
    T.Q5_0: quantize_row_q5_0,
    T.Q5_1: quantize_row_q5_1,
    T.Q8_0: quantize_row_q8_0,
    T.Q4_K: quantize_row_q4_k,
    T.Q5_K: quantize_row_q5_k,
    T.Q6_K: quantize_row_q6_k,
}
QUANTIZE_TYPES = tuple(GGMLType(t) for t in QUANTIZE_ROW)

quantize_row = static_dispatch(QUANTIZE_ROW, "quantize_row")


@njit(cache=True, parallel=True)
def quantize_rows(qtype, x, out):
    """out[r] = blocks of x[r]; x (n_rows, n_per_row) float32, out (n_rows, row_bytes) uint8."""
    for r in prange(x.shape[0]):
        quantize_row(qtype, x[r], out[r])


_quantize_rows = DirectCall(quantize_rows)


def quantize(x: np.ndarray, qtype: int | str | GGMLType) -> np.ndarray:
    """Rows of float32 (n_rows, n_per_row) -> (n_rows, row_bytes) uint8 GGUF blocks."""
    t = ggml_type(qtype)
    if t not in QUANTIZE_TYPES:
        names = ", ".join(q.name for q in QUANTIZE_TYPES)
        raise ValueError(f"no fast quantizer for {t.name}; available: {names}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (n_rows, n_per_row), got shape {x.shape}")
    info = TYPE_INFO[t]
    if x.shape[1] % info.block_size:
        raise ValueError(f"rows of {x.shape[1]} are not whole {t.name} blocks of {info.block_size}")
    out = np.empty((x.shape[0], x.shape[1] // info.block_size * info.type_size), np.uint8)
    token = static(int(t))
    _quantize_rows(token, token, x, out)
    return out
