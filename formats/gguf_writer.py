"""Streaming GGUF writer.

A small state machine: metadata and tensor infos are declared first, then the header is
written and tensor data is streamed in declaration order, one tensor at a time, so memory does
not grow with model size. Output goes to a temporary file in the destination folder that is
renamed over the target by close() (or a clean exit from `with`), and only when every declared
tensor has been written: an error anywhere before that leaves the target as it was.
"""

from __future__ import annotations

import enum
import math
import os
import secrets
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .errors import FormatError
from .ggml_types import SCALAR_DTYPES, GGMLType, ggml_type, tensor_nbytes
from .gguf_reader import (
    INT64_MAX,
    MAX_DIMS,
    MAX_NAME_BYTES,
    SUPPORTED_VERSIONS,
    Field,
    GGUFFile,
    TypedList,
)
from .keys import (
    ARRAY_DTYPES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    SCALAR_FORMATS,
    GGUFValueType,
    Keys,
)


class WriterState(enum.Enum):
    DECLARING = "declaring"  # metadata and tensor infos may be added
    DATA = "data"  # header written; tensor data streams in order, then close() renames
    DONE = "done"  # renamed over the target
    ABORTED = "aborted"  # partial file dropped; the target is as it was


def _infer_type(value: Any) -> tuple[GGUFValueType, GGUFValueType | None]:
    if isinstance(value, bool):
        return GGUFValueType.BOOL, None
    if isinstance(value, (int, np.integer)):
        if -(2**31) <= value < 2**31:
            return GGUFValueType.INT32, None
        return (GGUFValueType.INT64 if value < 2**63 else GGUFValueType.UINT64), None
    if isinstance(value, (float, np.floating)):
        return GGUFValueType.FLOAT32, None
    if isinstance(value, str):
        return GGUFValueType.STRING, None
    if isinstance(value, np.ndarray):
        for vt, dt in ARRAY_DTYPES.items():
            if value.dtype == np.dtype(dt):
                return GGUFValueType.ARRAY, vt
        raise TypeError(f"no GGUF array type for numpy dtype {value.dtype}")
    if isinstance(value, TypedList) and value.elem_type is not None:
        return GGUFValueType.ARRAY, value.elem_type
    if isinstance(value, (list, tuple)):
        if not value:
            return GGUFValueType.ARRAY, GGUFValueType.INT32
        return GGUFValueType.ARRAY, _infer_type(value[0])[0]
    raise TypeError(f"cannot store a {type(value).__name__} in GGUF metadata")


def _encode_string(s: str) -> bytes:
    if not isinstance(s, str):
        raise TypeError(f"expected a str, got {type(s).__name__}")
    raw = s.encode("utf-8", errors="surrogateescape")
    return struct.pack("<Q", len(raw)) + raw


def _encode_value(value: Any, vtype: GGUFValueType, elem: GGUFValueType | None) -> bytes:
    if vtype == GGUFValueType.STRING:
        return _encode_string(value)
    if vtype != GGUFValueType.ARRAY:
        return struct.pack(SCALAR_FORMATS[vtype], value)
    if elem is None:
        raise TypeError("an array value needs an element type")
    head = struct.pack("<IQ", elem, len(value))
    if elem in ARRAY_DTYPES:
        return head + _array_bytes(value, elem)
    if elem == GGUFValueType.STRING:
        return head + b"".join(_encode_string(s) for s in value)
    # nested arrays: each inner array carries its own element type
    return head + b"".join(_encode_value(v, elem, _infer_type(v)[1]) for v in value)


def _array_bytes(value: Any, elem: GGUFValueType) -> bytes:
    """Elements as little-endian bytes; integers that do not fit the type are an error, not
    silently wrapped (numpy's astype would wrap them)."""
    dtype = np.dtype(ARRAY_DTYPES[elem])
    src = np.asarray(value)
    if src.ndim != 1:
        raise ValueError(f"a GGUF array must be one-dimensional, got shape {src.shape}")
    arr = src.astype(dtype) if src.size else np.empty(0, dtype)
    if src.size and dtype.kind in "iub" and not np.array_equal(arr, src):
        raise ValueError(f"values do not fit GGUF type {elem.name}")
    return arr.tobytes()


def _encode_checked(value: Any, vtype: GGUFValueType, elem: GGUFValueType | None) -> bytes:
    try:
        return _encode_value(value, vtype, elem)
    except (struct.error, OverflowError) as e:
        raise ValueError(f"value does not fit GGUF type {vtype.name}: {e}") from None


