"""Malformed GGUF files: each damage raises one FormatError naming a byte offset, fast and
without allocating more than the file.

A small valid file is written with llamba's writer; every damaged variant edits its bytes at
offsets found by parsing it with gguf-py (the oracle), not at hard-coded positions.
"""

from __future__ import annotations

import os
import re
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import pytest

from llamba.formats import FormatError, GGMLType, GGUFValueType
from llamba.formats.gguf_reader import GGUFFile
from llamba.formats.gguf_writer import GGUFWriter

VT = GGUFValueType
U64_MAX = 2**64 - 1
MAX_SECONDS = 1.0  # per damaged file; a healthy parse of these files takes milliseconds
MAX_PEAK_BYTES = 256 << 10  # traced memory per damaged file (a healthy parse peaks ~10 KB)


def write_sample(path: Path, alignment_key: str = "general.alignment") -> None:
    """A small file with one value of most kinds and three tensors; the last tensor ends on
    the alignment, so the file has no trailing padding and every truncation damages it."""
    rng = np.random.default_rng(3)
    with GGUFWriter(path) as w:
        w.add("general.architecture", "test")
        if alignment_key == "general.alignment":
            w.add(alignment_key, 32, VT.UINT32)
        else:  # same key length, UINT64: renamed to general.alignment by a test
            w.add(alignment_key, 32, VT.UINT64)
        w.add("test.count", 7, VT.UINT32)
        w.add("test.scale", 0.5, VT.FLOAT32)
        w.add("test.flag", True)
        w.add("test.flags", np.array([True, False, True]))
        w.add("test.words", ["alpha", "beta", "γάμμα"])
        w.add("test.ids", np.array([1, 2, 3, 4], np.int32))
        w.add("test.nested", [[1, 2], [3]])
        w.add("dup.one", 1, VT.UINT8)
        w.add("dup.two", 2, VT.UINT8)
        w.add_tensor_info("t.one", (4, 2), GGMLType.F32)  # 32 bytes
        w.add_tensor_info("t.two", (64, 2), GGMLType.Q8_0)  # 136 bytes, padded to 160
        w.add_tensor_info("t.six", (16,), GGMLType.F16)  # 32 bytes, ends the file
        w.write_tensor_data("t.one", rng.standard_normal((2, 4)).astype(np.float32))
        w.write_tensor_data("t.two", rng.integers(0, 256, (2, 68), dtype=np.uint8))
        w.write_tensor_data("t.six", rng.standard_normal(16).astype(np.float16))


class Layout:
    """Byte offsets of every part of a GGUF file, as gguf-py's reader finds them."""

    def __init__(self, path: Path):
        self.reader = gguf.GGUFReader(path)
        self._base = self.reader.data.ctypes.data
        self.size = path.stat().st_size

    def _off(self, part: np.ndarray) -> int:
        return part.ctypes.data - self._base

    def kv(self, key: str, part: int) -> int:
        """Offset of part `part` of entry `key`: 0 key length, 1 key bytes, 2 value type,
        3 value (or string length, or array element type), 4 array length, 5… elements."""
        return self._off(self.reader.fields[key].parts[part])

    def kv_span(self, key: str) -> tuple[int, int]:
        parts = self.reader.fields[key].parts
        return self._off(parts[0]), max(self._off(p) + p.nbytes for p in parts)

    def _tensor(self, name: str):
        return next(t for t in self.reader.tensors if t.name == name)

    def ti(self, name: str, part: int) -> int:
        """Offset of part `part` of a tensor info: 0 name length, 1 name bytes, 2 n_dims,
        3 dims, 4 type, 5 data offset."""
        return self._off(self._tensor(name).field.parts[part])

    def ti_span(self, name: str) -> tuple[int, int]:
        parts = self._tensor(name).field.parts
        return self._off(parts[0]), max(self._off(p) + p.nbytes for p in parts)

    def rel_offset(self, name: str) -> int:
        return int(self._tensor(name).field.parts[5][0])

    @property
    def counts(self) -> tuple[int, int]:
        """Offsets of the tensor count and of the metadata entry count."""
        fields = self.reader.fields
        return fields["GGUF.tensor_count"].offset, fields["GGUF.kv_count"].offset

    @property
    def kv_end(self) -> int:
        return max(self.kv_span(k)[1] for k in self.reader.fields if not k.startswith("GGUF."))

    @property
    def info_end(self) -> int:
        return max(self.ti_span(t.name)[1] for t in self.reader.tensors)

    @property
    def data_ends(self) -> list[tuple[int, int]]:
        return [(t.data_offset, t.data_offset + t.n_bytes) for t in self.reader.tensors]


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[bytes, Layout]:
    path = tmp_path_factory.mktemp("sample") / "sample.gguf"
    write_sample(path)
    return path.read_bytes(), Layout(path)


