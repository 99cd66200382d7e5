"""Requantize a GGUF model to a preset (Q8_0, Q4_K_M, F16, …), as llama-quantize does.

Each tensor's new type comes from formats.quant_mix (llama.cpp's rules); its weights are
dequantized to float32 and quantized again with the fast quantizer (the same bytes as the
numpy reference and as ggml). The metadata is copied, with general.file_type and
general.quantization_version set last, as llama.cpp sets them. The output is written to a
temporary file beside the target and renamed only when complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..formats import quants
from ..formats.ggml_types import TYPE_INFO, GGMLType
from ..formats.gguf_reader import GGUFFile
from ..formats.gguf_writer import GGUFWriter
from ..formats.keys import GGUFValueType, Keys
from ..formats.quant_mix import FLOAT_TYPES, ModelShape, plan_types, preset
from ..kernels import quantize as fast

QUANTIZATION_VERSION = 2  # GGML_QNT_VERSION
# set afresh (as llama.cpp sets them), or dropped: the output is one file, not a split
_REPLACED_KEYS = (
    Keys.General.QUANTIZATION_VERSION,
    Keys.General.FILE_TYPE,
    "split.no",
    "split.count",
    "split.tensors.count",
)


class QuantizeError(ValueError):
    """A model that cannot be quantized as asked (requantizing without permission, …)."""


@dataclass(frozen=True)
class TensorStep:
    name: str
    shape: tuple[int, ...]
    old_type: GGMLType
    new_type: GGMLType
    old_bytes: int
    new_bytes: int


def model_shape(src: GGUFFile) -> ModelShape:
    def first(v):
        return int(np.asarray(v).reshape(-1)[0]) if v is not None else 0

    arch = src.architecture or ""
    n_layer = first(src.arch_get(Keys.LLM.BLOCK_COUNT))
    n_head = first(src.arch_get(Keys.Attention.HEAD_COUNT))
    n_head_kv = first(src.arch_get(Keys.Attention.HEAD_COUNT_KV, n_head))
    if first(src.arch_get(Keys.LLM.EXPERT_COUNT)) > 1:
        raise QuantizeError("quantizing mixture-of-experts models is not supported yet")
    return ModelShape(
        n_layer=n_layer,
        n_gqa=n_head // n_head_kv if n_head_kv else 0,
        is_70b=arch == "llama" and n_layer == 80 and n_head != n_head_kv,
    )


def _to_float32(src: GGUFFile, name: str) -> np.ndarray:
    """A tensor's weights as float32 rows (n_rows, row)."""
    t = src.tensors[name]
    rows = t.n_elements // t.shape[0]
    if t.type == GGMLType.F32:
        return src.tensor_array(name).reshape(rows, t.shape[0])
    return quants.dequantize(src.tensor_bytes(name), t.type, (rows, t.shape[0]))


def _encode(x: np.ndarray, qtype: GGMLType) -> np.ndarray:
    if qtype == GGMLType.F32:
        return x.view(np.uint8)
    if qtype in fast.QUANTIZE_TYPES:
        return fast.quantize(x, qtype)
    return quants.quantize(x, qtype)


def quantize_model(
    src_path: str | os.PathLike,
    dst_path: str | os.PathLike,
    preset_name: str,
    *,
    allow_requantize: bool = False,
    pure: bool = False,
    output_type: str | None = None,
    token_embd_type: str | None = None,
    quantize_output: bool = True,
    on_tensor: Callable[[TensorStep], None] | None = None,
) -> list[TensorStep]:
    """Write src quantized to `preset_name` at dst; returns what happened to each tensor."""
    name, ftype, _ = preset(preset_name)
    if os.path.exists(dst_path) and os.path.samefile(src_path, dst_path):
        raise QuantizeError("the output file must not be the input file")
    with GGUFFile(src_path) as src:
        plan = plan_types(
            {n: (t.shape, t.type) for n, t in src.tensors.items()},
            name,
            model_shape(src),
            pure=pure,
            output_type=None if output_type is None else GGMLType[output_type.upper()],
            token_embd_type=None if token_embd_type is None else GGMLType[token_embd_type.upper()],
            quantize_output=quantize_output,
        )
        _check_plan(src, plan, allow_requantize)
        return _write(src, dst_path, ftype, plan, on_tensor)


def _check_plan(src: GGUFFile, plan: dict[str, GGMLType], allow_requantize: bool) -> None:
    for n, new in plan.items():
        old = src.tensors[n].type
        if new != old and old not in FLOAT_TYPES and not allow_requantize:
            raise QuantizeError(
                f"{n} is already {old.name}; requantizing loses quality, "
                "pass allow_requantize (--allow-requantize) to do it anyway"
            )
        if new != old and old not in quants.QUANT_TYPES:
            raise QuantizeError(f"{n}: cannot read {old.name} weights to requantize them")
        row = src.tensors[n].shape[0]
        if row % TYPE_INFO[new].block_size:
            raise QuantizeError(f"{n}: rows of {row} do not split into {new.name} blocks")


def _write(src: GGUFFile, dst_path, ftype, plan: dict[str, GGMLType], on_tensor) -> list:
    steps = []
    with GGUFWriter(dst_path, version=src.version) as w:
        for field in src.fields.values():
            if field.key not in _REPLACED_KEYS:
                w.add_field(field)
        w.add(Keys.General.QUANTIZATION_VERSION, QUANTIZATION_VERSION, GGUFValueType.UINT32)
        w.add(Keys.General.FILE_TYPE, int(ftype), GGUFValueType.UINT32)
        for n, new in plan.items():
            w.add_tensor_info(n, src.tensors[n].shape, new)
        for n, new in plan.items():
            t = src.tensors[n]
            if new == t.type:
                data = src.tensor_bytes(n)
            else:
                x = _to_float32(src, n)
                if not np.isfinite(x).all():
                    raise QuantizeError(f"{n} holds inf or NaN weights")
                data = _encode(x, new)
            w.write_tensor_data(n, data)
            step = TensorStep(n, t.shape, t.type, new, t.nbytes, int(data.nbytes))
            steps.append(step)
            if on_tensor is not None:
                on_tensor(step)
    return steps
