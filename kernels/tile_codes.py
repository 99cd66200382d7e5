"""What each weight type stores, read from its tiles: byte codes, group scales, block scales.

The type-specific part of the kernels (tile_dots.py holds the shared shape). For the rows
lane0 .. lane0 + N - 1 of tile block tb (repack.Tiles, flat arrays):
    codes(isa, qs, tb, lane0, g, i)  I32xN: the unsigned codes of the 4 weights at word i of
                                     scale group g (weights 4k .. 4k + 3 of the block with
                                     k = words_per_group * g + i), one byte each (a signed
                                     byte for Q8_0); 32-weight blocks are 2 groups of 4 words
                                     (the low and the high nibbles of the same 4 words)
    group(isa, sc, tb, lane0, g)     k-quants: (scale, min) I32xN of scale group g (32 weights
                                     for Q4_K/Q5_K, else 16), such that the group's weights
                                     are d*scale*code - dm*min
    block_scales(isa, dh, tb, lane0) (d, dm) F32xN: the block's float scales; dm is the min
                                     scale (k-quants), m (Q4_1/Q5_1), or unused
Offsets such as Q6_K's -32 become mins (min = 32 * scale, dm = d), so every k-quant is
d * scale * code - dm * min per group, and every 32-weight type d * (code - offset) + m.
"""

from __future__ import annotations

import numpy as np

from . import type_ids as T
from .inline import inline
from .simd import load_f16, load_i32, sext_byte, zeros_f32

LOW4 = np.int32(0x0F0F0F0F)
BIT0 = np.int32(0x01010101)
LOW2 = np.int32(0x03030303)
LOW3 = np.int32(0x07070707)
LOW6 = np.int32(0x3F3F3F3F)


def int16_words(code_bits: int) -> int:
    """How many code words (4 unsigned codes below 2**code_bits each) have a dot with
    activations in -128..127 that always fits int16: partial sums that can take their
    scale with one vpdpwssd (simd_dot.dot_i16)."""
    return 32767 // (4 * ((1 << code_bits) - 1) * 128)


@inline
def word(isa, arr, tb, n_words, i, lane0):
    """Word i of tile block tb (n_words words per tile block), rows lane0.. (I32xN)."""
    return load_i32(isa, arr, (tb * n_words + i) * 16 + lane0)


@inline
def half(isa, dh, tb, n_halves, i, lane0):
    """fp16 value i of tile block tb (n_halves per tile block), rows lane0.. (F32xN)."""
    return load_f16(isa, dh, (tb * n_halves + i) * 16 + lane0)


@inline
def move_bits(v, src, dst, mask):
    """Bits at position src of every byte moved to position dst, keeping `mask` (at dst);
    branch-free, as src is often a loop variable."""
    return ((v >> src) << dst) & mask


# ------------------------------------------------------------------ 32-weight blocks
# quant words: 4 nibble words (low nibbles weights 4v.., high nibbles 16 + 4v..) [+ the
# shuffled high-bit word, whose bit 2v + h of byte j extends the nibble of word v, half h]


@inline
def nibble_codes(isa, qs, tb, lane0, h, v, n_words, has_high_bit):
    """Weights 16h + 4v ..: nibble half h of word v (+ bit 2v + h of the high-bit word)."""
    c = (word(isa, qs, tb, n_words, v, lane0) >> (4 * h)) & LOW4
    if has_high_bit:
        c = c | move_bits(word(isa, qs, tb, n_words, 4, lane0), 2 * v + h, 4, BIT0 << 4)
    return c


@inline
def codes_q4_0(isa, qs, tb, lane0, h, v):
    return nibble_codes(isa, qs, tb, lane0, h, v, 4, False)


@inline
def codes_q5_0(isa, qs, tb, lane0, h, v):
    return nibble_codes(isa, qs, tb, lane0, h, v, 5, True)


@inline
def codes_q8_0(isa, qs, tb, lane0, h, v):
    return word(isa, qs, tb, 8, 4 * h + v, lane0)


@inline
def scales_d(isa, dh, tb, lane0):
    return half(isa, dh, tb, 1, 0, lane0), zeros_f32(isa)


@inline
def scales_d_m(isa, dh, tb, lane0):
    return half(isa, dh, tb, 2, 0, lane0), half(isa, dh, tb, 2, 1, lane0)


# ------------------------------------------------------------------ 256-weight super-blocks


