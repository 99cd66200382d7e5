"""Pieces every architecture shares: weight loading, fused projections, the model interface.

A projection group is a set of linear layers that read the same input (Q/K/V, gate/up).
Neighbours stored in the same quant type are concatenated row-wise and packed as one matrix,
so one kernel call computes them all; a type change starts a new packed matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...formats.errors import FormatError
from ...formats.ggml_types import GGMLType
from ...formats.gguf_reader import GGUFFile
from ...formats.keys import Keys
from ...kernels import linear
from ...kernels.attention import score_scratch

FLOAT_WEIGHT_TYPES = (GGMLType.F32, GGMLType.F16, GGMLType.BF16)


class UnsupportedModelError(ValueError):
    """The file's architecture, a tensor type or a hyperparameter is not supported."""


def require_tensor(f: GGUFFile, name: str):
    info = f.tensors.get(name)
    if info is None:
        raise FormatError(f"{f.path.name}: tensor {name!r} is missing", path=str(f.path))
    return info


def norm_weight(f: GGUFFile, name: str, dim: int) -> np.ndarray:
    """A norm's weight vector as float32 (dim,), checked against the expected size."""
    info = require_tensor(f, name)
    values = np.asarray(f.tensor_array(name))
    if info.type not in FLOAT_WEIGHT_TYPES or values.size != dim:
        raise FormatError(
            f"{name}: expected {dim} float weights, got {info.type.name} {tuple(info.shape)}",
            path=str(f.path),
        )
    if info.type == GGMLType.BF16:
        values = (values.astype(np.uint32) << 16).view(np.float32)
    weight = np.ascontiguousarray(values.reshape(dim), dtype=np.float32)
    weight.flags.writeable = False  # as the file's own views: one compiled variant of each op
    return weight


def _raw_rows(f: GGUFFile, name: str) -> np.ndarray:
    """Rows of a weight in the form pack_weight takes: blocks as uint8, float types as bytes."""
    require_tensor(f, name)
    return f.tensor_bytes(name)  # (n_out, row_bytes) for every type


def pack_linear(f: GGUFFile, name: str, n_in: int, n_out: int) -> linear.PackedWeight:
    """One weight matrix (n_out rows of n_in), packed for the kernels."""
    info = require_tensor(f, name)
    if tuple(info.shape) != (n_in, n_out):
        raise FormatError(
            f"{name}: expected shape {(n_in, n_out)}, got {tuple(info.shape)}", path=str(f.path)
        )
    return linear.pack_weight(_raw_rows(f, name), info.type, n_in)


class ProjectionGroup:
    """Linear layers sharing one input (n, n_in); same-typed neighbours packed as one matrix.

    Calling it runs one kernel per packed matrix and returns one (n, n_out_i) view per member.
    Outputs land in a caller-owned flat float32 scratch of n_batch * sum(n_out) values, each
    packed matrix's output contiguous (n, its n_out) inside it.
    """

    def __init__(self, f: GGUFFile, names: list[str], n_in: int, n_outs: list[int]):
        self.n_in = n_in
        self.n_out_total = sum(n_outs)
        runs: list[list[int]] = []  # member indices per packed matrix
        for i, name in enumerate(names):
            info = require_tensor(f, name)
            if tuple(info.shape) != (n_in, n_outs[i]):
                raise FormatError(
                    f"{name}: expected shape {(n_in, n_outs[i])}, got {tuple(info.shape)}",
                    path=str(f.path),
                )
            if runs and f.tensors[names[runs[-1][0]]].type == info.type:
                runs[-1].append(i)
            else:
                runs.append([i])
        self.weights: list[linear.PackedWeight] = []
        self.members: list[list[tuple[int, int]]] = []  # per matrix: (start, stop) columns
        for run in runs:
            gtype = f.tensors[names[run[0]]].type
            raw = [_raw_rows(f, names[i]) for i in run]
            rows = raw[0] if len(raw) == 1 else np.concatenate(raw, axis=0)
            self.weights.append(linear.pack_weight(rows, gtype, n_in))
            bounds, start = [], 0
            for i in run:
                bounds.append((start, start + n_outs[i]))
                start += n_outs[i]
            self.members.append(bounds)
        self._views: dict[tuple[int, int], list] = {}  # (id(scratch), n) -> cached outputs
        self._runners = [linear.one_token_runner(w) for w in self.weights]  # decode, unchecked
        self._checked = False  # whether a checked one-token call has passed

    def _outputs(self, scratch: np.ndarray, n: int):
        key = (id(scratch), n)
        cached = self._views.get(key)
        if cached is None:
            cached, offset = [], 0
            for w, run, bounds in zip(self.weights, self._runners, self.members, strict=True):
                out = scratch[offset : offset + n * w.n_out].reshape(n, w.n_out)  # (n, n_out)
                offset += n * w.n_out
                cached.append((w, run, out, [out[:, a:b] for a, b in bounds]))
            self._views[key] = cached
        return cached

    def __call__(self, x: np.ndarray, scratch: np.ndarray) -> list[np.ndarray]:
        """x: (n, n_in) C-contiguous float32 -> list of (n, n_out_i) views into scratch."""
        n = x.shape[0]
        views = []
        for w, run, out, members in self._outputs(scratch, n):
            if n == 1 and self._checked:
                run(x, out)
            else:  # checked: prompt batches, and the first token, which vouches for the rest
                linear.matmul(w, x, out)
            views.extend(members)
        self._checked = self._checked or n == 1
        return views

    @property
    def nbytes(self) -> int:
        return sum(w.nbytes for w in self.weights)


