"""`llamba inspect FILE`: a GGUF file summarized for people (or as JSON for machines)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.catalog import resolve_model
from ..engine.memory import estimate_memory
from ..formats.gguf_reader import GGUFFile
from ..formats.keys import FileType, Keys
from .errors import CLIError

DEFAULT_CTX = 4096  # llama.cpp's default context, capped by the model's own
ARRAY_PREVIEW = 6
STRING_PREVIEW = 120

# Keys under this prefix are shown in the tokenizer summary instead of the metadata list.
_TOKENIZER_PREFIX = "tokenizer."


def add_arguments(p) -> None:
    p.add_argument("file", help="a GGUF file, or a catalog model name")
    p.add_argument("--ctx", type=int, help="context length for the memory estimate")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--tensors", action="store_true", help="list every tensor (default: first 40)")


def _short(value: Any, limit: int = ARRAY_PREVIEW) -> Any:
    """A printable value: long arrays cut to their first items with a count."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list):
        head = [_short(v) for v in value[:limit]]
        return head + [f"… {len(value) - limit} more"] if len(value) > limit else head
    if isinstance(value, str) and len(value) > STRING_PREVIEW:
        return value[:STRING_PREVIEW] + f"… ({len(value)} chars)"
    return value


def _human(n: float, unit: str = "B") -> str:
    for prefix in ["", "Ki", "Mi", "Gi", "Ti"]:
        if abs(n) < 1024 or prefix == "Ti":
            return f"{n:.1f} {prefix}{unit}" if prefix else f"{int(n)} {unit}"
        n /= 1024
    return f"{n} {unit}"


def _count(n: int) -> str:
    for div, suffix in [(1e9, "B"), (1e6, "M"), (1e3, "K")]:
        if n >= div:
            return f"{n / div:.2f}{suffix}"
    return str(n)


def _token_text(tokens: list[str] | None, tid: Any) -> str:
    if tokens is None or not isinstance(tid, int) or not 0 <= tid < len(tokens):
        return ""
    return repr(tokens[tid])


def summarize(f: GGUFFile, n_ctx: int | None = None) -> dict[str, Any]:
    arch = f.architecture or "?"
    prefix = f"{arch}."
    hparams = {
        k[len(prefix) :]: _short(v.value) for k, v in f.fields.items() if k.startswith(prefix)
    }
    model_ctx = f.arch_get(Keys.LLM.CONTEXT_LENGTH)
    if n_ctx is None:
        n_ctx = min(DEFAULT_CTX, model_ctx) if isinstance(model_ctx, int) else DEFAULT_CTX

    tokens = f.get(Keys.Tokenizer.TOKENS)
    tokens = tokens if isinstance(tokens, list) else None
    template = f.get(Keys.Tokenizer.CHAT_TEMPLATE)
    tok = {
        "model": f.get(Keys.Tokenizer.MODEL),
        "pre": f.get(Keys.Tokenizer.PRE),
        "vocab_size": len(tokens) if tokens is not None else None,
        "merges": len(f.get(Keys.Tokenizer.MERGES) or []),
        "add_bos": f.get(Keys.Tokenizer.ADD_BOS),
        "add_eos": f.get(Keys.Tokenizer.ADD_EOS),
        "chat_template": f"{len(template)} chars" if isinstance(template, str) else None,
    }
    for key, label in [
        (Keys.Tokenizer.BOS_ID, "bos"),
        (Keys.Tokenizer.EOS_ID, "eos"),
        (Keys.Tokenizer.EOT_ID, "eot"),
        (Keys.Tokenizer.UNK_ID, "unk"),
        (Keys.Tokenizer.PAD_ID, "pad"),
    ]:
        tid = f.get(key)
        if tid is not None:
            tok[label] = f"{tid} {_token_text(tokens, tid)}".strip()

    metadata = {
        k: _short(v.value)
        for k, v in f.fields.items()
        if not k.startswith(prefix) and not k.startswith(_TOKENIZER_PREFIX)
    }
    n_params = sum(t.n_elements for t in f.tensors.values())
    n_bytes = sum(t.nbytes for t in f.tensors.values())
    by_type: Counter[str] = Counter()
    bytes_by_type: Counter[str] = Counter()
    params_by_type: Counter[str] = Counter()
    for t in f.tensors.values():
        by_type[t.type.name] += 1
        bytes_by_type[t.type.name] += t.nbytes
        params_by_type[t.type.name] += t.n_elements
    file_type = f.get(Keys.General.FILE_TYPE)
    try:
        file_type_name = (
            FileType(file_type).name.replace("MOSTLY_", "") if file_type is not None else None
        )
    except ValueError:
        file_type_name = str(file_type)
    mem = estimate_memory(f, n_ctx)
    return {
        "file": str(f.path),
        "file_size": f.file_size,
        "gguf_version": f.version,
        "alignment": f.alignment,
        "architecture": arch,
        "name": f.get(Keys.General.NAME),
        "file_type": file_type_name,
        "hyperparameters": hparams,
        "tokenizer": tok,
        "metadata": metadata,
        "n_tensors": len(f.tensors),
        "n_params": n_params,
        "tensor_bytes": n_bytes,
        "bits_per_weight": 8 * n_bytes / n_params if n_params else 0.0,
        "types": {
            name: {
                "tensors": by_type[name],
                "bytes": bytes_by_type[name],
                "params": params_by_type[name],
            }
            for name in sorted(by_type, key=lambda n: -bytes_by_type[n])
        },
        "tensors": [
            {"name": t.name, "type": t.type.name, "shape": list(t.shape), "bytes": t.nbytes}
            for t in f.tensors.values()
        ],
        "memory": {
            "n_ctx": mem.n_ctx,
            "weights": mem.weights,
            "kv_cache": mem.kv_cache,
            "compute": mem.compute,
            "total": mem.total,
        },
    }


