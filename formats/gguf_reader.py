"""Strict, zero-copy GGUF reader.

Every count, length, offset and size is checked against the file before it is used, so a
damaged or hostile file raises one FormatError naming the byte offset and the reason: no
crash, no hang, no allocation larger than the file.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FormatError
from .ggml_types import SCALAR_DTYPES, TYPE_INFO, GGMLType
from .keys import (
    ARRAY_DTYPES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    SCALAR_FORMATS,
    GGUFValueType,
    Keys,
)

SUPPORTED_VERSIONS = (2, 3)
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_NAME_BYTES = 63  # GGML_MAX_NAME is 64 including the terminating NUL
MAX_ARRAY_NESTING = 8
INT64_MAX = 2**63 - 1

# smallest encoding of a value of each type, used to bound counts before looping
_MIN_VALUE_BYTES = {t: struct.calcsize(f) for t, f in SCALAR_FORMATS.items()}
_MIN_VALUE_BYTES[GGUFValueType.STRING] = 8  # length only
_MIN_VALUE_BYTES[GGUFValueType.ARRAY] = 4 + 8  # element type + count
_MIN_KV_BYTES = 8 + 4 + 1  # key length + value type + smallest value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8  # name length, n_dims, one dim, type, offset


class TypedList(list):
    """A GGUF array of strings or of arrays, read as a list that remembers its element type,
    so that writing it back keeps the type even when the list is empty."""

    def __init__(self, items=(), elem_type: GGUFValueType | None = None):
        super().__init__(items)
        self.elem_type = elem_type


@dataclass(frozen=True)
class Field:
    """One metadata entry, with the value types needed to write it back unchanged."""

    key: str
    value: Any  # scalars as Python values; arrays of numbers as numpy; strings as str
    type: GGUFValueType
    elem_type: GGUFValueType | None = None  # for arrays (nested arrays: the outer element type)
    offset: int = 0  # where the entry starts in the file


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order: shape[0] is the contiguous row length
    type: GGMLType
    offset: int  # absolute byte offset of the data in the file
    nbytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def n_rows(self) -> int:
        return self.n_elements // self.shape[0]


_U64 = struct.Struct("<Q")


class _Cursor:
    """Bounds-checked little-endian reads over a buffer."""

    def __init__(self, buf, path: str | None):
        self.buf = buf
        self.size = len(buf)
        self.pos = 0
        self.path = path

    def fail(self, reason: str, offset: int | None = None) -> FormatError:
        return FormatError(reason, self.pos if offset is None else offset, self.path)

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(f"{what} needs {n} bytes but the file ends at byte {self.size}")

    def scalar(self, fmt: str, what: str):
        n = struct.calcsize(fmt)
        self.need(n, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return v

    def u32(self, what: str) -> int:
        return self.scalar("<I", what)

    def u64(self, what: str) -> int:
        return self.scalar("<Q", what)

    def string(self, what: str) -> str:
        start = self.pos
        n = self.u64(f"length of {what}")
        if n > self.size - self.pos:
            raise self.fail(f"{what} is {n} bytes long, past the end of the file", start)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        # surrogateescape keeps any bytes, so writing the string back gives the same bytes
        return raw.decode("utf-8", errors="surrogateescape")

    def strings(self, n: int, what: str) -> list[str]:
        """n strings in a row: as n calls of string(), in one tight loop (a vocabulary holds
        hundreds of thousands); any bad length falls back to string() for its exact error."""
        buf, size, pos = self.buf, self.size, self.pos
        unpack = _U64.unpack_from
        out: list[str] = []
        append = out.append
        for _ in range(n):
            if pos + 8 <= size:
                (length,) = unpack(buf, pos)
                end = pos + 8 + length
                if end <= size:
                    append(str(buf[pos + 8 : end], "utf-8", "surrogateescape"))
                    pos = end
                    continue
            self.pos = pos
            self.string(what)  # raises
        self.pos = pos
        return out

    def count(self, what: str, min_item_bytes: int) -> int:
        start = self.pos
        n = self.u64(what)
        if n > (self.size - self.pos) // max(min_item_bytes, 1):
            raise self.fail(f"{what} {n} cannot fit in the rest of the file", start)
        return n

    def value_type(self, what: str) -> GGUFValueType:
        start = self.pos
        t = self.u32(what)
        try:
            return GGUFValueType(t)
        except ValueError:
            raise self.fail(f"unknown metadata value type {t}", start) from None


def _read_value(cur: _Cursor, vtype: GGUFValueType, key: str, depth: int = 0):
    """Returns (value, elem_type) for one metadata value."""
    if vtype == GGUFValueType.STRING:
        return cur.string(f"string value of {key!r}"), None
    if vtype != GGUFValueType.ARRAY:
        fmt = SCALAR_FORMATS[vtype]
        if vtype == GGUFValueType.BOOL:
            start = cur.pos
            b = cur.scalar("<B", f"value of {key!r}")
            if b > 1:
                raise cur.fail(f"bool value of {key!r} is {b}, not 0 or 1", start)
            return bool(b), None
        return cur.scalar(fmt, f"value of {key!r}"), None
    if depth >= MAX_ARRAY_NESTING:
        raise cur.fail(f"arrays nested deeper than {MAX_ARRAY_NESTING} in {key!r}")
    elem = cur.value_type(f"array element type of {key!r}")
    n = cur.count(f"array length of {key!r}", _MIN_VALUE_BYTES[elem])
    if elem in ARRAY_DTYPES:
        dtype = np.dtype(ARRAY_DTYPES[elem])
        nbytes = n * dtype.itemsize
        cur.need(nbytes, f"array {key!r}")
        if elem == GGUFValueType.BOOL:
            raw = np.frombuffer(cur.buf, np.uint8, n, cur.pos)
            if n and raw.max() > 1:
                raise cur.fail(f"bool array {key!r} holds a value other than 0 or 1")
        arr = np.frombuffer(cur.buf, dtype, n, cur.pos).copy()  # copy: metadata outlives mmap
        cur.pos += nbytes
        return arr, elem
    if elem == GGUFValueType.STRING:
        return TypedList(cur.strings(n, f"string in array {key!r}"), elem), elem
    # nested arrays
    return TypedList((_read_value(cur, elem, key, depth + 1)[0] for _ in range(n)), elem), elem


class GGUFFile:
    """A GGUF file opened for reading: metadata parsed and checked, tensor data mmap'd."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        shown = str(path)
        try:
            mode = os.stat(self.path).st_mode
            if stat.S_ISDIR(mode):
                raise FormatError("is a directory, not a GGUF file", path=shown)
            if not stat.S_ISREG(mode):  # a FIFO would block open(); devices are not files
                raise FormatError("not a regular file", path=shown)
            fh = open(self.path, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as e:
            # keep the subclass (FileNotFoundError, PermissionError, NotADirectoryError, …)
            raise OSError(e.errno, e.strerror, shown) from None
        with fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise FormatError("empty file, not GGUF", 0, shown)
            self._mmap = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        self.file_size = len(self._mmap)  # what is mapped, should the file change meanwhile
        try:
            self._parse(_Cursor(memoryview(self._mmap), shown))
        except BaseException:
            self.close()
            raise

    # -- parsing ---------------------------------------------------------------------------

    def _parse(self, cur: _Cursor) -> None:
        cur.need(4, "magic")
        magic = bytes(cur.buf[0:4])
        if magic != GGUF_MAGIC:
            raise cur.fail(f"not a GGUF file (magic {magic!r}, expected {GGUF_MAGIC!r})", 0)
        cur.pos = 4
        version = cur.u32("version")
        if version not in SUPPORTED_VERSIONS:
            if version & 0xFFFF == 0 and (version >> 24) in SUPPORTED_VERSIONS:
                raise cur.fail("big-endian GGUF files are not supported", 4)
            raise cur.fail(f"GGUF version {version} is not supported (only 2 and 3)", 4)
        self.version = version
        n_tensors = cur.count("tensor count", _MIN_TENSOR_INFO_BYTES)
        n_kv = cur.count("metadata entry count", _MIN_KV_BYTES)

        self.fields: dict[str, Field] = {}
        for _ in range(n_kv):
            start = cur.pos
            key = cur.string("metadata key")
            if key in self.fields:
                raise cur.fail(f"duplicate metadata key {key!r}", start)
            vtype = cur.value_type(f"value type of {key!r}")
            value, elem = _read_value(cur, vtype, key)
            self.fields[key] = Field(key, value, vtype, elem, start)

        self.alignment = GGUF_DEFAULT_ALIGNMENT
        if Keys.General.ALIGNMENT in self.fields:
            f = self.fields[Keys.General.ALIGNMENT]
            if f.type != GGUFValueType.UINT32:
                raise cur.fail(
                    f"{Keys.General.ALIGNMENT} must be uint32, not {f.type.name}", f.offset
                )
            if f.value == 0 or f.value & (f.value - 1):
                raise cur.fail(f"alignment {f.value} is not a power of two", f.offset)
            self.alignment = f.value

        infos = []  # (name, shape, type, relative offset, record start)
        names = set()
        for _ in range(n_tensors):
            start = cur.pos
            name = cur.string("tensor name")
            if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
                raise cur.fail(
                    f"tensor name {name[:40]!r}… is longer than {MAX_NAME_BYTES} bytes", start
                )
            if name in names:
                raise cur.fail(f"duplicate tensor name {name!r}", start)
            names.add(name)
            n_dims = cur.u32(f"dimension count of {name!r}")
            if not 1 <= n_dims <= MAX_DIMS:
                raise cur.fail(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
            shape = tuple(cur.u64(f"dimension of {name!r}") for _ in range(n_dims))
            n_elem = 1
            for d in shape:
                if d == 0 or d > INT64_MAX:
                    raise cur.fail(f"tensor {name!r} has an invalid dimension {d}", start)
                n_elem *= d
                if n_elem > INT64_MAX:
                    raise cur.fail(f"tensor {name!r} element count overflows int64", start)
            tpos = cur.pos
            type_id = cur.u32(f"type of {name!r}")
            try:
                gtype = GGMLType(type_id)
            except ValueError:
                raise cur.fail(f"tensor {name!r} has unknown type id {type_id}", tpos) from None
            info = TYPE_INFO[gtype]
            if shape[0] % info.block_size:
                raise cur.fail(
                    f"tensor {name!r}: row length {shape[0]} is not a multiple of "
                    f"{gtype.name}'s block size {info.block_size}",
                    start,
                )
            rel = cur.u64(f"data offset of {name!r}")
            if rel % self.alignment:
                raise cur.fail(
                    f"tensor {name!r} data offset {rel} is not a multiple of the alignment "
                    f"{self.alignment}",
                    start,
                )
            infos.append((name, shape, gtype, rel, start))

        info_end = cur.pos
        self.data_offset = -(-info_end // self.alignment) * self.alignment
        self.tensors: dict[str, TensorInfo] = {}
        spans = []
        for name, shape, gtype, rel, start in infos:
            nbytes = shape[0] // TYPE_INFO[gtype].block_size * TYPE_INFO[gtype].type_size
            for d in shape[1:]:
                nbytes *= d
            begin = self.data_offset + rel
            if begin + nbytes > self.file_size:
                raise cur.fail(
                    f"tensor {name!r} data ({nbytes} bytes at byte {begin}) runs past the end "
                    f"of the file ({self.file_size} bytes)",
                    start,
                )
            self.tensors[name] = TensorInfo(name, shape, gtype, begin, nbytes)
            spans.append((begin, nbytes, name, start))
        spans.sort()
        for (b0, n0, name0, _), (b1, _, name1, start1) in zip(spans, spans[1:], strict=False):
            if b0 + n0 > b1:
                raise cur.fail(f"tensors {name0!r} and {name1!r} overlap", start1)

    # -- metadata access ---------------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        return {k: f.value for k, f in self.fields.items()}

    @property
    def architecture(self) -> str | None:
        v = self.get(Keys.General.ARCHITECTURE)
        return v if isinstance(v, str) else None

    def get(self, key: str, default: Any = None) -> Any:
        f = self.fields.get(key)
        return default if f is None else f.value

    def _typed(self, key: str, default: Any, kinds: tuple, what: str) -> Any:
        f = self.fields.get(key)
        if f is None:
            if default is _REQUIRED:
                raise FormatError(f"required metadata key {key!r} is missing", path=str(self.path))
            return default
        if f.type == GGUFValueType.ARRAY or not isinstance(f.value, kinds):
            raise FormatError(
                f"metadata {key!r} should be {what}, but is {f.type.name}", f.offset, str(self.path)
            )
        return f.value

    def get_int(self, key: str, default: Any = None) -> int:
        v = self._typed(key, default, (int,), "an integer")
        if isinstance(v, bool):
            raise FormatError(
                f"metadata {key!r} should be an integer, but is BOOL", path=str(self.path)
            )
        return v

    def get_float(self, key: str, default: Any = None) -> float:
        v = self._typed(key, default, (int, float), "a number")
        return v if v is None or isinstance(v, bool) else float(v)

    def get_str(self, key: str, default: Any = None) -> str:
        return self._typed(key, default, (str,), "a string")

    def get_bool(self, key: str, default: Any = None) -> bool:
        return self._typed(key, default, (bool,), "a bool")

    def get_array(self, key: str, default: Any = None):
        f = self.fields.get(key)
        if f is None:
            if default is _REQUIRED:
                raise FormatError(f"required metadata key {key!r} is missing", path=str(self.path))
            return default
        if f.type != GGUFValueType.ARRAY:
            raise FormatError(f"metadata {key!r} should be an array", f.offset, str(self.path))
        return f.value

    def arch_key(self, template: str) -> str:
        return template.format(arch=self.architecture)

    def arch_get(self, template: str, default: Any = None) -> Any:
        """A per-architecture key: ``f.arch_get(Keys.LLM.BLOCK_COUNT)``."""
        return self.get(self.arch_key(template), default)

    # -- tensor data ---------------------------------------------------------------------------

    def _info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise KeyError(f"{self.path.name} has no tensor {name!r}") from None

    def tensor_bytes(self, name: str) -> np.ndarray:
        """Zero-copy uint8 view of a tensor's data, shape (n_rows, row_bytes)."""
        t = self._info(name)
        raw = np.frombuffer(self._mmap, np.uint8, t.nbytes, t.offset)
        return raw.reshape(t.n_rows, t.nbytes // t.n_rows)

    def tensor_array(self, name: str) -> np.ndarray:
        """Zero-copy typed view: scalar types in numpy order (reversed ggml shape); block types
        as (n_rows, row_bytes) uint8."""
        t = self._info(name)
        dtype = SCALAR_DTYPES.get(t.type)
        if dtype is None:
            return self.tensor_bytes(name)
        return np.frombuffer(self._mmap, dtype, t.n_elements, t.offset).reshape(t.shape[::-1])

    # -- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        m = getattr(self, "_mmap", None)
        if m is not None:
            # views into the mapping may still be alive; the OS unmaps when they go
            with contextlib.suppress(BufferError):
                m.close()
            self._mmap = None

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"GGUFFile({str(self.path)!r}, v{self.version}, {len(self.fields)} keys, "
            f"{len(self.tensors)} tensors)"
        )


_REQUIRED = object()
REQUIRED = _REQUIRED  # pass as default to make a key mandatory
