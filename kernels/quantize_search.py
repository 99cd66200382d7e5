"""ggml's per-group scale searches for the k-quants, run on the groups of a super-block at once.

Part of the fast quantizer (quantize.py); the arithmetic is the numpy reference's
(llamba.formats.quants.search) operation for operation, so the codes come out identical.
"""

from __future__ import annotations

import numpy as np

from .inline import inline
from .simd import (
    PORTABLE,
    clamp_i32,
    eq,
    float_bits,
    gt,
    isa_variant,
    load_f32,
    load_i32,
    lt,
    splat_f32,
    store_i32,
    to_f32,
    vabs,
    where,
    zeros_f32,
    zeros_i32,
)
from .simd import lanes as lanes_of

f32 = np.float32
MAGIC = f32(12582912.0)  # 1.5 * 2**23: nearest_int's rounding constant
GROUP_MAX_EPS = f32(1e-15)

# ------------------------------------------------------------------ k-quant searches
# ggml searches each group's scale on its own, in long chains of dependent float32 sums. Here
# the groups of a super-block run side by side, one per SIMD lane (8 groups of 32 for
# Q4_K/Q5_K, 16 of 16 for Q6_K): every lane does exactly its group's sequence of operations,
# so the bytes match, while the lanes fill the vector units. Data is transposed to
# (weights, groups): xt[i * G + g] is weight i of group g.

LANES_8 = isa_variant(PORTABLE, 8)
LANES_16 = isa_variant(PORTABLE, 16)


@inline
def nearest_int_lanes(v):
    """nearest_int per lane (I32xN) of F32xN."""
    return (float_bits(v + MAGIC) & 0x007FFFFF) - 0x00400000


@inline
def qkx2_lanes(lanes, xt, wt, n, nmax, rmin, rdelta, nstep, L, Laux):
    """make_qkx2_quants (use_mad false) for G groups of n in lanes: x ~ scale * L - the_min,
    L in [0, nmax] written to L (n * G int32). Returns (scale, the_min) F32xG."""
    g = lanes_of(lanes)
    zero = zeros_f32(lanes)
    lo = load_f32(lanes, xt, 0)
    hi = lo
    sum_w = load_f32(lanes, wt, 0)
    sum_x = sum_w * lo
    for i in range(1, n):
        xi = load_f32(lanes, xt, i * g)
        wi = load_f32(lanes, wt, i * g)
        lo = where(lt(xi, lo), xi, lo)  # first minimum and maximum, as C loops keep them
        hi = where(gt(xi, hi), xi, hi)
        sum_w = sum_w + wi
        sum_x = sum_x + wi * xi
    lo = where(gt(lo, f32(0.0)), zero, lo)
    flat = eq(hi, lo)  # the result of a flat group is discarded: keep its arithmetic finite
    mn = where(flat, zero, lo)
    span = where(flat, splat_f32(lanes, f32(1.0)), hi)
    iscale = splat_f32(lanes, f32(nmax)) / (span - mn)
    scale = splat_f32(lanes, f32(1.0)) / iscale
    best = zero
    for i in range(n):
        xi = load_f32(lanes, xt, i * g)
        l = clamp_i32(nearest_int_lanes(iscale * (xi - mn)), 0, nmax)
        store_i32(L, i * g, l)
        diff = scale * to_f32(l) + mn - xi
        best = best + load_f32(lanes, wt, i * g) * (diff * diff)
    for step in range(nstep + 1):
        # candidates are measured from the min of the best fit so far, as in ggml
        iscale = splat_f32(lanes, f32(rmin) + f32(rdelta) * f32(step) + f32(nmax)) / (span - mn)
        sum_l = zero
        sum_l2 = zero
        sum_xl = zero
        for i in range(n):
            xi = load_f32(lanes, xt, i * g)
            wi = load_f32(lanes, wt, i * g)
            l = clamp_i32(nearest_int_lanes(iscale * (xi - mn)), 0, nmax)
            store_i32(Laux, i * g, l)
            lf = to_f32(l)
            sum_l = sum_l + wi * lf
            sum_l2 = sum_l2 + wi * lf * lf
            sum_xl = sum_xl + wi * lf * xi
        det = sum_w * sum_l2 - sum_l * sum_l
        singular = eq(det, f32(0.0))
        this_scale = where(singular, zero, (sum_w * sum_xl - sum_x * sum_l) / det)
        this_min = where(singular, zero, (sum_l2 * sum_x - sum_l * sum_xl) / det)
        clamp = gt(this_min, f32(0.0))
        this_scale = where(clamp, where(eq(sum_l2, f32(0.0)), zero, sum_xl / sum_l2), this_scale)
        this_min = where(clamp, zero, this_min)
        cur = zero
        for i in range(n):
            xi = load_f32(lanes, xt, i * g)
            diff = this_scale * to_f32(load_i32(lanes, Laux, i * g)) + this_min - xi
            cur = cur + load_f32(lanes, wt, i * g) * (diff * diff)
        better = gt(det, f32(0.0)) & lt(cur, best)
        best = where(better, cur, best)
        scale = where(better, this_scale, scale)
        mn = where(better, this_min, mn)
        for i in range(n):
            store_i32(
                L, i * g, where(better, load_i32(lanes, Laux, i * g), load_i32(lanes, L, i * g))
            )
    for i in range(n):
        store_i32(L, i * g, where(flat, zeros_i32(lanes), load_i32(lanes, L, i * g)))
    minus_one = f32(-1.0)  # exact negation, signed zeros included
    return where(flat, zero, scale), where(flat, lo * minus_one, mn * minus_one)


