"""Tiny random-weight GGUF models (llama and gemma3) written with llamba's own writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llamba.formats.ggml_types import GGMLType
from llamba.formats.gguf_writer import GGUFWriter
from llamba.formats.keys import GGUFValueType, Keys
from llamba.formats.quants import quantize

TINY = {
    "llama": dict(dim=64, n_layer=2, n_head=4, n_kv_head=2, head_dim=16, n_ff=96, n_vocab=96),
    # 7 layers: sliding on layers 0-4 and 6, global on layer 5 (period 6)
    "gemma3": dict(dim=64, n_layer=7, n_head=4, n_kv_head=1, head_dim=32, n_ff=64, n_vocab=128),
}


def write_tiny_model(
    path: Path,
    arch: str,
    weight_types: dict[str, str] | None = None,
    window: int = 4,
    seed: int = 0,
) -> Path:
    """Write a tiny model; weight_types maps a tensor-name suffix ('attn_v', 'ffn_down',
    'token_embd') to a GGML type name (default F32 for everything)."""
    c = TINY[arch]
    rng = np.random.default_rng(seed)
    weight_types = weight_types or {}
    dim, hd, n_ff = c["dim"], c["head_dim"], c["n_ff"]
    q_dim, kv_dim = c["n_head"] * hd, c["n_kv_head"] * hd

    tensors: list[tuple[str, np.ndarray]] = [
        ("token_embd.weight", rng.normal(size=(c["n_vocab"], dim)))
    ]
    tensors.append(("output_norm.weight", 1 + 0.1 * rng.normal(size=dim)))
    for i in range(c["n_layer"]):
        p = f"blk.{i}."
        layer = [
            ("attn_norm", (dim,)),
            ("attn_q", (q_dim, dim)),
            ("attn_k", (kv_dim, dim)),
            ("attn_v", (kv_dim, dim)),
            ("attn_output", (dim, q_dim)),
            ("ffn_norm", (dim,)),
            ("ffn_gate", (n_ff, dim)),
            ("ffn_up", (n_ff, dim)),
            ("ffn_down", (dim, n_ff)),
        ]
        if arch == "gemma3":
            layer += [
                ("attn_q_norm", (hd,)),
                ("attn_k_norm", (hd,)),
                ("post_attention_norm", (dim,)),
                ("post_ffw_norm", (dim,)),
            ]
        for name, shape in layer:
            if len(shape) == 1:
                values = 1 + 0.1 * rng.normal(size=shape)
            else:
                values = rng.normal(size=shape) / np.sqrt(shape[1])
            tensors.append((p + name + ".weight", values))

    w = GGUFWriter(path)
    w.add(Keys.General.ARCHITECTURE, arch)
    meta = {
        Keys.LLM.BLOCK_COUNT: c["n_layer"],
        Keys.LLM.EMBEDDING_LENGTH: dim,
        Keys.LLM.FEED_FORWARD_LENGTH: n_ff,
        Keys.LLM.CONTEXT_LENGTH: 256,
        Keys.Attention.HEAD_COUNT: c["n_head"],
        Keys.Attention.HEAD_COUNT_KV: c["n_kv_head"],
        Keys.Rope.FREQ_BASE: 10000.0 if arch == "llama" else 1_000_000.0,
    }
    if arch == "gemma3":
        meta[Keys.Attention.KEY_LENGTH] = hd
        meta[Keys.Attention.VALUE_LENGTH] = hd
        meta[Keys.Attention.SLIDING_WINDOW] = window
    for key, value in meta.items():
        vtype = GGUFValueType.FLOAT32 if isinstance(value, float) else GGUFValueType.UINT32
        w.add(key.format(arch=arch), value, vtype)
    eps_key = Keys.Attention.LAYERNORM_RMS_EPS.format(arch=arch)
    w.add(eps_key, 1e-6 if arch == "gemma3" else 1e-5, GGUFValueType.FLOAT32)

    data = []
    for name, values in tensors:
        kind = next((t for suffix, t in weight_types.items() if f"{suffix}.weight" in name), "F32")
        gtype = GGMLType[kind] if values.ndim == 2 else GGMLType.F32
        if gtype == GGMLType.F32:
            payload = values.astype(np.float32)
        elif gtype == GGMLType.F16:
            payload = values.astype(np.float16)
        else:
            payload = quantize(values.astype(np.float32), gtype)
        w.add_tensor_info(name, tuple(reversed(values.shape)), gtype)
        data.append((name, payload))
    for name, payload in data:
        w.write_tensor_data(name, payload)
    w.close()
    return path
