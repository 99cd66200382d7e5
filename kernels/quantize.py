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
from .scalar import f16_to_f32, f32_to_bits, f32_to_f16
from .static import DirectCall, static, static_dispatch

f32 = np.float32
i32 = np.int32
MAGIC = f32(12582912.0)  # 1.5 * 2**23: nearest_int's rounding constant
GROUP_MAX_EPS = f32(1e-15)


@njit(inline="always")
def nearest_int(v):
    """ggml's nearest_int: round half to even through the float32 mantissa."""
    return i32(f32_to_bits(f32(v) + MAGIC) & np.uint32(0x007FFFFF)) - i32(0x00400000)


@njit(inline="always")
def fp16_store(v):
    """(uint16 bits, float32 value read back) of v stored as fp16 (NaN as sign | 0x7E00)."""
    if v != v:
        bits = np.uint16((f32_to_bits(v) >> np.uint32(16)) & np.uint32(0x8000)) | np.uint16(0x7E00)
    else:
        bits = f32_to_f16(v)
    return bits, f16_to_f32(bits)


@njit(inline="always")
def put_u16(out, o, bits):
    out[o] = np.uint8(bits & 0xFF)
    out[o + 1] = np.uint8(bits >> 8)


@njit(inline="always")
def safe_div(num, den):
    return f32(num / den) if den != 0 else f32(0.0)


@njit(inline="always")
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


@njit(inline="always")
def pack_nibbles_32(q, out, o):
    """Codes q (32,) -> 16 bytes at out[o]: weight j low nibble, weight j + 16 high."""
    for j in range(16):
        out[o + j] = np.uint8((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4))


@njit(inline="always")
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


@njit(inline="always")
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


@njit(inline="always")
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


# ------------------------------------------------------------------ k-quant searches


@njit(inline="always")
def make_qkx2_quants(x, weights, nmax, rmin, rdelta, nstep, L, Laux):
    """ggml make_qkx2_quants (use_mad false): x ~ scale * L - the_min, L in [0, nmax].
    Returns (scale, the_min); L (group,) int32 receives the codes."""
    n = x.size
    lo = x[0]
    hi = x[0]
    for v in x:
        if v < lo:
            lo = v
        if v > hi:
            hi = v
    if lo > 0:
        lo = f32(0.0)
    if hi == lo:
        for i in range(n):
            L[i] = 0
        return f32(0.0), -lo
    sum_w = weights[0]
    sum_x = weights[0] * x[0]
    for i in range(1, n):
        sum_w += weights[i]
        sum_x += weights[i] * x[i]
    mn = lo
    iscale = f32(nmax) / (hi - mn)
    scale = f32(1.0) / iscale
    best_error = f32(0.0)
    for i in range(n):
        L[i] = min(nmax, max(0, nearest_int(iscale * (x[i] - mn))))
        diff = scale * f32(L[i]) + mn - x[i]
        best_error += weights[i] * (diff * diff)
    for step in range(nstep + 1):
        iscale = (f32(rmin) + f32(rdelta) * f32(step) + f32(nmax)) / (hi - mn)
        sum_l = f32(0.0)
        sum_l2 = f32(0.0)
        sum_xl = f32(0.0)
        for i in range(n):
            li = min(nmax, max(0, nearest_int(iscale * (x[i] - mn))))
            Laux[i] = li
            lf = f32(li)
            sum_l += weights[i] * lf
            sum_l2 += weights[i] * lf * lf
            sum_xl += weights[i] * lf * x[i]
        det = sum_w * sum_l2 - sum_l * sum_l
        this_scale = safe_div(sum_w * sum_xl - sum_x * sum_l, det)
        this_min = safe_div(sum_l2 * sum_x - sum_l * sum_xl, det)
        if this_min > 0:
            this_scale = safe_div(sum_xl, sum_l2)
            this_min = f32(0.0)
        cur_error = f32(0.0)
        for i in range(n):
            diff = this_scale * f32(Laux[i]) + this_min - x[i]
            cur_error += weights[i] * (diff * diff)
        if det > 0 and cur_error < best_error:
            for i in range(n):
                L[i] = Laux[i]
            best_error = cur_error
            scale = this_scale
            mn = this_min
    return scale, -mn


