"""Fuzzing the GGUF reader: mutated and truncated valid files either read or raise
FormatError, quickly; never another exception, a hang or a huge allocation.

Bases: a small synthetic file with many value and tensor types, and miniatures of both real
models (all their metadata keys with long arrays cut to 64 entries, one tensor of each type
cut to two rows). Mutations: byte flips, boundary values written over the counts, lengths,
types, dims and offsets that gguf-py finds in the base, splices, inserted and deleted ranges,
truncation. A file that reads is also copied with copy_gguf and read back: the writer must
accept whatever the reader accepts, and the copy must hold the same values and bytes.
"""

from __future__ import annotations

import contextlib
import math
import struct
import time
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llamba.formats import FormatError, GGMLType, GGUFValueType, tensor_nbytes
from llamba.formats.gguf_reader import GGUFFile
from llamba.formats.gguf_writer import GGUFWriter, copy_gguf

VT = GGUFValueType
MAX_SECONDS = 1.0  # to read and use one mutant; a healthy read takes about a millisecond
MAX_COPY_ALIGNMENT = 4096  # a valid tensor-less file may declare 2**31: no 2 GB copies

FUZZ_SETTINGS = dict(
    deadline=5000,  # ms per example, including the copy's fsync; still catches a hang
    derandomize=True,  # the same examples on every run
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

BOUNDARY_VALUES = [
    0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 15, 16, 31, 32, 33, 39, 63, 64, 65, 255, 256,
    2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 2**62, 2**63 - 1, 2**63,
    2**64 - 32, 2**64 - 1,
]  # fmt: skip


# -- base files ------------------------------------------------------------------------------


def write_synthetic(path: Path) -> None:
    rng = np.random.default_rng(5)
    with GGUFWriter(path) as w:
        w.add("general.architecture", "fuzz")
        w.add("general.alignment", 32)
        for vt, value in [
            (VT.UINT8, 200), (VT.INT8, -100), (VT.UINT16, 60000), (VT.INT16, -30000),
            (VT.UINT32, 4_000_000_000), (VT.INT32, -2_000_000_000), (VT.FLOAT32, 0.25),
            (VT.BOOL, True), (VT.UINT64, 2**63 + 5), (VT.INT64, -(2**62)), (VT.FLOAT64, 1e-300),
        ]:  # fmt: skip
            w.add(f"scalar.{vt.name.lower()}", value, vt)
        w.add("string.ascii", "llama")
        w.add("string.unicode", "héllo 日本 🦙")
        w.add("array.u8", np.arange(5, dtype=np.uint8))
        w.add("array.f32", np.linspace(-1, 1, 6, dtype=np.float32))
        w.add("array.i64", np.array([-1, 2**40], np.int64))
        w.add("array.bool", np.array([True, False, True]))
        w.add("array.strings", ["<s>", "</s>", "", "ĠĠ"])
        w.add("array.empty", np.array([], np.uint32))
        w.add("array.nested", [[1, 2], [3], ["x", "yz"]])
        w.add("scalar.last", 1, VT.UINT32)
        tensors = [
            ("t.f32", (8, 2), GGMLType.F32),
            ("t.f16", (16,), GGMLType.F16),
            ("t.bf16", (4, 2, 2), GGMLType.BF16),
            ("t.i8", (3,), GGMLType.I8),
            ("t.q8_0", (32, 3), GGMLType.Q8_0),
            ("t.q4_k", (256, 1, 1, 2), GGMLType.Q4_K),
        ]
        for name, shape, gtype in tensors:
            w.add_tensor_info(name, shape, gtype)
        for name, shape, gtype in tensors:
            w.write_tensor_data(name, random_tensor_bytes(gtype, shape, rng))


def random_tensor_bytes(gtype: GGMLType, shape: tuple[int, ...], rng) -> np.ndarray:
    return rng.integers(0, 256, tensor_nbytes(gtype, shape), dtype=np.uint8)


def write_miniature(src: Path, dst: Path, n_items: int = 64, n_rows: int = 2) -> None:
    """A small file with a real model's metadata (long arrays cut to n_items entries) and one
    tensor of each (type, rank) cut to its first n_rows rows."""
    with GGUFFile(src) as f, GGUFWriter(dst) as w:
        for field in f.fields.values():
            value = field.value
            if field.type == VT.ARRAY:
                value = value[:n_items]
            w.add(field.key, value, field.type, field.elem_type)
        picked = {}
        for name, t in f.tensors.items():
            picked.setdefault((t.type, len(t.shape)), name)
        for name in picked.values():
            t = f.tensors[name]
            shape = t.shape if len(t.shape) == 1 else (t.shape[0], min(n_rows, t.shape[1]))
            w.add_tensor_info(name, shape, t.type)
        for name in picked.values():
            rows = f.tensor_bytes(name)
            w.write_tensor_data(name, rows if len(f.tensors[name].shape) == 1 else rows[:n_rows])


def number_slots(path: Path) -> list[tuple[int, int]]:
    """(offset, width) of every integer gguf-py parses in the header: counts, lengths, value
    and element types, dims, tensor types and offsets (and small integer values)."""
    r = gguf.GGUFReader(path)
    base = r.data.ctypes.data
    parts = [p for f in r.fields.values() for p in f.parts]
    parts += [p for t in r.tensors for p in t.field.parts]
    slots = set()
    for p in parts:
        if p.dtype.kind in "ui" and p.dtype.itemsize in (4, 8):
            start = p.ctypes.data - base
            slots |= {(start + i * p.dtype.itemsize, p.dtype.itemsize) for i in range(p.size)}
    return sorted(slots)


class Base:
    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        self.slots = number_slots(path)
        self.work = path.parent / f"{path.stem}.mutant.gguf"
        self.copy = path.parent / f"{path.stem}.copy.gguf"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Base:
    path = tmp_path_factory.mktemp("fuzz") / "synthetic.gguf"
    write_synthetic(path)
    return Base(path)


@pytest.fixture(scope="module")
def miniatures(tmp_path_factory, smollm2_path, gemma3_path) -> list[Base]:
    folder = tmp_path_factory.mktemp("fuzz_real")
    bases = []
    for src in (smollm2_path, gemma3_path):
        dst = folder / f"mini_{Path(src).stem}.gguf"
        write_miniature(Path(src), dst)
        bases.append(Base(dst))
    return bases


# -- mutations -------------------------------------------------------------------------------


@st.composite
def mutate(draw, base: Base) -> bytes:
    """1 to 4 mutations, then maybe a truncation. Kinds and values come from hypothesis;
    positions from a seeded uniform generator, as hypothesis leans to small integers
    and nearly every mutant would then die at the magic or the counts."""
    rnd = draw(st.randoms(use_true_random=True))  # seeded by hypothesis
    buf = bytearray(base.data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "number", "number", "splice", "insert", "delete"]))
        size = len(buf)
        if size == 0:
            break
        pos = rnd.randrange(size)
        if kind == "flip":
            buf[pos] ^= draw(st.integers(1, 255))
        elif kind == "number":  # a boundary value over a count, length, type, dim or offset
            offset, width = base.slots[rnd.randrange(len(base.slots))]
            value = draw(st.sampled_from([*BOUNDARY_VALUES, size, size + 1, size - offset]))
            if offset + width <= size:
                fmt = "<Q" if width == 8 else "<I"
                struct.pack_into(fmt, buf, offset, value % 2 ** (8 * width))
        elif kind == "splice":  # overwrite with a chunk from elsewhere in the file
            src = rnd.randrange(size)
            chunk = buf[src : src + draw(st.integers(1, 64))]
            buf[pos : pos + len(chunk)] = chunk
        elif kind == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=24))
        else:
            del buf[pos : pos + draw(st.integers(1, 64))]
    if draw(st.booleans()):
        buf = buf[: rnd.randrange(len(buf) + 1)]
    return bytes(buf)


