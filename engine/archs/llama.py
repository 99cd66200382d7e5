"""Llama-family decoder (Llama 2/3, SmolLM, TinyLlama, Mistral-style GGUFs).

Pre-norm blocks: x += attn(rmsnorm(x)); x += swiglu_ffn(rmsnorm(x)). Rotary embedding in the
"normal" pairing (llama.cpp's converter permuted Q/K for it). Output tied to the token
embedding when output.weight is absent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...formats.gguf_reader import GGUFFile
from ...formats.keys import Keys
from ...kernels import linear
from ...kernels.attention import attention, prepare_qkv
from ...kernels.ops_act import swiglu
from ...kernels.ops_norm import add_rmsnorm, rmsnorm
from ...kernels.ops_rope import rope_tables
from .base import (
    KVLayout,
    ProjectionGroup,
    Scratch,
    UnsupportedModelError,
    attention_shape,
    norm_weight,
    pack_linear,
    project_logits,
    require_tensor,
    same_for_all_layers,
)
from .registry import register

NO_WEIGHT = np.ones(1, dtype=np.float32)  # stands in for absent QK-norm weights
NO_WEIGHT.flags.writeable = False  # read-only as the real ones are: one compiled prepare
ONE, ZERO = np.float32(1.0), np.float32(0.0)


@dataclass(frozen=True)
class ModelArgs:
    n_layer: int
    dim: int
    n_ff: int
    n_head: int
    n_kv_head: int
    head_dim: int
    n_rot: int
    n_vocab: int
    n_ctx_train: int
    norm_eps: float
    rope_base: float
    rope_freq_scale: float
    attn_scale: float

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> ModelArgs:
        n_layer, dim, n_head, n_kv_head, head_dim = attention_shape(f)
        scaling = f.arch_get(Keys.Rope.SCALING_TYPE, "none")
        if scaling not in ("none", "linear"):
            raise UnsupportedModelError(f"rope scaling {scaling!r} is not supported")
        factor = float(f.arch_get(Keys.Rope.SCALING_FACTOR, 1.0) or 1.0)
        return cls(
            n_layer=n_layer,
            dim=dim,
            n_ff=same_for_all_layers(f.arch_get(Keys.LLM.FEED_FORWARD_LENGTH), n_layer, "ffn"),
            n_head=n_head,
            n_kv_head=n_kv_head,
            head_dim=head_dim,
            n_rot=int(f.arch_get(Keys.Rope.DIMENSION_COUNT, head_dim)),
            n_vocab=int(require_tensor(f, "token_embd.weight").shape[1]),
            n_ctx_train=int(f.arch_get(Keys.LLM.CONTEXT_LENGTH, 2048)),
            norm_eps=float(f.arch_get(Keys.Attention.LAYERNORM_RMS_EPS, 1e-5)),
            rope_base=float(f.arch_get(Keys.Rope.FREQ_BASE, 10000.0)),
            rope_freq_scale=1.0 / factor if scaling == "linear" else 1.0,
            attn_scale=float(f.arch_get(Keys.Attention.SCALE, 0.0) or head_dim**-0.5),
        )


@dataclass
class Layer:
    attn_norm: np.ndarray  # (dim,)
    qkv: ProjectionGroup  # dim -> q (n_head*hd), k (n_kv*hd), v (n_kv*hd)
    wo: ProjectionGroup  # n_head*hd -> dim
    ffn_norm: np.ndarray  # (dim,)
    gate_up: ProjectionGroup  # dim -> gate (n_ff), up (n_ff)
    down: ProjectionGroup  # n_ff -> dim


@register("llama")
class LlamaModel:
    Args = ModelArgs
    rope_neox = False

    def __init__(self, f: GGUFFile, n_batch: int, n_ctx: int):
        a = self.args = ModelArgs.from_gguf(f)
        q_dim, kv_dim = a.n_head * a.head_dim, a.n_kv_head * a.head_dim
        self.tok_embd = pack_linear(f, "token_embd.weight", a.dim, a.n_vocab)
        # tied embeddings: the output projection reuses the token embedding matrix
        if "output.weight" in f.tensors:
            self.output = pack_linear(f, "output.weight", a.dim, a.n_vocab)
        else:
            self.output = self.tok_embd
        self.output_norm = norm_weight(f, "output_norm.weight", a.dim)
        self.layers = []
        for i in range(a.n_layer):
            p = f"blk.{i}."
            self.layers.append(
                Layer(
                    attn_norm=norm_weight(f, p + "attn_norm.weight", a.dim),
                    qkv=ProjectionGroup(
                        f,
                        [p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight"],
                        a.dim,
                        [q_dim, kv_dim, kv_dim],
                    ),
                    wo=ProjectionGroup(f, [p + "attn_output.weight"], q_dim, [a.dim]),
                    ffn_norm=norm_weight(f, p + "ffn_norm.weight", a.dim),
                    gate_up=ProjectionGroup(
                        f, [p + "ffn_gate.weight", p + "ffn_up.weight"], a.dim, [a.n_ff, a.n_ff]
                    ),
                    down=ProjectionGroup(f, [p + "ffn_down.weight"], a.n_ff, [a.dim]),
                )
            )
        freq_factors = None
        if "rope_freqs.weight" in f.tensors:  # Llama 3.1 style per-dimension frequency factors
            freq_factors = norm_weight(f, "rope_freqs.weight", a.n_rot // 2)
        self.cos, self.sin = rope_tables(
            n_ctx, a.n_rot, a.rope_base, a.rope_freq_scale, freq_factors
        )  # (n_ctx, n_rot/2)
        groups = [g for layer in self.layers for g in (layer.qkv, layer.wo, layer.gate_up)]
        groups += [layer.down for layer in self.layers]
        self.scratch = Scratch(a, n_batch, n_ctx, groups)
        self.n_batch = n_batch

    @staticmethod
    def kv_layout(a: ModelArgs) -> list[KVLayout]:
        return [KVLayout(a.n_kv_head, a.head_dim, a.head_dim, 0)] * a.n_layer

    def forward(self, tokens: np.ndarray, positions: np.ndarray, cache) -> np.ndarray:
        """Run n tokens (n <= n_batch) at the given positions; returns the final normed
        hidden states (n, dim), a view valid until the next call."""
        a, s = self.args, self.scratch
        x, xn, q_out, attn_out, ff = s.views(len(tokens))
        eps, scale = a.norm_eps, np.float32(a.attn_scale)

        # token embeddings, first block's norm
        linear.get_rows(self.tok_embd, tokens, x)
        rmsnorm(x, self.layers[0].attn_norm, eps, xn)

        for i, layer in enumerate(self.layers):
            k_cache, v_cache = cache.layer(i)  # (n_kv, rows, hd) f16 bits each

            # attention: q/k/v projections, rope + cache store, masked softmax over the cache
            q, k, v = layer.qkv(xn, s.proj)
            prepare_qkv(
                q, k, v, positions, self.cos, self.sin, self.rope_neox,
                NO_WEIGHT, NO_WEIGHT, False, eps, ONE, q_out, k_cache, v_cache,
            )  # fmt: skip
            attention(q_out, k_cache, v_cache, positions, 0, scale, ZERO, attn_out, s.scores)
            (o,) = layer.wo(attn_out, s.proj)  # (n, dim)

            # residual, FFN norm
            add_rmsnorm(x, o, layer.ffn_norm, eps, xn)

            # SwiGLU feed-forward
            gate, up = layer.gate_up(xn, s.proj)  # (n, n_ff) each
            swiglu(gate, up, ff)
            (down,) = layer.down(ff, s.proj)  # (n, dim)

            # residual, next block's norm (or the final norm)
            next_norm = self.layers[i + 1].attn_norm if i + 1 < a.n_layer else self.output_norm
            add_rmsnorm(x, down, next_norm, eps, xn)

        return xn

    def logits(self, hidden: np.ndarray, out: np.ndarray) -> None:
        """out (m, n_vocab) = output projection of hidden (m, dim)."""
        project_logits(self.output, hidden, out)