def scratch_for(groups: list[ProjectionGroup], n_batch: int) -> np.ndarray:
    """One flat buffer large enough for any of the groups' outputs at n_batch tokens."""
    return np.empty(n_batch * max(g.n_out_total for g in groups), dtype=np.float32)


@dataclass(frozen=True)
class KVLayout:
    """What one layer keeps in the KV cache."""

    n_kv_head: int
    head_dim_k: int
    head_dim_v: int
    window: int  # 0: attends to the whole context; else the sliding window in tokens


def same_for_all_layers(value, n_layer: int, what: str) -> int:
    """A hyperparameter that may be stored per layer but must not vary between layers."""
    values = per_layer(value, n_layer, what)
    if len(set(values)) != 1:
        raise UnsupportedModelError(f"{what} differs between layers")
    return values[0]


def attention_shape(f: GGUFFile) -> tuple[int, int, int, int, int]:
    """(n_layer, dim, n_head, n_kv_head, head_dim) from the metadata, checked."""
    n_layer = int(f.arch_get(Keys.LLM.BLOCK_COUNT))
    dim = int(f.arch_get(Keys.LLM.EMBEDDING_LENGTH))
    n_head = same_for_all_layers(f.arch_get(Keys.Attention.HEAD_COUNT), n_layer, "head_count")
    kv = f.arch_get(Keys.Attention.HEAD_COUNT_KV, n_head)
    n_kv_head = same_for_all_layers(kv, n_layer, "head_count_kv")
    head_dim = int(f.arch_get(Keys.Attention.KEY_LENGTH, dim // n_head))
    if int(f.arch_get(Keys.Attention.VALUE_LENGTH, head_dim)) != head_dim:
        raise UnsupportedModelError("key and value head sizes differ")
    if n_head % n_kv_head:
        raise UnsupportedModelError(f"{n_head} heads do not group over {n_kv_head} KV heads")
    return n_layer, dim, n_head, n_kv_head, head_dim


def per_layer(value, n_layer: int, what: str) -> list[int]:
    """A hyperparameter given once or per layer (GGUF arrays), as a list of n_layer ints."""
    if value is None:
        raise UnsupportedModelError(f"missing hyperparameter {what}")
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) != n_layer:
            raise UnsupportedModelError(f"{what} has {len(value)} entries for {n_layer} layers")
        return [int(v) for v in value]
    return [int(value)] * n_layer


class Scratch:
    """Activation buffers of a decoder for up to n_batch tokens, allocated once."""

    def __init__(self, args, n_batch: int, n_ctx: int, groups: list[ProjectionGroup]):
        a = args
        self.x = np.empty((n_batch, a.dim), np.float32)  # (n, dim) residual stream
        self.xn = np.empty((n_batch, a.dim), np.float32)  # (n, dim) normed input of a block
        self.q = np.empty((n_batch, a.n_head, a.head_dim), np.float32)  # (n, heads, hd) roped
        self.attn = np.empty((n_batch, a.n_head * a.head_dim), np.float32)  # (n, heads*hd)
        self.ff = np.empty((n_batch, a.n_ff), np.float32)  # (n, n_ff) gated activation
        self.proj = scratch_for(groups, n_batch)  # flat: outputs of the current projection
        self.scores = score_scratch(n_ctx)  # (threads, n_ctx) attention scores
        self._views: dict[int, tuple] = {}

    def views(self, n: int):
        """(x, xn, q, attn, ff) for n tokens, C-contiguous views made once per n."""
        v = self._views.get(n)
        if v is None:
            v = self._views[n] = (self.x[:n], self.xn[:n], self.q[:n], self.attn[:n], self.ff[:n])
        return v


def project_logits(output: linear.PackedWeight, hidden: np.ndarray, out: np.ndarray) -> None:
    """out (m, n_vocab) = output projection of hidden (m, dim)."""
    if hidden.shape[0] == 1:
        linear.matvec(output, hidden[0], out[0])
    else:
        linear.matmul(output, np.ascontiguousarray(hidden), out)