# -- the property ------------------------------------------------------------------------------


def same(a, b) -> bool:
    """Equal values and types; NaN equals NaN (a float32 NaN's payload may be quieted)."""
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
        )
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b


def touch(f: GGUFFile) -> None:
    """Use everything a loader would: metadata, typed getters, every tensor view."""
    _ = f.metadata, f.architecture, repr(f)
    for key in list(f.fields)[:8]:
        for getter in (f.get_int, f.get_float, f.get_str, f.get_bool, f.get_array):
            with contextlib.suppress(FormatError):  # a wrong type for this getter is fine
                getter(key)
    for name, t in f.tensors.items():
        raw = f.tensor_bytes(name).reshape(-1)
        assert raw.size == t.nbytes and t.offset + t.nbytes <= f.file_size
        _ = int(raw[0]) + int(raw[-1])  # first and last byte are mapped
        assert f.tensor_array(name).nbytes == t.nbytes


def check_copy(f: GGUFFile, dst: Path) -> None:
    copy_gguf(f, dst)
    with GGUFFile(dst) as g:
        assert list(g.fields) == list(f.fields)
        for key, field in f.fields.items():
            other = g.fields[key]
            assert (other.type, other.elem_type) == (field.type, field.elem_type), key
            assert same(field.value, other.value), key
        assert list(g.tensors) == list(f.tensors)
        for name, t in f.tensors.items():
            assert (g.tensors[name].shape, g.tensors[name].type) == (t.shape, t.type)
            assert np.array_equal(g.tensor_bytes(name), f.tensor_bytes(name)), name


