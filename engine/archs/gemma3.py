"""Gemma 3 text decoder (arch `gemma3`).

Differences from llama, as llama.cpp's gemma3 graph and transformers' Gemma3 implement them:
- token embeddings scaled by sqrt(dim);
- sandwich norms: RMS norm before and after attention and before and after the FFN;
- QK-norm: per-head RMS norm of Q and K before rope;
- sliding-window attention on all but every `period`-th layer (period 6 unless the file says),
  those local layers with their own rope base (freq_base_swa, default 10000);
- GELU (tanh) gated FFN; rope in the NeoX pairing; output tied to the embedding.
Norm weights are used as stored: the GGUF converter already added Gemma's "+1".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...formats.gguf_reader import GGUFFile
from ...formats.keys import Keys
from ...kernels import linear
from ...kernels.attention import attention, prepare_qkv
from ...kernels.ops_act import geglu, softcap
from ...kernels.ops_norm import postnorm_add_rmsnorm, rmsnorm
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

DEFAULT_SWA_PERIOD = 6
DEFAULT_ROPE_BASE_SWA = 10000.0
LAYERS_27B = 62
ONE, ZERO = (
    np.float32(1.0),
    np.float32(0.0),
)  # llama.cpp scales the 27B model's attention by its embedding per head


@dataclass(frozen=True)
class ModelArgs:
    n_layer: int
    dim: int
    n_ff: int
    n_head: int
    n_kv_head: int
    head_dim: int
    n_vocab: int
    n_ctx_train: int
    norm_eps: float
    rope_base: float  # global layers
    rope_base_swa: float  # sliding-window layers
    window: int  # 0: no sliding window
    sliding: tuple[bool, ...]  # per layer: uses the window
    attn_scale: float
    final_softcap: float  # 0: none

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> ModelArgs:
        n_layer, dim, n_head, n_kv_head, head_dim = attention_shape(f)
        if int(f.arch_get(Keys.Rope.DIMENSION_COUNT, head_dim)) != head_dim:
            raise UnsupportedModelError("partial rotary embedding in gemma3")

        window = int(f.arch_get(Keys.Attention.SLIDING_WINDOW, 0) or 0)
        pattern = f.arch_get(Keys.Attention.SLIDING_WINDOW_PATTERN, DEFAULT_SWA_PERIOD)
        if isinstance(pattern, (list, tuple, np.ndarray)):  # one flag per layer
            sliding = tuple(bool(v) for v in pattern)
            if len(sliding) != n_layer:
                raise UnsupportedModelError("sliding_window_pattern has the wrong length")
        else:  # a period: all but the last layer of each period slide
            period = int(pattern)
            sliding = tuple(period > 0 and i % period < period - 1 for i in range(n_layer))
        if window <= 0:
            sliding = (False,) * n_layer

        scale = f.arch_get(Keys.Attention.SCALE)
        if not scale:
            scale = (dim / n_head if n_layer == LAYERS_27B else head_dim) ** -0.5
        # capped in both of llama.cpp's gemma3 graphs (sliding window or not), as transformers does
        cap = float(f.arch_get(Keys.LLM.FINAL_LOGIT_SOFTCAPPING, 0) or 0)
        return cls(
            n_layer=n_layer,
            dim=dim,
            n_ff=same_for_all_layers(f.arch_get(Keys.LLM.FEED_FORWARD_LENGTH), n_layer, "ffn"),
            n_head=n_head,
            n_kv_head=n_kv_head,
            head_dim=head_dim,
            n_vocab=int(require_tensor(f, "token_embd.weight").shape[1]),
            n_ctx_train=int(f.arch_get(Keys.LLM.CONTEXT_LENGTH, 8192)),
            norm_eps=float(f.arch_get(Keys.Attention.LAYERNORM_RMS_EPS, 1e-6)),
            rope_base=float(f.arch_get(Keys.Rope.FREQ_BASE, 1_000_000.0)),
            rope_base_swa=float(f.arch_get(Keys.Rope.FREQ_BASE_SWA, DEFAULT_ROPE_BASE_SWA)),
            window=window,
            sliding=sliding,
            attn_scale=float(scale),
            final_softcap=cap,
        )


@dataclass
class Layer:
    attn_norm: np.ndarray  # (dim,)
    qkv: ProjectionGroup  # dim -> q (n_head*hd), k (n_kv*hd), v (n_kv*hd)
    q_norm: np.ndarray  # (hd,)
    k_norm: np.ndarray  # (hd,)
    wo: ProjectionGroup  # n_head*hd -> dim
    post_attn_norm: np.ndarray  # (dim,)
    ffn_norm: np.ndarray  # (dim,)
    gate_up: ProjectionGroup  # dim -> gate (n_ff), up (n_ff)
    down: ProjectionGroup  # n_ff -> dim
    post_ffn_norm: np.ndarray  # (dim,)
    window: int  # 0 on global layers
    cos: np.ndarray  # (n_ctx, hd/2) rope table of this layer's base
    sin: np.ndarray  # (n_ctx, hd/2)


@register("gemma3")
class Gemma3Model:
    Args = ModelArgs

    def __init__(self, f: GGUFFile, n_batch: int, n_ctx: int):
        a = self.args = ModelArgs.from_gguf(f)
        q_dim, kv_dim, hd = a.n_head * a.head_dim, a.n_kv_head * a.head_dim, a.head_dim
        self.tok_embd = pack_linear(f, "token_embd.weight", a.dim, a.n_vocab)
        if "output.weight" in f.tensors:
            self.output = pack_linear(f, "output.weight", a.dim, a.n_vocab)
        else:
            self.output = self.tok_embd  # tied
        self.output_norm = norm_weight(f, "output_norm.weight", a.dim)
        self.embed_scale = np.float32(math.sqrt(a.dim))
        self.q_scale = np.float32(a.attn_scale)  # applied to Q after rope, as llama.cpp does
        global_rope = rope_tables(n_ctx, hd, a.rope_base)  # (n_ctx, hd/2) cos, sin
        local_rope = rope_tables(n_ctx, hd, a.rope_base_swa)
        self.layers = []
        for i in range(a.n_layer):
            p = f"blk.{i}."
            cos, sin = local_rope if a.sliding[i] else global_rope
            self.layers.append(
                Layer(
                    attn_norm=norm_weight(f, p + "attn_norm.weight", a.dim),
                    qkv=ProjectionGroup(
                        f,
                        [p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight"],
                        a.dim,
                        [q_dim, kv_dim, kv_dim],
                    ),
                    q_norm=norm_weight(f, p + "attn_q_norm.weight", hd),
                    k_norm=norm_weight(f, p + "attn_k_norm.weight", hd),
                    wo=ProjectionGroup(f, [p + "attn_output.weight"], q_dim, [a.dim]),
                    post_attn_norm=norm_weight(f, p + "post_attention_norm.weight", a.dim),
                    ffn_norm=norm_weight(f, p + "ffn_norm.weight", a.dim),
                    gate_up=ProjectionGroup(
                        f, [p + "ffn_gate.weight", p + "ffn_up.weight"], a.dim, [a.n_ff, a.n_ff]
                    ),
                    down=ProjectionGroup(f, [p + "ffn_down.weight"], a.n_ff, [a.dim]),
                    post_ffn_norm=norm_weight(f, p + "post_ffw_norm.weight", a.dim),
                    window=a.window if a.sliding[i] else 0,
                    cos=cos,
                    sin=sin,
                )
            )
        groups = [g for layer in self.layers for g in (layer.qkv, layer.wo, layer.gate_up)]
        groups += [layer.down for layer in self.layers]
        self.scratch = Scratch(a, n_batch, n_ctx, groups)
        self.n_batch = n_batch

    @staticmethod
    def kv_layout(a: ModelArgs) -> list[KVLayout]:
        return [
            KVLayout(a.n_kv_head, a.head_dim, a.head_dim, a.window if sliding else 0)
            for sliding in a.sliding
        ]

    def forward(self, tokens: np.ndarray, positions: np.ndarray, cache) -> np.ndarray:
        """Run n tokens (n <= n_batch) at the given positions; returns the final normed
        hidden states (n, dim), a view valid until the next call."""
        a, s = self.args, self.scratch
        x, xn, q_out, attn_out, ff = s.views(len(tokens))
        eps = a.norm_eps

        # scaled token embeddings, first block's norm
        linear.get_rows(self.tok_embd, tokens, x)
        x *= self.embed_scale
        rmsnorm(x, self.layers[0].attn_norm, eps, xn)

        for i, layer in enumerate(self.layers):
            k_cache, v_cache = cache.layer(i)  # (n_kv, rows, hd) f16 bits each

            # attention: projections, QK-norm + rope + cache store, (sliding) masked softmax
            q, k, v = layer.qkv(xn, s.proj)
            prepare_qkv(
                q, k, v, positions, layer.cos, layer.sin, True,
                layer.q_norm, layer.k_norm, True, eps, self.q_scale, q_out, k_cache, v_cache,
            )  # fmt: skip
            attention(
                q_out, k_cache, v_cache, positions, layer.window, ONE, ZERO, attn_out, s.scores
            )
            (o,) = layer.wo(attn_out, s.proj)  # (n, dim)

            # post-attention norm, residual, FFN norm
            postnorm_add_rmsnorm(x, o, layer.post_attn_norm, layer.ffn_norm, eps, xn)

            # GELU-gated feed-forward
            gate, up = layer.gate_up(xn, s.proj)  # (n, n_ff) each
            geglu(gate, up, ff)
            (down,) = layer.down(ff, s.proj)  # (n, dim)

            # post-FFN norm, residual, next block's norm (or the final norm)
            next_norm = self.layers[i + 1].attn_norm if i + 1 < a.n_layer else self.output_norm
            postnorm_add_rmsnorm(x, down, layer.post_ffn_norm, next_norm, eps, xn)

        return xn

    def logits(self, hidden: np.ndarray, out: np.ndarray) -> None:
        """out (m, n_vocab) = output projection of hidden (m, dim)."""
        project_logits(self.output, hidden, out)
        if self.args.final_softcap:
            softcap(out, np.float32(self.args.final_softcap))
