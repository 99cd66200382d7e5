"""ggml's per-group scale searches for the k-quants (reference path, no importance matrix).

Each works on many groups at once: x is (n_groups, group_size) float32. Where ggml loops over
candidate scales or coordinate-descent steps, we loop too (a handful of iterations), but over
all groups together; every sum is the same left-to-right float32 sum ggml does.
"""

from __future__ import annotations

import numpy as np

from .base import (
    F32,
    GROUP_MAX_EPS,
    first_absmax,
    first_max,
    first_min,
    nearest_int,
    safe_div,
    seq_sum,
)


def make_qx_quants(x: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric scale search (ggml make_qx_quants, rmse_type 1, weights x**2).

    Codes l in [-nmax, nmax-1]; tries iscale = -(nmax + 0.1 * is) / max for is in -9..9 and
    keeps the best weighted least-squares fit. Returns scale (n,) and L = l + nmax (n, k)
    int32; all-zero groups give scale 0 and L 0.
    """
    mx = first_absmax(x)
    zero = np.abs(mx) < GROUP_MAX_EPS
    mx_safe = np.where(zero, F32(1.0), mx)[:, None]
    w = x * x

    def fit(iscale):
        l = np.clip(nearest_int(iscale * x), -nmax, nmax - 1)
        lf = l.astype(F32)
        return l, seq_sum(w * x * lf), seq_sum(w * lf * lf)

    l, sumlx, suml2 = fit(F32(-nmax) / mx_safe)
    best_l = l
    scale = safe_div(sumlx, suml2)
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = -(F32(nmax) + F32(0.1) * F32(step)) / mx_safe
        l, sumlx, suml2 = fit(iscale)
        better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        best_l = np.where(better[:, None], l, best_l)
        scale = np.where(better, safe_div(sumlx, suml2), scale)
        best = np.where(better, scale * sumlx, best)
    scale = np.where(zero, F32(0.0), scale)
    return scale, np.where(zero[:, None], 0, best_l + nmax)


def make_q3_quants(x: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric codes refined by coordinate descent (ggml make_q3_quants, do_rmse true).

    Starts from l = round(-nmax * x / max), then up to 5 sweeps: each weight in turn moves to
    the code that is best for the current fit of the others, if that improves the weighted
    (x**2) least-squares error. A sweep without changes stops ggml's loop; here such groups
    simply repeat a sweep that changes nothing. Returns scale (n,) and L = l + nmax (n, k).
    """
    k = x.shape[1]
    mx = first_absmax(x)
    zero = np.abs(mx) < GROUP_MAX_EPS
    iscale = (F32(-nmax) / np.where(zero, F32(1.0), mx))[:, None]
    L = np.clip(nearest_int(iscale * x), -nmax, nmax - 1)
    w = x * x
    wx = w * x
    Lf = L.astype(F32)
    sumlx = seq_sum(wx * Lf)
    suml2 = seq_sum(w * Lf * Lf)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _sweep in range(5):
            for i in range(k):
                wi, xi, wxi = w[:, i], x[:, i], wx[:, i]
                li = L[:, i].astype(F32)
                # the sums without weight i, then with weight i at its best code
                slx_rest = sumlx - wxi * li
                sl2_rest = suml2 - wi * li * li
                new_l = np.clip(nearest_int(xi * sl2_rest / slx_rest), -nmax, nmax - 1)
                nf = new_l.astype(F32)
                slx = slx_rest + wxi * nf
                sl2 = sl2_rest + wi * nf * nf
                take = (
                    (slx_rest > 0)
                    & (new_l != L[:, i])
                    & (sl2 > 0)
                    & (slx * slx * suml2 > sumlx * sumlx * sl2)
                )
                L[:, i] = np.where(take, new_l, L[:, i])
                sumlx = np.where(take, slx, sumlx)
                suml2 = np.where(take, sl2, suml2)
    scale = np.where(zero | ~(suml2 > 0), F32(0.0), safe_div(sumlx, suml2))
    return scale, np.where(zero[:, None], 0, L + nmax)


def make_qkx2_quants(
    x: np.ndarray,
    weights: np.ndarray,
    nmax: int,
    rmin: float,
    rdelta: float,
    nstep: int,
    use_mad: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric scale + min search (ggml make_qkx2_quants): x ~ scale * L - the_min.

    Codes L in [0, nmax]; min is clamped to <= 0. Tries iscale = (rmin + rdelta * is + nmax) /
    (max - min) for is in 0..nstep, solves weighted least squares for scale and min at each,
    and keeps the lowest weighted error (|diff| if use_mad, else diff**2).
    Returns scale (n,), the_min (n,) (= -min, >= 0) and L (n, k) int32.
    """
    lo = first_min(x)
    lo = np.where(lo > 0, F32(0.0), lo)  # `if (min > 0) min = 0`, keeping -0.0
    hi = first_max(x)
    flat = hi == lo
    hi = np.where(flat, F32(1.0), hi)[:, None]  # flat groups: any finite span, result discarded
    sum_w = np.cumsum(weights, axis=-1, dtype=F32)[:, -1]  # ggml starts from weights[0]
    sum_x = np.cumsum(weights * x, axis=-1, dtype=F32)[:, -1]

    def error(scale, mn, l):
        diff = scale[:, None] * l.astype(F32) + mn[:, None] - x
        return seq_sum(weights * (np.abs(diff) if use_mad else diff * diff))

    # ggml's `min` moves to each better fit, and later candidates are measured from it
    mn = np.where(flat, F32(0.0), lo)
    iscale = F32(nmax) / (hi[:, 0] - mn)
    L = np.clip(nearest_int(iscale[:, None] * (x - mn[:, None])), 0, nmax)
    scale = F32(1.0) / iscale
    best_error = error(scale, mn, L)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for step in range(nstep + 1):
            iscale = (F32(rmin) + F32(rdelta) * F32(step) + F32(nmax)) / (hi[:, 0] - mn)
            l = np.clip(nearest_int(iscale[:, None] * (x - mn[:, None])), 0, nmax)
            lf = l.astype(F32)
            sum_l = seq_sum(weights * lf)
            sum_l2 = seq_sum(weights * lf * lf)
            sum_xl = seq_sum(weights * lf * x)
            det = sum_w * sum_l2 - sum_l * sum_l
            this_scale = safe_div(sum_w * sum_xl - sum_x * sum_l, det)
            this_min = safe_div(sum_l2 * sum_x - sum_l * sum_xl, det)
            clamp = this_min > 0
            this_scale = np.where(clamp, safe_div(sum_xl, sum_l2), this_scale)
            this_min = np.where(clamp, F32(0.0), this_min)
            cur_error = error(this_scale, this_min, l)
            better = (det > 0) & (cur_error < best_error)
            L = np.where(better[:, None], l, L)
            best_error = np.where(better, cur_error, best_error)
            scale = np.where(better, this_scale, scale)
            mn = np.where(better, this_min, mn)
    scale = np.where(flat, F32(0.0), scale)
    return scale, np.where(flat, -lo, -mn), np.where(flat[:, None], 0, L)