@njit(inline="always")
def make_qx_quants(x, nmax, L, Laux):
    """ggml make_qx_quants (rmse_type 1, weights x**2): codes in [-nmax, nmax - 1] stored
    + nmax in L. Returns the scale (0 for an all-zero group)."""
    n = x.size
    mx = first_absmax(x)
    if abs(mx) < GROUP_MAX_EPS:
        for i in range(n):
            L[i] = 0
        return f32(0.0)
    iscale = f32(-nmax) / mx
    sumlx = f32(0.0)
    suml2 = f32(0.0)
    for i in range(n):
        li = min(nmax - 1, max(-nmax, nearest_int(iscale * x[i])))
        L[i] = li
        w = x[i] * x[i]
        sumlx += w * x[i] * f32(li)
        suml2 += w * f32(li) * f32(li)
    scale = safe_div(sumlx, suml2)
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = -(f32(nmax) + f32(0.1) * f32(step)) / mx
        sumlx = f32(0.0)
        suml2 = f32(0.0)
        for i in range(n):
            li = min(nmax - 1, max(-nmax, nearest_int(iscale * x[i])))
            Laux[i] = li
            w = x[i] * x[i]
            sumlx += w * x[i] * f32(li)
            suml2 += w * f32(li) * f32(li)
        if suml2 > 0 and sumlx * sumlx > best * suml2:
            for i in range(n):
                L[i] = Laux[i]
            scale = safe_div(sumlx, suml2)
            best = scale * sumlx
    for i in range(n):
        L[i] += nmax
    return scale


# ------------------------------------------------------------------ k-quant super-blocks


@njit(inline="always")
def quantize_row_q45_k(x, out, nmax, rmin, rdelta, nstep, block_bytes):
    """Q4_K (nmax 15) / Q5_K (31): 8 groups of 32 with 6-bit scales and mins."""
    L = np.empty(256, np.int32)
    Laux = np.empty(32, np.int32)
    weights = np.empty(32, np.float32)
    scales = np.empty(8, np.float32)
    mins = np.empty(8, np.float32)
    ls = np.empty(8, np.int32)
    lm = np.empty(8, np.int32)
    for b in range(x.size // 256):
        xb = x[b * 256 : b * 256 + 256]
        o = b * block_bytes
        for j in range(8):
            xg = xb[j * 32 : j * 32 + 32]
            sum_x2 = f32(0.0)
            for v in xg:
                sum_x2 += v * v
            av_x = np.sqrt(sum_x2 / f32(32.0))
            for i in range(32):
                weights[i] = av_x + abs(xg[i])
            scales[j], mins[j] = make_qkx2_quants(xg, weights, nmax, rmin, rdelta, nstep,
                                                  L[j * 32 : j * 32 + 32], Laux)  # fmt: skip
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
        for j in range(8):  # codes for the stored scales
            dg = d * f32(ls[j])
            if dg == 0:
                continue
            dm = dmin * f32(lm[j])
            for i in range(32):
                L[j * 32 + i] = min(nmax, max(0, nearest_int((xb[j * 32 + i] + dm) / dg)))
        qs = o + (48 if nmax == 31 else 16)
        for c in range(4):
            for i in range(32):
                lo = L[c * 64 + i]
                hi = L[c * 64 + 32 + i]
                out[qs + c * 32 + i] = np.uint8((lo & 0x0F) | ((hi & 0x0F) << 4))
        if nmax == 31:  # qh: bit j of byte i is bit 4 of weight 32j + i
            for i in range(32):
                byte = 0
                for j in range(8):
                    byte |= ((L[j * 32 + i] >> 4) & 1) << j
                out[o + 16 + i] = np.uint8(byte)


@njit(cache=True)
def quantize_row_q4_k(x, out):
    quantize_row_q45_k(x, out, 15, -1.0, 0.1, 20, 144)


@njit(cache=True)
def quantize_row_q5_k(x, out):
    quantize_row_q45_k(x, out, 31, -0.5, 0.1, 15, 176)


@njit(cache=True)
def quantize_row_q6_k(x, out):
    L = np.empty(256, np.int32)
    Laux = np.empty(16, np.int32)
    scales = np.empty(16, np.float32)
    sc = np.empty(16, np.int32)
    for b in range(x.size // 256):
        xb = x[b * 256 : b * 256 + 256]
        o = b * 210
        for g in range(16):
            scales[g] = make_qx_quants(xb[g * 16 : g * 16 + 16], 32, L[g * 16 : g * 16 + 16], Laux)
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
            dg = d * f32(sc[g])
            if dg == 0:
                continue
            for i in range(16):
                L[g * 16 + i] = min(31, max(-32, nearest_int(xb[g * 16 + i] / dg))) + 32
        for h in range(2):  # ql: nibble k // 2 of byte 64h + 32(k % 2) + l; qh: crumb k of 32h + l
            for i in range(32):
                q0 = L[h * 128 + i]
                q1 = L[h * 128 + 32 + i]
                q2 = L[h * 128 + 64 + i]
                q3 = L[h * 128 + 96 + i]
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