def read_damaged(path: Path) -> FormatError:
    """Read a damaged file: it must raise FormatError (anything else propagates and fails the
    test), quickly, with little memory, and name its byte offset in the message."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with GGUFFile(path) as f:
            pytest.fail(f"no error for a damaged file: {f!r}")
    except FormatError as e:
        err = e
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < MAX_SECONDS, f"took {elapsed:.2f} s"
    assert peak < MAX_PEAK_BYTES, f"allocated {peak} bytes"
    assert isinstance(err, ValueError)
    assert err.offset is not None, str(err)
    m = re.search(r"at byte (\d+)", str(err))
    assert m and int(m.group(1)) == err.offset, str(err)
    assert 0 <= err.offset <= path.stat().st_size, str(err)
    return err


def add_to_count(lay: Layout, buf: bytearray, which: int, delta: int) -> None:
    """which: 0 the tensor count, 1 the metadata entry count."""
    offset = lay.counts[which]
    put(buf, offset, "<Q", struct.unpack_from("<Q", buf, offset)[0] + delta)


def put(buf: bytearray, offset: int, fmt: str, value) -> None:
    struct.pack_into(fmt, buf, offset, value)


# -- truncation ------------------------------------------------------------------------------


def test_sample_is_valid_and_has_no_trailing_padding(sample, tmp_path):
    data, lay = sample
    assert max(end for _, end in lay.data_ends) == len(data)
    path = tmp_path / "ok.gguf"
    path.write_bytes(data)
    with GGUFFile(path) as f:
        assert list(f.tensors) == ["t.one", "t.two", "t.six"]
        assert f.get("test.nested")[1].tolist() == [3]


def section_boundaries(lay: Layout) -> list[int]:
    tensor_count, kv_count = lay.counts
    cuts = {0, 1, 4, 6, tensor_count, kv_count, kv_count + 8, lay.kv_end, lay.info_end}
    for key in lay.reader.fields:
        if not key.startswith("GGUF."):
            start, end = lay.kv_span(key)
            cuts |= {start, start + 8, lay.kv(key, 2), lay.kv(key, 3), end - 1}
    for t in lay.reader.tensors:
        for part in range(6):
            cuts.add(lay.ti(t.name, part))
    for begin, end in lay.data_ends:
        cuts |= {begin, begin + 1, end - 1}
    return sorted(c for c in cuts if c < lay.size)


def test_truncation_at_every_section_boundary(sample, tmp_path):
    data, lay = sample
    cuts = section_boundaries(lay)
    assert len(cuts) > 60
    for cut in cuts:
        path = tmp_path / f"cut{cut}.gguf"
        path.write_bytes(data[:cut])
        err = read_damaged(path)
        assert err.offset <= cut, (cut, str(err))


def test_truncation_at_every_other_offset(sample, tmp_path):
    data, lay = sample
    path = tmp_path / "cut.gguf"
    for cut in sorted(set(range(len(data))) - set(section_boundaries(lay))):
        path.write_bytes(data[:cut])
        err = read_damaged(path)
        assert err.offset <= cut, (cut, str(err))


# -- byte edits ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Damage:
    id: str
    edit: Callable[[Layout, bytearray], None]
    # where the reported offset must lie: the damaged record (start, end inclusive)
    where: Callable[[Layout], tuple[int, int]]


def at(offset_of: Callable[[Layout], int], fmt: str, value) -> Callable:
    return lambda lay, buf: put(buf, offset_of(lay), fmt, value)


def kv_at(key, part, fmt, value):
    return at(lambda lay: lay.kv(key, part), fmt, value)


def ti_at(name, part, fmt, value, index=0):
    return at(lambda lay: lay.ti(name, part) + 8 * index, fmt, value)


def header(lay):
    return 0, 24


def in_kv(key):
    return lambda lay: lay.kv_span(key)


def in_ti(name):
    return lambda lay: lay.ti_span(name)


def in_infos(lay):
    return lay.ti_span("t.one")[0], lay.info_end


def after_kvs(lay):
    return lay.kv_end, lay.size


def overwrite(offset_of, new: bytes):
    """Replace bytes in place (same length: the layout stays)."""

    def edit(lay, buf):
        o = offset_of(lay)
        buf[o : o + len(new)] = new

    return edit


DAMAGES = [
    # magic and version
    Damage("magic_ggug", overwrite(lambda lay: 0, b"GGUG"), header),
    Damage("magic_zero", overwrite(lambda lay: 0, b"\0\0\0\0"), header),
    Damage("magic_lowercase", overwrite(lambda lay: 0, b"gguf"), header),
    *[Damage(f"version_{v}", at(lambda lay: 4, "<I", v), header) for v in (0, 1, 4, 2**31)],
    Damage("version_3_big_endian", at(lambda lay: 4, ">I", 3), header),
    Damage("version_2_big_endian", at(lambda lay: 4, ">I", 2), header),
    # huge and wrong counts
    *[
        Damage(f"tensor_count_{n}", at(lambda lay: lay.counts[0], "<Q", n), header)
        for n in (2**63, U64_MAX, 2**40)
    ],
    *[
        Damage(f"kv_count_{n}", at(lambda lay: lay.counts[1], "<Q", n), header)
        for n in (2**63, U64_MAX, 2**40)
    ],
    Damage("kv_count_plus_one", lambda lay, buf: add_to_count(lay, buf, 1, 1), after_kvs),
    Damage("tensor_count_plus_one", lambda lay, buf: add_to_count(lay, buf, 0, 1), after_kvs),
    # string lengths past the end
    *[
        Damage(f"key_length_{n}", kv_at("test.count", 0, "<Q", n), in_kv("test.count"))
        for n in (2**63, U64_MAX, 2**20)
    ],
    *[
        Damage(
            f"string_value_length_{n}",
            kv_at("general.architecture", 3, "<Q", n),
            in_kv("general.architecture"),
        )
        for n in (2**63, 2**20)
    ],
    Damage(
        "string_in_array_length",
        kv_at("test.words", 5, "<Q", 2**63),
        in_kv("test.words"),
    ),
    Damage("tensor_name_length", ti_at("t.one", 0, "<Q", 2**63), in_ti("t.one")),
    # array lengths past the end
    *[
        Damage(f"array_length_{key}_{n}", kv_at(key, 4, "<Q", n), in_kv(key))
        for key in ("test.ids", "test.words", "test.flags", "test.nested")
        for n in (2**63, U64_MAX, 2**20)
    ],
    Damage("inner_array_length", kv_at("test.nested", 6, "<Q", 2**63), in_kv("test.nested")),
    # value types
    *[
        Damage(f"value_type_{t}", kv_at("test.count", 2, "<I", t), in_kv("test.count"))
        for t in (13, 99, 2**32 - 1)
    ],
    Damage("array_elem_type_13", kv_at("test.ids", 3, "<I", 13), in_kv("test.ids")),
    Damage("inner_elem_type_13", kv_at("test.nested", 5, "<I", 13), in_kv("test.nested")),
    Damage("bool_byte_2", kv_at("test.flag", 3, "<B", 2), in_kv("test.flag")),
    Damage("bool_byte_255", kv_at("test.flag", 3, "<B", 255), in_kv("test.flag")),
    Damage("bool_array_byte_2", kv_at("test.flags", 6, "<B", 2), in_kv("test.flags")),
    # alignment
    *[
        Damage(f"alignment_{a}", kv_at("general.alignment", 3, "<I", a), in_kv("general.alignment"))
        for a in (0, 3, 48, 2**31 + 1)
    ],
    Damage(
        "alignment_as_int32",
        kv_at("general.alignment", 2, "<I", VT.INT32),
        in_kv("general.alignment"),
    ),
    Damage("alignment_64_misaligns_offsets", kv_at("general.alignment", 3, "<I", 64), in_infos),
    # duplicates
    Damage(
        "duplicate_key", overwrite(lambda lay: lay.kv("dup.two", 1), b"dup.one"), in_kv("dup.two")
    ),
    Damage("duplicate_tensor", overwrite(lambda lay: lay.ti("t.six", 1), b"t.one"), in_ti("t.six")),
    # tensor dims
    *[Damage(f"n_dims_{n}", ti_at("t.one", 2, "<I", n), in_ti("t.one")) for n in (0, 5, 2**32 - 1)],
    *[
        Damage(f"dim{i}_{d}", ti_at("t.one", 3, "<Q", d, index=i), in_ti("t.one"))
        for i in (0, 1)
        for d in (0, 2**63, U64_MAX)
    ],
    Damage(
        "dims_product_overflows",
        lambda lay, buf: [
            put(buf, lay.ti("t.one", 3), "<Q", 2**32),
            put(buf, lay.ti("t.one", 3) + 8, "<Q", 2**32),
        ],
        in_ti("t.one"),
    ),
    Damage(
        "dims_product_2_64",
        lambda lay, buf: [
            put(buf, lay.ti("t.one", 3), "<Q", 2**62),
            put(buf, lay.ti("t.one", 3) + 8, "<Q", 4),
        ],
        in_ti("t.one"),
    ),
    Damage("nbytes_past_end", ti_at("t.six", 3, "<Q", 2**20), in_ti("t.six")),
    Damage(
        "nbytes_2_64",  # 2**62 F32 elements: the element count fits int64, the bytes do not
        lambda lay, buf: [
            put(buf, lay.ti("t.one", 3), "<Q", 2**62),
            put(buf, lay.ti("t.one", 3) + 8, "<Q", 1),
        ],
        in_ti("t.one"),
    ),
    Damage("row_not_whole_blocks", ti_at("t.one", 4, "<I", GGMLType.Q8_0), in_ti("t.one")),
    # tensor types
    *[
        Damage(f"tensor_type_{t}", ti_at("t.one", 4, "<I", t), in_ti("t.one"))
        for t in (4, 5, 31, 99, 2**32 - 1)
    ],
    # tensor offsets
    Damage("offset_past_end", lambda lay, buf: past_end_offset(lay, buf, "t.six"), in_ti("t.six")),
    Damage("offset_2_64_minus_32", ti_at("t.six", 5, "<Q", U64_MAX - 31), in_ti("t.six")),
    Damage("offset_misaligned_by_1", lambda lay, buf: shift_offset(lay, buf, "t.two", 1), in_infos),
    Damage(
        "offset_misaligned_by_16", lambda lay, buf: shift_offset(lay, buf, "t.two", 16), in_infos
    ),
    Damage(
        "overlap_same_offset", lambda lay, buf: copy_offset(lay, buf, "t.one", "t.two"), in_infos
    ),
    Damage("overlap_partial", lambda lay, buf: shift_offset(lay, buf, "t.six", -32), in_infos),
]


def past_end_offset(lay: Layout, buf: bytearray, name: str) -> None:
    put(buf, lay.ti(name, 5), "<Q", -(-lay.size // 32) * 32)  # aligned, data starts past EOF


# what each damage's message must say, by id prefix (first match wins): the check meant for
# the damage fired, not some later one that happened to trip over it
REASONS = [
    ("magic", r"magic"),
    ("version_3_big", r"big-endian"),
    ("version_2_big", r"big-endian"),
    ("version", r"version"),
    ("tensor_count_plus", r""),
    ("kv_count_plus", r""),
    ("tensor_count", r"tensor count"),
    ("kv_count", r"entry count"),
    ("key_length", r"key .*past the end"),
    ("string_", r"string .*past the end"),
    ("tensor_name_length", r"name .*past the end"),
    ("array_length", r"array length"),
    ("inner_array_length", r"array length"),
    ("value_type", r"value type"),
    ("array_elem_type", r"value type"),
    ("inner_elem_type", r"value type"),
    ("bool", r"bool"),
    ("alignment_as_int32", r"uint32"),
    ("alignment_64", r"multiple of the alignment"),
    ("alignment", r"power of two"),
    ("duplicate_key", r"duplicate metadata key"),
    ("duplicate_tensor", r"duplicate tensor name"),
    ("n_dims", r"dimensions"),
    ("dims_product", r"overflow"),
    ("dim", r"dimension"),
    ("nbytes", r"past the end"),
    ("row_not_whole_blocks", r"block size"),
    ("tensor_type", r"type id"),
    ("offset_misaligned", r"multiple of the alignment"),
    ("offset", r"past the end"),
    ("overlap", r"overlap"),
]


def expected_reason(damage_id: str) -> str:
    return next(reason for prefix, reason in REASONS if damage_id.startswith(prefix))


def shift_offset(lay: Layout, buf: bytearray, name: str, delta: int) -> None:
    put(buf, lay.ti(name, 5), "<Q", lay.rel_offset(name) + delta)


def copy_offset(lay: Layout, buf: bytearray, src: str, dst: str) -> None:
    put(buf, lay.ti(dst, 5), "<Q", lay.rel_offset(src))


@pytest.mark.parametrize("damage", DAMAGES, ids=[d.id for d in DAMAGES])
def test_damaged_file_raises_format_error(sample, tmp_path, damage):
    data, lay = sample
    buf = bytearray(data)
    damage.edit(lay, buf)
    assert bytes(buf) != data
    path = tmp_path / f"{damage.id}.gguf"
    path.write_bytes(buf)
    err = read_damaged(path)
    lo, hi = damage.where(lay)
    assert lo <= err.offset <= hi, (damage.id, (lo, hi), str(err))
    assert re.search(expected_reason(damage.id), err.reason), (damage.id, str(err))


def test_partial_overlap_is_real(sample):
    """overlap_partial moves t.six 32 bytes back, into t.two's 136 bytes of data."""
    _, lay = sample
    (_, _), (two_begin, two_end), (six_begin, _) = lay.data_ends
    assert two_begin < six_begin - 32 < two_end