_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _create_temp_beside(path: Path) -> tuple[int, Path]:
    """A new file next to `path` (so the final rename stays on one filesystem), created with
    mode 0o666 less the umask, as a plain open() would: mkstemp's 0600 would survive the
    rename and make the model unreadable to other users."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
        try:
            return os.open(tmp, _CREATE_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file beside {path}")


def _pad(n: int, alignment: int) -> int:
    return -n % alignment


class GGUFWriter:
    """Write a GGUF file: add metadata and tensor infos, then stream tensor data in order.

    with GGUFWriter(path) as w:
        w.add("general.architecture", "llama")
        w.add_tensor_info("token_embd.weight", (576, 49152), GGMLType.Q8_0)
        w.write_tensor_data("token_embd.weight", blocks)
    """

    def __init__(self, path: str | os.PathLike, alignment: int | None = None, version: int = 3):
        if version not in SUPPORTED_VERSIONS:
            raise ValueError(f"GGUF version {version} cannot be written (only 2 and 3)")
        self.path = Path(path)
        self.version = version
        self.state = WriterState.DECLARING
        self.fields: dict[str, tuple[GGUFValueType, GGUFValueType | None, Any]] = {}
        self._encoded: dict[str, bytes] = {}  # key -> value type + value, checked at add()
        self.tensors: list[
            tuple[str, tuple[int, ...], GGMLType, int]
        ] = []  # name, shape, type, nbytes
        self._names: set[str] = set()
        self._next = 0  # index of the next tensor whose data is expected
        self._fh: BinaryIO | None = None
        self._tmp: Path | None = None
        self.alignment = GGUF_DEFAULT_ALIGNMENT
        if alignment is not None:
            self.add(Keys.General.ALIGNMENT, alignment, GGUFValueType.UINT32)

    def _expect(self, state: WriterState, action: str) -> None:
        if self.state != state:
            raise RuntimeError(f"cannot {action} while the writer is {self.state.value}")

    # -- declaring --------------------------------------------------------------------------

    def add(
        self,
        key: str,
        value: Any,
        type: GGUFValueType | None = None,
        elem_type: GGUFValueType | None = None,
    ) -> None:
        """Add a metadata entry; the value type is inferred when not given.

        The value is encoded now, so a value that does not fit its type fails here, not when
        the header is written."""
        self._expect(WriterState.DECLARING, "add metadata")
        if key in self.fields:
            raise ValueError(f"duplicate metadata key {key!r}")
        if key == Keys.General.ALIGNMENT and type is None:
            type = GGUFValueType.UINT32
        if type is None:
            type, inferred_elem = _infer_type(value)
            if elem_type is None:  # not `or`: UINT8 is 0
                elem_type = inferred_elem
        type = GGUFValueType(type)
        elem_type = None if elem_type is None else GGUFValueType(elem_type)
        encoded = _encode_string(key) + struct.pack("<I", type)
        encoded += _encode_checked(value, type, elem_type)
        if key == Keys.General.ALIGNMENT:
            if type != GGUFValueType.UINT32 or value <= 0 or value & (value - 1):
                raise ValueError("general.alignment must be a uint32 power of two")
            self.alignment = int(value)
        self.fields[key] = (type, elem_type, value)
        self._encoded[key] = encoded

    def add_field(self, field: Field) -> None:
        """Copy a field read from another file, keeping its exact value types."""
        self.add(field.key, field.value, field.type, field.elem_type)

    def add_tensor_info(
        self, name: str, shape: tuple[int, ...], type: GGMLType | int | str
    ) -> None:
        """Declare a tensor; shape is in ggml order (shape[0] is the row length)."""
        self._expect(WriterState.DECLARING, "add a tensor")
        gtype = ggml_type(type)
        shape = tuple(int(d) for d in shape)
        if name in self._names:
            raise ValueError(f"duplicate tensor name {name!r}")
        if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise ValueError(f"tensor name {name!r} is longer than {MAX_NAME_BYTES} bytes")
        if not 1 <= len(shape) <= MAX_DIMS or min(shape) < 1 or math.prod(shape) > INT64_MAX:
            raise ValueError(f"tensor {name!r} has an invalid shape {shape}")
        self._names.add(name)
        self.tensors.append((name, shape, gtype, tensor_nbytes(gtype, shape)))

    # -- writing ----------------------------------------------------------------------------

    def _header_bytes(self) -> bytes:
        parts = [GGUF_MAGIC, struct.pack("<IQQ", self.version, len(self.tensors), len(self.fields))]
        parts += self._encoded.values()
        offset = 0
        for name, shape, gtype, nbytes in self.tensors:
            parts += [
                _encode_string(name),
                struct.pack(f"<I{len(shape)}Q", len(shape), *shape),
                struct.pack("<IQ", gtype, offset),
            ]
            offset += nbytes + _pad(nbytes, self.alignment)
        head = b"".join(parts)
        return head + b"\0" * _pad(len(head), self.alignment)

    def write_header(self) -> None:
        """Write magic, metadata and tensor infos; afterwards only tensor data may follow."""
        self._expect(WriterState.DECLARING, "write the header")
        header = self._header_bytes()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = _create_temp_beside(self.path)
        self._fh = os.fdopen(fd, "wb")
        try:
            self._fh.write(header)
        except BaseException:
            self.abort()
            raise
        self.state = WriterState.DATA

    def write_tensor_data(self, name: str, data: np.ndarray | bytes | memoryview) -> None:
        """Write the next tensor's data (bytes of blocks, or a scalar-typed array)."""
        if self.state == WriterState.DECLARING:
            self.write_header()
        self._expect(WriterState.DATA, "write tensor data")
        if self._next == len(self.tensors):
            raise RuntimeError(f"tensor data for {name!r}: every declared tensor is written")
        expected, shape, gtype, nbytes = self.tensors[self._next]
        if name != expected:
            raise RuntimeError(f"tensor data out of order: expected {expected!r}, got {name!r}")
        if isinstance(data, np.ndarray):
            if gtype in SCALAR_DTYPES and data.dtype != np.uint8:
                data = _as_scalar_type(data, gtype)
            buf = memoryview(np.ascontiguousarray(data)).cast("B")
        else:
            buf = memoryview(data).cast("B")
        if buf.nbytes != nbytes:
            raise ValueError(
                f"tensor {name!r} ({gtype.name} {shape}) needs {nbytes} bytes, got {buf.nbytes}"
            )
        self._fh.write(buf)
        self._fh.write(b"\0" * _pad(nbytes, self.alignment))
        self._next += 1

    def _finish(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        os.replace(self._tmp, self.path)
        self._tmp = None
        self.state = WriterState.DONE

    def abort(self) -> None:
        """Drop a partial file; the target path is left as it was."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
        if self.state != WriterState.DONE:
            self.state = WriterState.ABORTED

    def close(self) -> None:
        """Finish the file and rename it over the target; with tensor data missing, drop it."""
        if self.state == WriterState.DONE:
            return
        if self.state == WriterState.ABORTED:
            raise RuntimeError(f"file not written: the writer for {self.path.name} was aborted")
        if self.state == WriterState.DECLARING:
            self.write_header()
        if self._next < len(self.tensors):
            missing = [t[0] for t in self.tensors[self._next :]]
            self.abort()
            raise RuntimeError(f"file not written: no data for tensors {missing[:5]}")
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> GGUFWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()


def _as_scalar_type(data: np.ndarray, gtype: GGMLType) -> np.ndarray:
    """Convert to the tensor's element type where that keeps the meaning of the values;
    BF16 takes only its raw uint16 bits (numpy has no bfloat16 to convert floats to)."""
    dtype = np.dtype(SCALAR_DTYPES[gtype])
    if gtype == GGMLType.BF16:
        if data.dtype != dtype:
            raise TypeError(f"BF16 data must be uint16 bits or uint8 bytes, not {data.dtype}")
        return data
    if not np.can_cast(data.dtype, dtype, casting="same_kind"):
        raise TypeError(f"cannot store {data.dtype} data in a {gtype.name} tensor")
    return data.astype(dtype, copy=False)


def copy_gguf(
    src: GGUFFile,
    dst: str | os.PathLike,
    tensors: Iterable[str] | None = None,
) -> None:
    """Write a file with src's metadata (same value types) and tensors (same bytes)."""
    names = list(src.tensors) if tensors is None else list(tensors)
    with GGUFWriter(dst, version=src.version) as w:
        for f in src.fields.values():
            w.add_field(f)
        for n in names:
            t = src.tensors[n]
            w.add_tensor_info(n, t.shape, t.type)
        for n in names:
            w.write_tensor_data(n, src.tensor_bytes(n))


__all__ = ["FormatError", "GGUFWriter", "WriterState", "copy_gguf"]
