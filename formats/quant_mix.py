"""Which type each tensor gets when a model is quantized to a file type ("preset").

These are llama.cpp's choices (src/llama-quant.cpp) for dense models without an importance
matrix, so `llamba quantize` and `llama-quantize` give files with the same tensor types:

- only weight matrices are quantized (two or more dimensions, a name ending in "weight",
  not a norm); everything else is copied as it is;
- the output matrix (or the token embedding when it doubles as the output) gets Q6_K, or
  Q8_0 when its rows don't split into the type's blocks;
- mixtures (Q3_K_M, Q4_K_M, …) give some attn_v / ffn_down / attn_output matrices more bits;
- a row length that is not a multiple of the type's block falls back to a smaller block
  type (Q4_K -> Q5_0, Q6_K -> Q8_0, …), and to F16 when even that does not fit.

Tensors are visited (and written) in llama.cpp's loader order: tensors outside the blocks
first, then block by block (blk.0, blk.1, …, blk.10), by name within each; the "which layers
get more bits" counters follow that order.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ggml_types import TYPE_INFO, GGMLType
from .keys import FileType

T = GGMLType

# preset name -> (file type, the type most tensors get)
PRESETS: dict[str, tuple[FileType, GGMLType]] = {
    "F32": (FileType.ALL_F32, T.F32),
    "F16": (FileType.MOSTLY_F16, T.F16),
    "BF16": (FileType.MOSTLY_BF16, T.BF16),
    "Q4_0": (FileType.MOSTLY_Q4_0, T.Q4_0),
    "Q4_1": (FileType.MOSTLY_Q4_1, T.Q4_1),
    "Q5_0": (FileType.MOSTLY_Q5_0, T.Q5_0),
    "Q5_1": (FileType.MOSTLY_Q5_1, T.Q5_1),
    "Q8_0": (FileType.MOSTLY_Q8_0, T.Q8_0),
    "Q2_K": (FileType.MOSTLY_Q2_K, T.Q2_K),
    "Q3_K_S": (FileType.MOSTLY_Q3_K_S, T.Q3_K),
    "Q3_K_M": (FileType.MOSTLY_Q3_K_M, T.Q3_K),
    "Q3_K_L": (FileType.MOSTLY_Q3_K_L, T.Q3_K),
    "Q4_K_S": (FileType.MOSTLY_Q4_K_S, T.Q4_K),
    "Q4_K_M": (FileType.MOSTLY_Q4_K_M, T.Q4_K),
    "Q5_K_S": (FileType.MOSTLY_Q5_K_S, T.Q5_K),
    "Q5_K_M": (FileType.MOSTLY_Q5_K_M, T.Q5_K),
    "Q6_K": (FileType.MOSTLY_Q6_K, T.Q6_K),
}
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}  # as llama-quantize accepts

# a k-quant whose 256-wide blocks don't fit a row -> the 32-wide type llama.cpp uses instead
FALLBACK = {T.Q2_K: T.Q4_0, T.Q3_K: T.Q4_0, T.Q4_K: T.Q5_0, T.Q5_K: T.Q5_1, T.Q6_K: T.Q8_0}

FLOAT_TYPES = (T.F32, T.F16, T.BF16)

# name fragments of matrices llama.cpp never quantizes (among the architectures it knows)
_KEEP = (
    "_norm.weight", "ffn_gate_inp.weight", "altup", "laurel", "per_layer_model_proj",
    "ssm_conv1d", "shortconv.conv.weight", "attn_rel_b.weight", "time_mix_",
    ".position_embd", ".rel_pos", ".patch_embd", ".patch_merger",
)  # fmt: skip
_KEEP_EXACT = ("position_embd.weight", "token_types.weight")


def preset(name: str) -> tuple[str, FileType, GGMLType]:
    """Canonical name, file type and default tensor type of a preset; ValueError if unknown."""
    key = ALIASES.get(name.upper(), name.upper())
    if key not in PRESETS:
        raise ValueError(f"unknown quantization type {name!r}; known: {', '.join(PRESETS)}")
    return (key, *PRESETS[key])


def quantizable(name: str, n_dims: int, quantize_output: bool = True) -> bool:
    if n_dims < 2 or not name.endswith("weight"):
        return False
    if name == "output.weight" and not quantize_output:
        return False
    return name not in _KEEP_EXACT and not any(k in name for k in _KEEP)


def category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for fragment, cat in (
        ("attn_qkv.weight", "attn_v"),  # fused QKV and MLA's kv_b count as attn_v
        ("attn_kv_b.weight", "attn_v"),
        ("attn_v.weight", "attn_v"),
        ("attn_k.weight", "attn_k"),
        ("attn_q.weight", "attn_q"),
        ("attn_output.weight", "attn_output"),
        ("ffn_up", "ffn_up"),
        ("ffn_gate", "ffn_gate"),
        ("ffn_down", "ffn_down"),
    ):
        if fragment in name:
            return cat
    return "other"


def loader_order(name: str) -> tuple[int, str]:
    """Sort key of llama.cpp's weight map: the block number (-1 outside blocks), then the name."""
    parts = name.split(".")
    if len(parts) > 2 and parts[0] == "blk" and parts[1].isdigit():
        return int(parts[1]), name
    return -1, name


