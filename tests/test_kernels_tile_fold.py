"""The AMX tile rows of the k-quants but Q4_K multiply each group's scale into its codes when
a tile row is unpacked (tile_amx.fold_scales): every code a super-block can hold, times
every scale, must give the bytes the tile dots read, and the minimums their int16 pairs."""

import numpy as np
import pytest
from kernel_bounds import ISAS
from numba import njit

from llamba.kernels.cpu_features import isa_token
from llamba.kernels.tile_amx import DIGITS, NEGATED, PLAIN, SPLIT, fold_scales


def runner(fold):
    """fold (an @inline function) callable from Python."""

    @njit
    def run(isa, codes, groups):
        fold(isa, codes, groups)

    return run


fold_q2_k, fold_q3_k = runner(fold_scales(PLAIN, 4)), runner(fold_scales(NEGATED, 4))
fold_q5_k, fold_q6_k = runner(fold_scales(SPLIT, 8)), runner(fold_scales(DIGITS, 4))


def unpacked_super_block(code_values: int, scales: np.ndarray, mins: np.ndarray, offset=0):
    """One super-block as tile_dots' k-quant unpacker lays it out: code byte j of word k
    (k = 4 g + i, group g) of row n at byte 4 (16 k + n) + j, cycling through every code so
    each (group, row) holds them all; scale and minimum of group g, row n at 16 g + n and
    256 + 16 g + n."""
    k, n, j = np.meshgrid(np.arange(64), np.arange(16), np.arange(4), indexing="ij")
    code_bytes = ((4 * k + j + n + offset) % code_values).astype(np.uint8)  # (word, row, byte)
    groups = np.concatenate([scales.ravel(), mins.ravel()]).astype(np.int32)
    return code_bytes, code_bytes.reshape(-1).view(np.int32).copy(), groups


def expected_pairs(mins: np.ndarray) -> np.ndarray:
    """(8, 16): groups 2j and 2j + 1's minimums as the low and high int16 of a word."""
    low = mins[0::2].astype(np.int64) & 0xFFFF
    return (low | (mins[1::2].astype(np.int64) << 16)).astype(np.int64).astype(np.int32)


@pytest.mark.parametrize("isa", ISAS)
def test_q3_k_codes_take_their_negated_signed_scale(isa):
    """Q3_K: code u (stored + 4) and scale s in -32 .. 31 give the byte -s (u - 4), which
    fits a signed byte even at u = 0, s = -32 (where s (u - 4) is 128)."""
    scales = (np.arange(256).reshape(16, 16) % 64 - 32).astype(np.int32)  # every scale
    mins = scales << 2  # Q3_K's "minimums": the code offset times the scale
    code_bytes, codes, groups = unpacked_super_block(8, scales, mins)
    fold_q3_k(isa_token(isa), codes, groups)
    u = code_bytes.astype(np.int64)
    s = scales[np.arange(64) // 4][:, :, None]  # (word, row, 1): the word's group's scale
    want = (-s * (u - 4)).astype(np.int8)
    np.testing.assert_array_equal(codes.view(np.int8).reshape(64, 16, 4), want)
    np.testing.assert_array_equal(groups[:128].reshape(8, 16), expected_pairs(mins))


@pytest.mark.parametrize("isa", ISAS)
def test_q2_k_codes_take_their_scale(isa):
    """Q2_K: code u in 0 .. 3 and scale s in 0 .. 15 give the byte s u (at most 45)."""
    scales = (np.arange(256).reshape(16, 16) % 16).astype(np.int32)
    mins = (np.arange(256).reshape(16, 16) * 7 % 16).astype(np.int32)
    code_bytes, codes, groups = unpacked_super_block(4, scales, mins)
    fold_q2_k(isa_token(isa), codes, groups)
    s = scales[np.arange(64) // 4][:, :, None]
    want = (s * code_bytes).astype(np.int8)
    np.testing.assert_array_equal(codes.view(np.int8).reshape(64, 16, 4), want)
    np.testing.assert_array_equal(groups[:128].reshape(8, 16), expected_pairs(mins))


@pytest.mark.parametrize("isa", ISAS)
def test_q5_k_codes_take_both_halves_of_their_scale(isa):
    """Q5_K: code u in 0 .. 31 and 6-bit scale s give u (s % 8) in the first 1024 words and
    u (s // 8) in the next (each at most 217); a 32-weight group's minimum fills both
    halves of its pair."""
    groups_8 = (np.arange(128).reshape(8, 16) % 64).astype(np.int32)  # every scale
    scales = np.zeros((16, 16), np.int32)
    scales[:8] = groups_8  # 8 groups of 32 weights: the unpacker's rows 8 .. 15 are unused
    mins = np.zeros((16, 16), np.int32)
    mins[:8] = (np.arange(128).reshape(8, 16) * 5 % 64).astype(np.int32)
    code_bytes, codes, groups = unpacked_super_block(32, scales, mins)
    codes = np.concatenate([codes, np.zeros(1024, np.int32)])  # room for the high halves
    fold_q5_k(isa_token(isa), codes, groups)
    s = groups_8[np.arange(64) // 8][:, :, None]
    low, high = codes[:1024].view(np.uint8), codes[1024:].view(np.uint8)
    np.testing.assert_array_equal(low.reshape(64, 16, 4), (s % 8) * code_bytes)
    np.testing.assert_array_equal(high.reshape(64, 16, 4), (s // 8) * code_bytes)
    pairs = (mins[:8].astype(np.int64) & 0xFFFF) | (mins[:8].astype(np.int64) << 16)
    np.testing.assert_array_equal(groups[:128].reshape(8, 16), pairs.astype(np.int32))


@pytest.mark.parametrize("isa", ISAS)
def test_q6_k_codes_take_their_scale_in_three_digits(isa):
    """Q6_K: code u (stored + 32) and int8 scale s give three signed bytes b0, b1, b2 with
    b0 + 8 b1 + 64 b2 = s (u - 32), for every code and scale (four super-blocks, codes
    shifted by 16 each, so that every group sees every code)."""
    scales = (np.arange(256).reshape(16, 16) - 128).astype(np.int32)  # every int8 scale
    s = scales[np.arange(64) // 4][:, :, None].astype(np.int64)
    for offset in (0, 16, 32, 48):
        code_bytes, codes, groups = unpacked_super_block(64, scales, scales << 5, offset)
        codes = np.concatenate([codes, np.zeros(2048, np.int32)])  # room for two more planes
        fold_q6_k(isa_token(isa), codes, groups)
        planes = codes.view(np.int8).reshape(3, 64, 16, 4).astype(np.int64)
        got = planes[0] + 8 * planes[1] + 64 * planes[2]
        np.testing.assert_array_equal(got, s * (code_bytes.astype(np.int64) - 32))