@inline
def qx_lanes(lanes, xt, n, nmax, L, Laux):
    """make_qx_quants (rmse_type 1, weights x**2) for G groups of n in lanes: codes in
    [-nmax, nmax - 1] written + nmax to L (0 for all-zero groups). Returns the scales F32xG."""
    g = lanes_of(lanes)
    zero = zeros_f32(lanes)
    amax = zero
    mx = zero
    for i in range(n):  # the signed value of largest |x|, first on ties
        xi = load_f32(lanes, xt, i * g)
        larger = gt(vabs(xi), amax)
        amax = where(larger, vabs(xi), amax)
        mx = where(larger, xi, mx)
    is_zero = lt(vabs(mx), GROUP_MAX_EPS)
    mx = where(is_zero, splat_f32(lanes, f32(1.0)), mx)
    scale = zero
    best = zero
    for step in range(-10, 10):  # -10 is the first fit, from iscale = -nmax / max
        if step == 0:
            continue
        if step == -10:
            iscale = splat_f32(lanes, f32(-nmax)) / mx
        else:
            iscale = splat_f32(lanes, -(f32(nmax) + f32(0.1) * f32(step))) / mx
        sumlx = zero
        suml2 = zero
        for i in range(n):
            xi = load_f32(lanes, xt, i * g)
            l = clamp_i32(nearest_int_lanes(iscale * xi), -nmax, nmax - 1)
            store_i32(Laux, i * g, l)
            lf = to_f32(l)
            w = xi * xi
            sumlx = sumlx + w * xi * lf
            suml2 = suml2 + w * lf * lf
        this_scale = where(eq(suml2, f32(0.0)), zero, sumlx / suml2)
        if step == -10:
            better = eq(suml2, suml2)  # all lanes take the first fit
        else:
            better = gt(suml2, f32(0.0)) & gt(sumlx * sumlx, best * suml2)
        scale = where(better, this_scale, scale)
        best = where(better, scale * sumlx, best)
        for i in range(n):
            store_i32(
                L, i * g, where(better, load_i32(lanes, Laux, i * g), load_i32(lanes, L, i * g))
            )
    for i in range(n):
        code = load_i32(lanes, L, i * g) + nmax
        store_i32(L, i * g, where(is_zero, zeros_i32(lanes), code))
    return where(is_zero, zero, scale)