def render(s: dict[str, Any], all_tensors: bool = False) -> str:
    out = []
    add = out.append
    add(
        f"{s['file']}  ({_human(s['file_size'])}, GGUF v{s['gguf_version']}, alignment {s['alignment']})"
    )
    add(
        f"model: {s['name'] or '?'}   architecture: {s['architecture']}   file type: {s['file_type']}"
    )
    add(
        f"parameters: {_count(s['n_params'])} ({s['n_params']:,})   tensor data: "
        f"{_human(s['tensor_bytes'])}   bits per weight: {s['bits_per_weight']:.2f}"
    )
    add("")
    add("hyperparameters:")
    for k, v in s["hyperparameters"].items():
        add(f"  {k:<40} {v}")
    add("")
    add("tokenizer:")
    for k, v in s["tokenizer"].items():
        if v is not None:
            add(f"  {k:<16} {v}")
    add("")
    add("metadata:")
    for k, v in s["metadata"].items():
        add(f"  {k:<40} {v}")
    add("")
    add("tensor types:")
    for name, t in s["types"].items():
        share = 100 * t["bytes"] / max(s["tensor_bytes"], 1)
        add(f"  {name:<6} {t['tensors']:>5} tensors  {_human(t['bytes']):>11}  {share:5.1f} %")
    add("")
    tensors = s["tensors"] if all_tensors else s["tensors"][:40]
    add(f"tensors ({s['n_tensors']}):")
    width = max((len(t["name"]) for t in tensors), default=10)
    for t in tensors:
        shape = " x ".join(str(d) for d in t["shape"])
        add(f"  {t['name']:<{width}}  {t['type']:<6} {shape:<22} {_human(t['bytes']):>11}")
    if len(tensors) < s["n_tensors"]:
        add(f"  … {s['n_tensors'] - len(tensors)} more (--tensors lists all)")
    add("")
    m = s["memory"]
    add(
        f"memory at context {m['n_ctx']}: {_human(m['total'])} = weights {_human(m['weights'])}"
        f" + KV cache {_human(m['kv_cache'])} + compute {_human(m['compute'])}"
    )
    return "\n".join(out)


def run(args) -> int:
    if args.ctx is not None and args.ctx <= 0:
        raise CLIError(f"--ctx must be positive, got {args.ctx}")
    path = Path(args.file)
    if not path.exists():
        path = resolve_model(args.file, pull_missing=False)
    with GGUFFile(path) as f:
        s = summarize(f, args.ctx)
    print(json.dumps(s, indent=2, default=str) if args.json else render(s, args.tensors))
    return 0
