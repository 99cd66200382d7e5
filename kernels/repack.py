"""Weights repacked at load into 16-row tiles: lanes = rows, quants apart from scales.

For every group of 16 rows and every block, each 4-byte word of the block's quant bytes is
stored as 16 consecutive int32 (one per row), so a 64-byte vector load gives 4 codes of each
of 16 rows; per-row fp16 scales (d, m/dmin) become 16 consecutive uint16, and k-quant packed
scale bytes become 16-lane words too. The rows past the last whole tile stay as file blocks
(`tail`). The result holds exactly the file's bytes (a permutation), so it is never larger.

Q5_0/Q5_1 high bits are also reordered inside their word: bit 8k + 2v + h of a row's word
holds the high bit of weight 16h + 4v + k, the byte lane of the nibble it extends.

Q3_K's and Q6_K's codes, split in the file into low bits and high bits kept apart, are
regrouped into whole codes (to_triples, to_quads): most codes then unpack in 1-2 vector
operations instead of 5. Matvec 11008x4096, medians of runs interleaved with Q4_K's: Q3_K
17.0 -> 19.7-20.2 GB/s, Q6_K 19.7-21.7 -> 21.7-23.2 GB/s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from ..formats.ggml_types import TYPE_INFO, GGMLType
from .inline import inline, runtime

TILE = 16  # rows per tile = SIMD lanes
Q3_K_TRIPLES, Q6_K_QUADS = 1, 2  # TileLayout.regroup


@dataclass(frozen=True)
class TileLayout:
    halves: tuple[int, ...]  # byte offsets of fp16 fields (d first, then m / dmin)
    quant_fields: tuple[tuple[int, int], ...]  # (offset, nbytes) of quant fields, in word order
    scale_fields: tuple[tuple[int, int], ...] = ()  # (offset, nbytes) of packed scale bytes
    shuffled_word: int = -1  # index of the quant word holding Q5_0/Q5_1 high bits
    regroup: int = 0  # quant words regrouped into whole codes: Q3_K_TRIPLES, Q6_K_QUADS

    @property
    def quant_words(self) -> int:
        return sum(n for _, n in self.quant_fields) // 4

    @property
    def scale_words(self) -> int:
        return sum(n for _, n in self.scale_fields) // 4


LAYOUTS: dict[GGMLType, TileLayout] = {
    GGMLType.Q4_0: TileLayout((0,), ((2, 16),)),
    GGMLType.Q4_1: TileLayout((0, 2), ((4, 16),)),
    GGMLType.Q5_0: TileLayout((0,), ((6, 16), (2, 4)), shuffled_word=4),
    GGMLType.Q5_1: TileLayout((0, 2), ((8, 16), (4, 4)), shuffled_word=4),
    GGMLType.Q8_0: TileLayout((0,), ((2, 32),)),
    GGMLType.Q2_K: TileLayout((80, 82), ((16, 64),), ((0, 16),)),
    GGMLType.Q3_K: TileLayout((108,), ((0, 32), (32, 64)), ((96, 12),), regroup=Q3_K_TRIPLES),
    GGMLType.Q4_K: TileLayout((0, 2), ((16, 128),), ((4, 12),)),
    GGMLType.Q5_K: TileLayout((0, 2), ((16, 32), (48, 128)), ((4, 12),)),
    GGMLType.Q6_K: TileLayout((208,), ((0, 128), (128, 64)), ((192, 16),), regroup=Q6_K_QUADS),
}

for _t, _l in LAYOUTS.items():  # the tiles hold every byte of the block exactly once
    _covered = 2 * len(_l.halves) + 4 * (_l.quant_words + _l.scale_words)
    assert _covered == TYPE_INFO[_t].type_size, _t


@dataclass
class Tiles:
    """A block-type matrix in tile form (see module doc); flat arrays index as the shapes say."""

    quants: np.ndarray  # int32 (n_tiles, n_blocks, quant_words, 16)
    scales: np.ndarray  # int32 (n_tiles, n_blocks, scale_words, 16), maybe empty
    halves: np.ndarray  # uint16 (n_tiles, n_blocks, len(halves), 16)
    tail: np.ndarray  # uint8 (n_out % 16, row_bytes): rows after the last tile, file blocks

    @property
    def nbytes(self) -> int:
        return self.quants.nbytes + self.scales.nbytes + self.halves.nbytes + self.tail.nbytes


def tile_blocks(raw: np.ndarray, t: GGMLType) -> Tiles:
    """raw (n_out, row_bytes) uint8 file blocks (a view is fine) -> Tiles, in one pass."""
    layout = LAYOUTS[t]
    block_bytes = TYPE_INFO[t].type_size
    raw = np.ascontiguousarray(raw).view()
    raw.flags.writeable = False  # file views and copies alike: one compiled tile_rows
    n_out, row_bytes = raw.shape
    n_tiles, nb = n_out // TILE, row_bytes // block_bytes
    quants = np.empty((n_tiles, nb, layout.quant_words, TILE), np.uint32)
    scales = np.empty((n_tiles, nb, layout.scale_words, TILE), np.uint32)
    halves = np.empty((n_tiles, nb, len(layout.halves), TILE), np.uint16)
    if n_tiles:
        tile_rows(raw, n_tiles, nb, block_bytes, layout_table(t), quants.reshape(-1),
                  scales.reshape(-1), halves.reshape(-1))  # fmt: skip
    tail = np.array(raw[n_tiles * TILE :], dtype=np.uint8, copy=True)
    return Tiles(quants.view(np.int32), scales.view(np.int32), halves, tail)


@inline
def field_counts(table):
    """Words of quants, words of scales and fp16 halves per tile block, and how the quant words
    are regrouped (TileLayout.regroup), from a layout table (column 0 of each entry: 0 quants,
    1 scales, 2 halves, 3 the regrouping in column 1)."""
    n_qw = n_sw = n_h = regroup = 0
    for i in range(table.shape[0]):
        if table[i, 0] == 0:
            n_qw += 1
        elif table[i, 0] == 1:
            n_sw += 1
        elif table[i, 0] == 2:
            n_h += 1
        else:
            regroup = table[i, 1]
    return n_qw, n_sw, n_h, regroup


LOW2, BIT0 = np.uint32(0x03030303), np.uint32(0x01010101)
LOW4, LOW6 = np.uint32(0x0F0F0F0F), np.uint32(0x3F3F3F3F)


@inline
def q3_k_code(file_words, n, s, h, i):
    """Code word i of Q3_K scale group 8n + 2s + h from the file's quant words (8 of hmask,
    then 16 of qs): the 3-bit codes (stored + 4) of its 4 weights, one per byte."""
    low = (file_words[8 + 8 * n + 4 * h + i] >> np.uint32(2 * s)) & LOW2
    high = (file_words[4 * h + i] >> np.uint32(4 * n + s)) & BIT0
    return low | (high << np.uint32(2))


@inline
def to_triples(file_words, tile_words):
    """Q3_K's quant words as tiles hold them: the 8 code words of groups 2t, 2t + 1 (c0 .. c7,
    in group and word order) in words 3t .. 3t + 2 = A, B, C: c0, c1 in bits 0-2 and 3-5 of
    A, c2, c3 of B, c4, c5 of C; c6's low bits in bits 6-7 of A and its high bit in bit 6 of
    C, c7's in B and bit 7 of C."""
    codes = np.empty(8, np.uint32)
    for t in range(8):
        n, s = t // 4, t % 4
        for pos in range(8):  # a loop, not 8 calls: constant arguments compile 8 variants
            codes[pos] = q3_k_code(file_words, n, s, pos // 4, pos % 4)
        c0, c1, c2, c3, c4, c5, c6, c7 = codes
        tile_words[3 * t] = c0 | (c1 << np.uint32(3)) | ((c6 & LOW2) << np.uint32(6))
        tile_words[3 * t + 1] = c2 | (c3 << np.uint32(3)) | ((c7 & LOW2) << np.uint32(6))
        tile_words[3 * t + 2] = (c4 | (c5 << np.uint32(3))
                                 | (((c6 >> np.uint32(2)) & BIT0) << np.uint32(6))
                                 | (((c7 >> np.uint32(2)) & BIT0) << np.uint32(7)))  # fmt: skip


@inline
def from_triples(tile_words, file_words):
    """The inverse of to_triples."""
    for w in range(file_words.size):
        file_words[w] = 0
    for t in range(8):
        n, s = t // 4, t % 4
        a, b, c = tile_words[3 * t], tile_words[3 * t + 1], tile_words[3 * t + 2]
        for pos in range(8):
            if pos < 6:
                code = ((a, b, c)[pos // 2] >> np.uint32(3 * (pos % 2))) & np.uint32(0x07070707)
            else:
                low = ((a, b)[pos - 6] >> np.uint32(6)) & LOW2
                code = low | (((c >> np.uint32(pos)) & BIT0) << np.uint32(2))
            h, i = pos // 4, pos % 4
            file_words[8 + 8 * n + 4 * h + i] |= (code & LOW2) << np.uint32(2 * s)
            file_words[4 * h + i] |= ((code >> np.uint32(2)) & BIT0) << np.uint32(4 * n + s)


@inline
def q6_k_code(file_words, g, i):
    """Code word i of Q6_K scale group g = 8n + 2p + h from the file's quant words (32 of ql,
    then 16 of qh): the 6-bit codes (stored + 32) of its 4 weights, one per byte."""
    n, p, h = g // 8, (g // 2) % 4, g % 2
    low = (file_words[16 * n + 8 * (p % 2) + 4 * h + i] >> np.uint32(4 * (p // 2))) & LOW4
    high = (file_words[32 + 8 * n + 4 * h + i] >> np.uint32(2 * p)) & LOW2
    return low | (high << np.uint32(4))


@inline
def to_quads(file_words, tile_words):
    """Q6_K's quant words as tiles hold them: the 4 code words c0 .. c3 of group g in words
    3g .. 3g + 2 = A, B, C: c0, c1, c2 in bits 0-5 of A, B, C, and c3's bits 0-1, 2-3, 4-5
    in bits 6-7 of A, B, C."""
    codes = np.empty(4, np.uint32)
    for g in range(16):
        for i in range(4):  # a loop, not 4 calls: constant arguments compile 4 variants
            codes[i] = q6_k_code(file_words, g, i)
        for i in range(3):
            top = ((codes[3] >> np.uint32(2 * i)) & LOW2) << np.uint32(6)
            tile_words[3 * g + i] = codes[i] | top


@inline
def from_quads(tile_words, file_words):
    """The inverse of to_quads."""
    for w in range(file_words.size):
        file_words[w] = 0
    for g in range(16):
        n, p, h = g // 8, (g // 2) % 4, g % 2
        c3 = np.uint32(0)
        for i in range(4):
            if i < 3:
                code = tile_words[3 * g + i] & LOW6
                c3 |= ((tile_words[3 * g + i] >> np.uint32(6)) & LOW2) << np.uint32(2 * i)
            else:
                code = c3
            file_words[16 * n + 8 * (p % 2) + 4 * h + i] |= (code & LOW4) << np.uint32(4 * (p // 2))
            file_words[32 + 8 * n + 4 * h + i] |= ((code >> np.uint32(4)) & LOW2) << np.uint32(
                2 * p
            )


@inline
def regroup_words(regroup, src, dst, inverse):
    """dst = a block's quant words src as the tiles hold them (TileLayout.regroup), or with
    inverse (1), tile words back as the file holds them. Callers pass inverse as runtime(0 or
    1), so that both directions compile as one function."""
    if regroup == Q3_K_TRIPLES:
        if inverse:
            from_triples(src, dst)
        else:
            to_triples(src, dst)
    elif regroup == Q6_K_QUADS:
        if inverse:
            from_quads(src, dst)
        else:
            to_quads(src, dst)
    else:  # loops here and in from_triples / from_quads, not slice assignments, which took
        # Numba 3 s to compile
        for w in range(src.size):
            dst[w] = src[w]


@njit(cache=True)
def tile_rows(raw, n_tiles, n_blocks, block_bytes, table, quants, scales, halves):
    """The tiled fields (flat outputs) of raw's first 16 * n_tiles rows; see untile_row."""
    n_qw, n_sw, n_h, regroup = field_counts(table)
    file_words = np.empty(n_qw, np.uint32)  # one block's quant words, as in the file
    tile_words = np.empty(n_qw, np.uint32)
    for tile in range(n_tiles):  # serial: memory-bound, and no thread wake-ups per tensor
        for lane in range(16):
            row = raw[tile * 16 + lane]
            for b in range(n_blocks):
                o = b * block_bytes
                tb = tile * n_blocks + b
                for i in range(table.shape[0]):
                    kind, off, word = table[i, 0], table[i, 1], table[i, 3]
                    if kind == 3:
                        continue
                    if kind == 2:
                        v16 = np.uint16(row[o + off]) | (
                            np.uint16(row[o + off + 1]) << np.uint16(8)
                        )
                        halves[(tb * n_h + word) * 16 + lane] = v16
                        continue
                    v = np.uint32(0)
                    for k in range(4):
                        v |= np.uint32(row[o + off + k]) << np.uint32(8 * k)
                    if table[i, 4]:  # the Q5 high-bit word: bit 16h + 4v + k to 8k + 2v + h
                        u = np.uint32(0)
                        for kk in range(4):
                            for vv in range(4):
                                for h in range(2):
                                    bit = (v >> np.uint32(16 * h + 4 * vv + kk)) & np.uint32(1)
                                    u |= bit << np.uint32(8 * kk + 2 * vv + h)
                        v = u
                    if kind == 0:
                        file_words[word] = v
                    else:
                        scales[(tb * n_sw + word) * 16 + lane] = v
                regroup_words(regroup, file_words, tile_words, runtime(0))
                for w in range(n_qw):
                    quants[(tb * n_qw + w) * 16 + lane] = tile_words[w]


def layout_table(t: GGMLType) -> np.ndarray:
    """The layout as int64 rows for Numba: (kind, block offset, nbytes, word index, shuffled)
    for kind 0 = quant words, 1 = scale words, 2 = fp16 halves; then (3, regroup, 0, 0, 0) if
    the quant words are regrouped."""
    layout = LAYOUTS[t]
    rows = []
    for kind, fields in ((0, layout.quant_fields), (1, layout.scale_fields)):
        word = 0
        for off, n in fields:
            for i in range(n // 4):
                rows.append(
                    (kind, off + 4 * i, 4, word, int(kind == 0 and word == layout.shuffled_word))
                )
                word += 1
    for h, off in enumerate(layout.halves):
        rows.append((2, off, 2, h, 0))
    if layout.regroup:
        rows.append((3, layout.regroup, 0, 0, 0))
    return np.array(rows, np.int64)


@njit(cache=True)
def untile_row(quants, scales, halves, n_blocks, table, row, block_bytes, dst):
    """Rebuild the file blocks of tiled row `row` into dst (row_bytes uint8)."""
    tile, lane = divmod(row, 16)
    n_qw, n_sw, n_h, regroup = field_counts(table)
    tile_words = np.empty(n_qw, np.uint32)
    file_words = np.empty(n_qw, np.uint32)
    for b in range(n_blocks):
        o = b * block_bytes
        tb = tile * n_blocks + b
        for w in range(n_qw):
            tile_words[w] = quants[(tb * n_qw + w) * 16 + lane]
        regroup_words(regroup, tile_words, file_words, runtime(1))
        for i in range(table.shape[0]):
            kind, off, word = table[i, 0], table[i, 1], table[i, 3]
            if kind == 3:
                continue
            if kind == 2:
                v = np.uint32(halves[(tb * n_h + word) * 16 + lane])
                dst[o + off] = v & 0xFF
                dst[o + off + 1] = v >> 8
                continue
            if kind == 0:
                v = file_words[word]
            else:
                v = np.uint32(scales[(tb * n_sw + word) * 16 + lane])
            if table[i, 4]:  # undo the high-bit shuffle
                u = np.uint32(0)
                for k in range(4):
                    for vv in range(4):
                        for h in range(2):
                            bit = (v >> np.uint32(8 * k + 2 * vv + h)) & np.uint32(1)
                            u |= bit << np.uint32(16 * h + 4 * vv + k)
                v = u
            for k in range(4):
                dst[o + off + k] = (v >> np.uint32(8 * k)) & np.uint32(0xFF)


@njit(cache=True)
def untile_rows(n_tiled_rows, n_blocks, block_bytes, quants, scales, halves, table, tail, ids,
                dst):  # fmt: skip
    """dst[i] = the file blocks of row ids[i] of a tiled matrix (rows past the tiles in tail).

    One kernel for every type (the table says the layout), so that a row lookup compiles
    per type only the dequantizer (dequantize.dequantize_rows); serial: a lookup is a few
    rows."""
    for i in range(ids.size):
        row = ids[i]
        if row < n_tiled_rows:
            untile_row(quants, scales, halves, n_blocks, table, row, block_bytes, dst[i])
        else:  # element by element: a row slice assignment compiles Numba's shape-error
            # formatting, 0.6 s
            for k in range(dst.shape[1]):
                dst[i, k] = tail[row - n_tiled_rows, k]
