"""Weights repacked at load into 16-row tiles: lanes = rows, quants apart from scales.

For every group of 16 rows and every block, each 4-byte word of the block's quant bytes is
stored as 16 consecutive int32 (one per row), so a 64-byte vector load gives 4 codes of each
of 16 rows; per-row fp16 scales (d, m/dmin) become 16 consecutive uint16, and k-quant packed
scale bytes become 16-lane words too. The rows past the last whole tile stay as file blocks
(`tail`). The result holds exactly the file's bytes (a permutation), so it is never larger.

Q5_0/Q5_1 high bits are also reordered inside their word: bit 8k + 2v + h of a row's word
holds the high bit of weight 16h + 4v + k, the byte lane of the nibble it extends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from ..formats.ggml_types import TYPE_INFO, GGMLType
from .dequantize import dequantize_row

TILE = 16  # rows per tile = SIMD lanes


@dataclass(frozen=True)
class TileLayout:
    halves: tuple[int, ...]  # byte offsets of fp16 fields (d first, then m / dmin)
    quant_fields: tuple[tuple[int, int], ...]  # (offset, nbytes) of quant fields, in word order
    scale_fields: tuple[tuple[int, int], ...] = ()  # (offset, nbytes) of packed scale bytes
    shuffled_word: int = -1  # index of the quant word holding Q5_0/Q5_1 high bits

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
    GGMLType.Q3_K: TileLayout((108,), ((0, 32), (32, 64)), ((96, 12),)),
    GGMLType.Q4_K: TileLayout((0, 2), ((16, 128),), ((4, 12),)),
    GGMLType.Q5_K: TileLayout((0, 2), ((16, 32), (48, 128)), ((4, 12),)),
    GGMLType.Q6_K: TileLayout((208,), ((0, 128), (128, 64)), ((192, 16),)),
}

for _t, _l in LAYOUTS.items():  # the tiles hold every byte of the block exactly once
    _covered = 2 * len(_l.halves) + 4 * (_l.quant_words + _l.scale_words)
    assert _covered == TYPE_INFO[_t].type_size, _t

# (tile bit, source bit) pairs of the Q5 high-bit word
_QH_BITS = [(8 * k + 2 * v + h, 16 * h + 4 * v + k) for k in range(4) for v in range(4) for h in (0, 1)]  # fmt: skip


def shuffle_high_bits(words: np.ndarray) -> np.ndarray:
    out = np.zeros_like(words)
    for dst, src in _QH_BITS:
        out |= ((words >> np.uint32(src)) & np.uint32(1)) << np.uint32(dst)
    return out


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


def _lanes(blocks: np.ndarray, fields, dtype) -> np.ndarray:
    """(T, 16, nb, bytes) blocks -> (T, nb, n, 16): the fields' words (or halves) per lane."""
    parts = [np.ascontiguousarray(blocks[..., o : o + n]).view(dtype) for o, n in fields]
    if not parts:
        return np.zeros(blocks.shape[:1] + blocks.shape[2:3] + (0, TILE), dtype)
    return np.concatenate(parts, axis=-1).transpose(0, 2, 3, 1)


def tile_blocks(raw: np.ndarray, t: GGMLType, chunk_tiles: int = 256) -> Tiles:
    """raw (n_out, row_bytes) uint8 file blocks -> Tiles; works in chunks to bound temporaries."""
    layout = LAYOUTS[t]
    block_bytes = TYPE_INFO[t].type_size
    n_out, row_bytes = raw.shape
    n_tiles, nb = n_out // TILE, row_bytes // block_bytes
    quants = np.empty((n_tiles, nb, layout.quant_words, TILE), np.uint32)
    scales = np.empty((n_tiles, nb, layout.scale_words, TILE), np.uint32)
    halves = np.empty((n_tiles, nb, len(layout.halves), TILE), np.uint16)
    for t0 in range(0, n_tiles, chunk_tiles):
        t1 = min(n_tiles, t0 + chunk_tiles)
        blocks = raw[t0 * TILE : t1 * TILE].reshape(t1 - t0, TILE, nb, block_bytes)
        q = _lanes(blocks, layout.quant_fields, np.uint32)
        if layout.shuffled_word >= 0:
            q[:, :, layout.shuffled_word] = shuffle_high_bits(q[:, :, layout.shuffled_word])
        quants[t0:t1] = q
        scales[t0:t1] = _lanes(blocks, layout.scale_fields, np.uint32)
        halves[t0:t1] = _lanes(blocks, [(o, 2) for o in layout.halves], np.uint16)
    tail = np.array(raw[n_tiles * TILE :], dtype=np.uint8, copy=True)
    return Tiles(quants.view(np.int32), scales.view(np.int32), halves, tail)


def layout_table(t: GGMLType) -> np.ndarray:
    """The layout as int64 rows for Numba: (kind, block offset, nbytes, word index, shuffled).

    kind 0 = quant words, 1 = scale words, 2 = fp16 halves.
    """
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
    return np.array(rows, np.int64)


@njit(cache=True)
def untile_row(quants, scales, halves, n_blocks, table, row, block_bytes, dst):
    """Rebuild the file blocks of tiled row `row` into dst (row_bytes uint8)."""
    tile, lane = divmod(row, 16)
    n_qw = n_sw = n_h = 0
    for i in range(table.shape[0]):
        if table[i, 0] == 0:
            n_qw += 1
        elif table[i, 0] == 1:
            n_sw += 1
        else:
            n_h += 1
    for b in range(n_blocks):
        o = b * block_bytes
        tb = tile * n_blocks + b
        for i in range(table.shape[0]):
            kind, off, word = table[i, 0], table[i, 1], table[i, 3]
            if kind == 2:
                v = np.uint32(halves[(tb * n_h + word) * 16 + lane])
                dst[o + off] = v & 0xFF
                dst[o + off + 1] = v >> 8
                continue
            if kind == 0:
                v = np.uint32(quants[(tb * n_qw + word) * 16 + lane])
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
def dequantize_tiled_rows(qtype, n_tiled_rows, n_blocks, block_bytes, quants, scales, halves, table,
                          tail, ids, out):  # fmt: skip
    """out[i] = float32 weights of row ids[i] of a tiled matrix (rows past the tiles in tail);
    qtype a static token."""
    buf = np.empty(n_blocks * block_bytes, np.uint8)
    for i in range(ids.size):  # serial: a lookup is a few rows, and it compiles faster
        row = ids[i]
        if row < n_tiled_rows:
            untile_row(quants, scales, halves, n_blocks, table, row, block_bytes, buf)
            dequantize_row(qtype, buf, out[i])
        else:
            dequantize_row(qtype, tail[row - n_tiled_rows], out[i])