@inline
def codes_q4_k(isa, qs, tb, lane0, j, i):
    # sub-block j (32 weights): qs bytes 32c .. hold sub-blocks 2c (low nibbles), 2c + 1 (high)
    return (word(isa, qs, tb, 32, (j // 2) * 8 + i, lane0) >> (4 * (j % 2))) & LOW4


@inline
def codes_q5_k(isa, qs, tb, lane0, j, i):
    # 8 qh words first: bit j of byte i' is the high bit of weight 32j + i'
    low = (word(isa, qs, tb, 40, 8 + (j // 2) * 8 + i, lane0) >> (4 * (j % 2))) & LOW4
    return low | move_bits(word(isa, qs, tb, 40, i, lane0), j, 4, BIT0 << 4)


@inline
def codes_q6_k(isa, qs, tb, lane0, g, i):
    # whole 6-bit codes (stored + 32), group g's 4 code words in words 3g .. 3g + 2
    # (repack.to_quads): the first three in bits 0-5, the fourth in bits 6-7 of all three
    if i < 3:
        return word(isa, qs, tb, 48, 3 * g + i, lane0) & LOW6
    a, b = word(isa, qs, tb, 48, 3 * g, lane0), word(isa, qs, tb, 48, 3 * g + 1, lane0)
    c = word(isa, qs, tb, 48, 3 * g + 2, lane0)
    return move_bits(a, 6, 0, LOW2) | move_bits(b, 6, 2, LOW2 << 2) | move_bits(c, 6, 4, LOW2 << 4)


@inline
def codes_q2_k(isa, qs, tb, lane0, g, i):
    # group g = 8n + 2s + h: bit pair s of qs word 8n + 4h + i
    n, s, h = g // 8, (g // 2) % 4, g % 2
    return (word(isa, qs, tb, 16, n * 8 + 4 * h + i, lane0) >> (2 * s)) & LOW2


@inline
def codes_q3_k(isa, qs, tb, lane0, g, i):
    # whole 3-bit codes (stored + 4), code word c = 4g + i of 64 in words 3t .. 3t + 2 with
    # t = c // 8 (repack.q3_k_triples): the first six whole, the last two split
    t, pos = (4 * g + i) // 8, (4 * g + i) % 8
    if pos < 6:
        return (word(isa, qs, tb, 24, 3 * t + pos // 2, lane0) >> (3 * (pos % 2))) & LOW3
    low = (word(isa, qs, tb, 24, 3 * t + pos - 6, lane0) >> 6) & LOW2
    return low | move_bits(word(isa, qs, tb, 24, 3 * t + 2, lane0), pos, 2, BIT0 << 2)


@inline
def group_q45_k(isa, sc, tb, lane0, j):
    # 12 packed bytes: 6-bit scale and min per 32-weight sub-block j
    s0, s1, s2 = word(isa, sc, tb, 3, 0, lane0), word(isa, sc, tb, 3, 1, lane0), word(isa, sc, tb, 3, 2, lane0)  # fmt: skip
    if j < 4:
        return (s0 >> (8 * j)) & 63, (s1 >> (8 * j)) & 63
    sh = 8 * (j - 4)
    scale = ((s2 >> sh) & 0xF) | (((s0 >> (sh + 6)) & 3) << 4)
    mn = ((s2 >> (sh + 4)) & 0xF) | (((s1 >> (sh + 6)) & 3) << 4)
    return scale, mn


@inline
def group_q6_k(isa, sc, tb, lane0, g):
    scale = sext_byte(word(isa, sc, tb, 4, g // 4, lane0), g % 4)  # 16 int8 scales
    return scale, scale << 5  # codes are stored + 32


@inline
def group_q2_k(isa, sc, tb, lane0, g):
    packed = word(isa, sc, tb, 4, g // 4, lane0) >> (8 * (g % 4))  # scale | min << 4
    return packed & 0xF, (packed >> 4) & 0xF


@inline
def group_q3_k(isa, sc, tb, lane0, g):
    # 12 packed bytes: the low 4 bits of scale g are the low nibble of byte g % 4 of word
    # (g // 4) % 2 for groups 0-7, the high nibble for 8-15; the high 2 bits are in word 2.
    # Branch-free, as g is a loop variable
    s0, s1, s2 = word(isa, sc, tb, 3, 0, lane0), word(isa, sc, tb, 3, 1, lane0), word(isa, sc, tb, 3, 2, lane0)  # fmt: skip
    low_word = s1 if (g // 4) % 2 else s0
    lo = low_word >> (8 * (g % 4) + 4 * (g // 8))
    hi = (s2 >> (8 * (g % 4) + 2 * (g // 4))) & 3
    scale = ((lo & 0xF) | (hi << 4)) - 32
    return scale, scale << 2  # codes are stored + 4


@inline
def scales_d_only(isa, dh, tb, lane0):
    d = half(isa, dh, tb, 1, 0, lane0)
    return d, d  # offsets are mins scaled by d


# ------------------------------------------------------------------ per-type tables

# type -> (codes, block_scales, offset subtracted from codes, has m, signed codes,
#          products summed in int16 before a flush)
LEGACY_PARTS = {
    T.Q4_0: (codes_q4_0, scales_d, 8, False, False, 8),
    T.Q4_1: (codes_q4_0, scales_d_m, 0, True, False, 8),
    T.Q5_0: (codes_q5_0, scales_d, 16, False, False, 4),
    T.Q5_1: (codes_q5_0, scales_d_m, 0, True, False, 4),
    T.Q8_0: (codes_q8_0, scales_d, 0, False, True, 1),
}

# type -> (codes, group, block_scales, words (of 4 weights) per scale group,
#          products summed in int16 before a flush)
KQUANT_PARTS = {
    T.Q2_K: (codes_q2_k, group_q2_k, scales_d_m, 4, 4),
    T.Q3_K: (codes_q3_k, group_q3_k, scales_d_only, 4, 4),
    T.Q4_K: (codes_q4_k, group_q45_k, scales_d_m, 8, 8),
    T.Q5_K: (codes_q5_k, group_q45_k, scales_d_m, 8, 4),
    T.Q6_K: (codes_q6_k, group_q6_k, scales_d_only, 4, 2),
}