def _use_more_bits(i: int, n: int) -> bool:
    """The first and last eighth of the layers, and every third one between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


@dataclass(frozen=True)
class ModelShape:
    """What the mixture rules read from the model's hyperparameters."""

    n_layer: int
    n_gqa: int  # query heads per KV head
    is_70b: bool = False  # Llama-2/3 70B: attn_v gets Q5_K at the low-bit presets


def _mixture_type(ftype: FileType, t: GGMLType, cat: str, row: int, counters: dict,
                  shape: ModelShape) -> GGMLType:  # fmt: skip
    F = FileType
    if cat == "output" or (cat == "token_embd" and counters["tied"]):
        if row % TYPE_INFO[t].block_size != 0:
            return T.Q8_0
        return t if t == T.Q8_0 else T.Q6_K
    if cat == "attn_v":
        i = counters["attn_v"]
        counters["attn_v"] += 1
        if ftype == F.MOSTLY_Q2_K:
            t = T.Q4_K if shape.n_gqa >= 4 else T.Q3_K
        elif ftype == F.MOSTLY_Q3_K_M:
            t = T.Q5_K if i < 2 else T.Q4_K
        elif ftype == F.MOSTLY_Q3_K_L:
            t = T.Q5_K
        elif ftype in (F.MOSTLY_Q4_K_M, F.MOSTLY_Q5_K_M) and _use_more_bits(
            i, counters["n_attn_v"]
        ):
            t = T.Q6_K
        elif ftype == F.MOSTLY_Q4_K_S and i < 4:
            t = T.Q5_K
        if shape.is_70b and t in (T.Q3_K, T.Q4_K):
            t = T.Q5_K
        return t
    if cat == "ffn_down":
        i, n = counters["ffn_down"], shape.n_layer
        counters["ffn_down"] += 1
        if ftype == F.MOSTLY_Q2_K:
            return T.Q3_K
        if ftype == F.MOSTLY_Q3_K_M:
            return T.Q5_K if i < n // 16 else T.Q4_K
        if ftype == F.MOSTLY_Q3_K_L:
            return T.Q5_K
        if ftype in (F.MOSTLY_Q4_K_M, F.MOSTLY_Q5_K_M) and _use_more_bits(i, n):
            return T.Q6_K
        if ftype == F.MOSTLY_Q4_K_S and i < n // 8:
            return T.Q5_K
        return t
    if cat == "attn_output":
        return {F.MOSTLY_Q2_K: T.Q3_K, F.MOSTLY_Q3_K_M: T.Q4_K, F.MOSTLY_Q3_K_L: T.Q5_K}.get(
            ftype, t
        )
    return t


def _fit_row(t: GGMLType, row: int) -> GGMLType:
    if row % TYPE_INFO[t].block_size == 0:
        return t
    t = FALLBACK.get(t, T.F16)
    return t if row % TYPE_INFO[t].block_size == 0 else T.F16


def plan_types(
    tensors: dict[str, tuple[tuple[int, ...], GGMLType]],
    preset_name: str,
    shape: ModelShape,
    *,
    pure: bool = False,
    output_type: GGMLType | None = None,
    token_embd_type: GGMLType | None = None,
    quantize_output: bool = True,
) -> dict[str, GGMLType]:
    """The type of every tensor (name -> (ggml shape, current type)) in the quantized file,
    in the order llama.cpp writes them (loader_order)."""
    _, ftype, default = preset(preset_name)
    cats = {name: category(name) for name in tensors}
    counters = {
        "tied": "output" not in cats.values(),
        "n_attn_v": sum(c == "attn_v" for c in cats.values()),
        "attn_v": 0,
        "ffn_down": 0,
    }
    plan = {}
    for name in sorted(tensors, key=loader_order):
        dims, current = tensors[name]
        row = int(dims[0])
        if not quantizable(name, len(dims), quantize_output):
            plan[name] = current
        elif token_embd_type is not None and cats[name] == "token_embd":
            plan[name] = token_embd_type
        elif output_type is not None and cats[name] == "output":
            plan[name] = output_type
        elif default in FLOAT_TYPES:
            plan[name] = default
        else:
            t = default if pure else _mixture_type(ftype, default, cats[name], row, counters, shape)
            plan[name] = _fit_row(t, row)
    return plan