def read_or_reject(data: bytes, base: Base) -> None:
    """Reading succeeds or raises FormatError with an offset inside the file, in bounded
    time (the read alone: the copy's fsync depends on the disk, not on the reader)."""
    base.work.write_bytes(data)
    start = time.perf_counter()
    try:
        f = GGUFFile(base.work)
    except FormatError as e:
        assert isinstance(e, ValueError)
        assert e.offset is not None and 0 <= e.offset <= len(data), str(e)
        assert time.perf_counter() - start < MAX_SECONDS
        return
    with f:
        touch(f)
        assert time.perf_counter() - start < MAX_SECONDS
        if f.alignment <= MAX_COPY_ALIGNMENT:
            check_copy(f, base.copy)


def test_bases_read_and_copy(synthetic):
    read_or_reject(synthetic.data, synthetic)
    with GGUFFile(synthetic.path) as f:
        assert len(f.tensors) == 6 and f.get("array.nested")[2] == ["x", "yz"]
    assert len(synthetic.slots) > 100


@settings(max_examples=3000, **FUZZ_SETTINGS)
@given(data=st.data())
def test_mutated_synthetic_file(synthetic, data):
    read_or_reject(data.draw(mutate(synthetic)), synthetic)


def test_every_number_with_extreme_values(synthetic):
    """Deterministic sweep: each count, length, type, dim and offset in turn set to values
    that break naive readers (zero, all ones, sign bit, the file size)."""
    size = len(synthetic.data)
    for offset, width in synthetic.slots:
        for value in (0, 2**32 - 1, 2**63, 2**64 - 1, size, size - offset):
            buf = bytearray(synthetic.data)
            fmt = "<Q" if width == 8 else "<I"
            struct.pack_into(fmt, buf, offset, value % 2 ** (8 * width))
            read_or_reject(bytes(buf), synthetic)


@pytest.mark.slow
def test_miniatures_keep_real_metadata(miniatures, smollm2_path, gemma3_path):
    for base, src in zip(miniatures, (smollm2_path, gemma3_path), strict=True):
        with GGUFFile(base.path) as mini, GGUFFile(src) as real:
            assert list(mini.fields) == list(real.fields)
            assert {t.type for t in mini.tensors.values()} == {
                t.type for t in real.tensors.values()
            }
        read_or_reject(base.data, base)


@pytest.mark.slow
@settings(max_examples=1000, **FUZZ_SETTINGS)
@given(data=st.data())
def test_mutated_real_model_miniature(miniatures, data):
    base = data.draw(st.sampled_from(miniatures))
    read_or_reject(data.draw(mutate(base)), base)
