"""Plain numpy (float64) forward passes of the llama and gemma3 decoders, for tests.

Weights are dequantized with gguf-py (the llama.cpp project's reference); everything else is
the textbook maths, written independently of engine/ and kernels/.
"""

from __future__ import annotations

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


class ReferenceModel:
    def __init__(self, path):
        self.reader = GGUFReader(str(path))
        self.meta = {}
        for field in self.reader.fields.values():
            if not field.types:
                continue
            value = field.contents()
            self.meta[field.name] = value
        self.arch = self.meta["general.architecture"]
        self.tensors = {t.name: t for t in self.reader.tensors}
        self._cache: dict[str, np.ndarray] = {}

    def get(self, key, default=None):
        return self.meta.get(key.format(arch=self.arch), default)

    def weight(self, name) -> np.ndarray:
        """(rows, cols) float64 in numpy order: out = W @ x."""
        w = self._cache.get(name)
        if w is None:
            t = self.tensors[name]
            w = dequantize(t.data, t.tensor_type).astype(np.float64)
            w = w.reshape([int(d) for d in reversed(t.shape)])
            self._cache[name] = w
        return w

    def forward(self, tokens: list[int], ggml_rounding: bool = True) -> np.ndarray:
        """Logits (n, n_vocab) of every position for tokens at positions 0..n-1.

        ggml_rounding: round to float16 where llama.cpp does: keys and values (its KV cache),
        queries and softmax weights (its f16 attention products), GELU's input and output.
        """
        f16 = (
            (lambda a: a.astype(np.float16).astype(np.float64)) if ggml_rounding else (lambda a: a)
        )
        gemma = self.arch == "gemma3"
        dim = int(self.get("{arch}.embedding_length"))
        n_layer = int(self.get("{arch}.block_count"))
        n_head = int(self.get("{arch}.attention.head_count"))
        n_kv = int(self.get("{arch}.attention.head_count_kv", n_head))
        hd = int(self.get("{arch}.attention.key_length", dim // n_head))
        eps = float(self.get("{arch}.attention.layer_norm_rms_epsilon"))
        window = int(self.get("{arch}.attention.sliding_window", 0) or 0)
        base = float(self.get("{arch}.rope.freq_base", 10000.0))
        n = len(tokens)
        pos = np.arange(n)

        def norm(x, name):
            return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * self.weight(name)

        def rope(x, theta_base):  # x (n, heads, hd)
            half = hd // 2
            theta = pos[:, None] * theta_base ** (-np.arange(half) * 2.0 / hd)
            c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
            y = x.copy()
            if gemma:  # neox pairing
                a, b = x[..., :half], x[..., half:]
                y[..., :half], y[..., half:] = a * c - b * s, a * s + b * c
            else:
                a, b = x[..., 0::2], x[..., 1::2]
                y[..., 0::2], y[..., 1::2] = a * c - b * s, a * s + b * c
            return y

        x = self.weight("token_embd.weight")[tokens]  # (n, dim)
        if gemma:
            x = x * np.float64(np.float32(np.sqrt(dim)))
        for i in range(n_layer):
            p = f"blk.{i}."
            h = norm(x, p + "attn_norm.weight")
            q = (h @ self.weight(p + "attn_q.weight").T).reshape(n, n_head, hd)
            k = (h @ self.weight(p + "attn_k.weight").T).reshape(n, n_kv, hd)
            v = (h @ self.weight(p + "attn_v.weight").T).reshape(n, n_kv, hd)
            sliding = gemma and window and i % 6 < 5
            if gemma:
                q, k = norm(q, p + "attn_q_norm.weight"), norm(k, p + "attn_k_norm.weight")
            theta_base = 10000.0 if sliding else base
            q, k = rope(q, theta_base), rope(k, theta_base)
            scale = 1 / np.sqrt(hd)
            if gemma:  # llama.cpp scales Q itself after rope
                q, scale = q * scale, 1.0
            q, k, v = f16(q), f16(k), f16(v)
            mask = pos[None, :] <= pos[:, None]  # (query, key)
            if sliding:
                mask &= pos[:, None] - pos[None, :] < window
            out = np.empty((n, n_head, hd))
            for hh in range(n_head):
                kv = hh // (n_head // n_kv)
                s = q[:, hh] @ k[:, kv].T * scale
                s = np.where(mask, s, -np.inf)
                w = np.exp(s - s.max(-1, keepdims=True))
                out[:, hh] = f16(w / w.sum(-1, keepdims=True)) @ v[:, kv]
            o = out.reshape(n, -1) @ self.weight(p + "attn_output.weight").T
            if gemma:
                o = norm(o, p + "post_attention_norm.weight")
            x = x + o
            h = norm(x, p + "ffn_norm.weight")
            g = h @ self.weight(p + "ffn_gate.weight").T
            u = h @ self.weight(p + "ffn_up.weight").T
            if gemma:
                gh = f16(g)
                act = f16(0.5 * gh * (1 + np.tanh(np.sqrt(2 / np.pi) * (gh + 0.044715 * gh**3))))
                act = np.where(g <= -10, 0.0, np.where(g >= 10, g, act))
            else:
                act = g / (1 + np.exp(-g))
            d = (act * u) @ self.weight(p + "ffn_down.weight").T
            if gemma:
                d = norm(d, p + "post_ffw_norm.weight")
            x = x + d
        x = norm(x, "output_norm.weight")
        out_name = "output.weight" if "output.weight" in self.tensors else "token_embd.weight"
        return x @ self.weight(out_name).T
