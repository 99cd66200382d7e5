"""Which weight types run prompt batches on AMX tile rows (tile_amx.py), and how: each
type's tile rows, its tile row's unpacked size and tile-dot depth, and the step that makes
the unpacked row what the tile dots read (a code offset taken off, or scales folded in)."""

from __future__ import annotations

from ..formats.ggml_types import GGMLType as T
from .tile_amx import (
    DIGITS,
    NEGATED,
    PER_BLOCK,
    PLAIN,
    PLANES,
    SPLIT,
    fold_scales,
    folded_tile_rows,
    legacy_tile_rows,
    q4_k_tile_rows,
)
from .tile_codes import KQUANT_PARTS, LEGACY_PARTS
from .tile_dots import EIGHT_LANE_TYPES, UNPACKED_CODES, UNPACKED_GROUPS

# sixteen tokens against a whole tile row: the 32-weight types with four-token shapes, Q4_K,
# and the k-quants whose scales fold into their codes (type -> how)
FOLDED_SCALES = {T.Q2_K: PLAIN, T.Q3_K: NEGATED, T.Q5_K: SPLIT, T.Q6_K: DIGITS}
FOLDS = {_t: fold_scales(_kind, KQUANT_PARTS[_t][3]) for _t, _kind in FOLDED_SCALES.items()}
LEGACY_OFFSETS = {_t: parts[2] for _t, parts in LEGACY_PARTS.items()}  # codes stored + this
DOTS_TILES = {}
# per tile block of a tile row: unpacked code words, group words (scales and mins), and
# the bytes of activations per tile dot (the A tiles' rows)
TILE_ROW_SHAPE = {}
for _t, (_codes, _scales, _offset, _has_m, _signed, _per_flush) in LEGACY_PARTS.items():
    if _t not in EIGHT_LANE_TYPES:
        DOTS_TILES[_t] = legacy_tile_rows(_offset, _has_m)
        TILE_ROW_SHAPE[_t] = (PER_BLOCK, 0, 32)
DOTS_TILES[T.Q4_K] = q4_k_tile_rows()
TILE_ROW_SHAPE[T.Q4_K] = (UNPACKED_CODES, UNPACKED_GROUPS, 32)
for _t, _kind in FOLDED_SCALES.items():
    DOTS_TILES[_t] = folded_tile_rows(_kind)
    TILE_ROW_SHAPE[_t] = (PLANES[_kind] * UNPACKED_CODES, UNPACKED_GROUPS, 64)