# -- files that need other builders ------------------------------------------------------------


def test_alignment_of_type_uint64(tmp_path):
    path = tmp_path / "align64.gguf"
    write_sample(path, alignment_key="general.alignmenX")
    lay = Layout(path)
    buf = bytearray(path.read_bytes())
    overwrite(lambda lay: lay.kv("general.alignmenX", 1), b"general.alignment")(lay, buf)
    path.write_bytes(buf)
    err = read_damaged(path)
    lo, hi = lay.kv_span("general.alignmenX")
    assert lo <= err.offset <= hi and "UINT64" in str(err)


def deep_array_file(depth: int) -> bytes:
    """One entry whose value is `depth` arrays, each holding the next, around an empty
    uint8 array: 12 bytes per level."""
    key = b"deep"
    body = struct.pack("<Q", len(key)) + key + struct.pack("<I", VT.ARRAY)
    body += struct.pack("<IQ", VT.ARRAY, 1) * depth + struct.pack("<IQ", VT.UINT8, 0)
    return b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + body


@pytest.mark.parametrize("depth", [3, 100, 100_000])
def test_nested_arrays_too_deep(tmp_path, depth):
    path = tmp_path / "deep.gguf"
    path.write_bytes(deep_array_file(depth))
    if depth == 3:  # shallow nesting is valid GGUF
        with GGUFFile(path) as f:
            value = f.get("deep")
            for _ in range(depth):
                (value,) = value
            assert value.dtype == np.uint8 and value.size == 0
        return
    err = read_damaged(path)
    assert err.offset >= 24


def test_tensor_name_longer_than_ggml_allows(tmp_path):
    """ggml keeps names in 64 bytes with the NUL; gguf-py's writer does not check."""
    path = tmp_path / "long_name.gguf"
    w = gguf.GGUFWriter(path, arch="test")
    w.add_tensor("n" * 64, np.zeros(4, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    err = read_damaged(path)
    start, end = Layout(path).ti_span("n" * 64)
    assert start <= err.offset <= end


@pytest.mark.parametrize(
    "content",
    [b"", b"G", b"GGU", b"GGUF", b"hello, world\n" * 10, b"\0" * 64, b"PK\x03\x04" + bytes(60)],
    ids=["empty", "g", "ggu", "magic_only", "text", "zeros", "zip"],
)
def test_not_gguf_at_all(tmp_path, content):
    path = tmp_path / "not.gguf"
    path.write_bytes(content)
    err = read_damaged(path)
    assert err.offset <= 8


def test_paths_that_are_not_files(tmp_path):
    with pytest.raises(FormatError, match="directory"):
        GGUFFile(tmp_path)
    with pytest.raises(FileNotFoundError):
        GGUFFile(tmp_path / "missing.gguf")
    plain = tmp_path / "plain"
    plain.write_bytes(b"GGUF")
    with pytest.raises(NotADirectoryError):
        GGUFFile(plain / "child.gguf")


def test_fifo_is_refused_without_blocking(tmp_path):
    """open() on a FIFO waits for a writer forever; the reader must refuse it up front."""
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    outcome = []

    def read():
        try:
            GGUFFile(fifo)
        except FormatError as e:
            outcome.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=5)
    assert not reader.is_alive(), "the reader blocked on a FIFO"
    assert len(outcome) == 1 and "regular file" in str(outcome[0])
