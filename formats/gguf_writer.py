"""Streaming GGUF writer.

A small state machine: metadata and tensor infos are declared first, then the header is
written and tensor data is streamed in declaration order, one tensor at a time, so memory does
not grow with model size. Output goes to a temporary file in the destination folder that is
renamed over the target only when every declared tensor has been written.
"""

from __future__ import annotations

import enum
import os
import struct
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .errors import FormatError
from .ggml_types import SCALAR_DTYPES, GGMLType, ggml_type, tensor_nbytes
from .gguf_reader import MAX_DIMS, MAX_NAME_BYTES, Field, GGUFFile
from .keys import GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, SCALAR_FORMATS, GGUFValueType, Keys


class WriterState(enum.Enum):
    DECLARING = "declaring"  # metadata and tensor infos may be added
    DATA = "data"  # header written; tensor data streams in order
    DONE = "done"


def _infer_type(value: Any) -> tuple[GGUFValueType, GGUFValueType | None]:
    if isinstance(value, bool):
        return GGUFValueType.BOOL, None
    if isinstance(value, (int, np.integer)):
        return (GGUFValueType.INT32 if -(2**31) <= value < 2**31 else GGUFValueType.INT64), None
    if isinstance(value, (float, np.floating)):
        return GGUFValueType.FLOAT32, None
    if isinstance(value, str):
        return GGUFValueType.STRING, None
    if isinstance(value, np.ndarray):
        for vt, dt in _ARRAY_DTYPES.items():
            if value.dtype == np.dtype(dt):
                return GGUFValueType.ARRAY, vt
        raise TypeError(f"no GGUF array type for numpy dtype {value.dtype}")
    if isinstance(value, (list, tuple)):
        if not value:
            return GGUFValueType.ARRAY, GGUFValueType.INT32
        return GGUFValueType.ARRAY, _infer_type(value[0])[0]
    raise TypeError(f"cannot store a {type(value).__name__} in GGUF metadata")


_ARRAY_DTYPES = {
    GGUFValueType.UINT8: "<u1",
    GGUFValueType.INT8: "<i1",
    GGUFValueType.UINT16: "<u2",
    GGUFValueType.INT16: "<i2",
    GGUFValueType.UINT32: "<u4",
    GGUFValueType.INT32: "<i4",
    GGUFValueType.FLOAT32: "<f4",
    GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "<u8",
    GGUFValueType.INT64: "<i8",
    GGUFValueType.FLOAT64: "<f8",
}


def _encode_string(s: str) -> bytes:
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
    if elem in _ARRAY_DTYPES:
        return head + np.asarray(value, dtype=_ARRAY_DTYPES[elem]).tobytes()
    if elem == GGUFValueType.STRING:
        return head + b"".join(_encode_string(s) for s in value)
    # nested arrays: each inner array carries its own element type
    return head + b"".join(_encode_value(v, elem, _infer_type(v)[1]) for v in value)


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
        self.path = Path(path)
        self.version = version
        self.state = WriterState.DECLARING
        self.fields: dict[str, tuple[GGUFValueType, GGUFValueType | None, Any]] = {}
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
        """Add a metadata entry; the value type is inferred when not given."""
        self._expect(WriterState.DECLARING, "add metadata")
        if key in self.fields:
            raise ValueError(f"duplicate metadata key {key!r}")
        if type is None:
            type, inferred_elem = _infer_type(value)
            elem_type = elem_type or inferred_elem
        if key == Keys.General.ALIGNMENT:
            if type != GGUFValueType.UINT32 or value <= 0 or value & (value - 1):
                raise ValueError("general.alignment must be a uint32 power of two")
            self.alignment = int(value)
        self.fields[key] = (type, elem_type, value)

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
        if not 1 <= len(shape) <= MAX_DIMS or min(shape) < 1:
            raise ValueError(f"tensor {name!r} has an invalid shape {shape}")
        self._names.add(name)
        self.tensors.append((name, shape, gtype, tensor_nbytes(gtype, shape)))

    # -- writing ----------------------------------------------------------------------------

    def _header_bytes(self) -> bytes:
        parts = [GGUF_MAGIC, struct.pack("<IQQ", self.version, len(self.tensors), len(self.fields))]
        for key, (vtype, elem, value) in self.fields.items():
            parts += [
                _encode_string(key),
                struct.pack("<I", vtype),
                _encode_value(value, vtype, elem),
            ]
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent
        )
        self._tmp = Path(tmp)
        self._fh = os.fdopen(fd, "wb")
        self._fh.write(self._header_bytes())
        self.state = WriterState.DATA
        if not self.tensors:
            self._finish()

    def write_tensor_data(self, name: str, data: np.ndarray | bytes | memoryview) -> None:
        """Write the next tensor's data (bytes of blocks, or a scalar-typed array)."""
        if self.state == WriterState.DECLARING:
            self.write_header()
        self._expect(WriterState.DATA, "write tensor data")
        expected, shape, gtype, nbytes = self.tensors[self._next]
        if name != expected:
            raise RuntimeError(f"tensor data out of order: expected {expected!r}, got {name!r}")
        if isinstance(data, np.ndarray):
            if gtype in SCALAR_DTYPES and data.dtype != np.uint8:
                data = data.astype(SCALAR_DTYPES[gtype], copy=False)
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
        if self._next == len(self.tensors):
            self._finish()

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

    def close(self) -> None:
        if self.state == WriterState.DECLARING:
            self.write_header()
        if self.state != WriterState.DONE:
            missing = [t[0] for t in self.tensors[self._next :]]
            self.abort()
            raise RuntimeError(f"file not written: no data for tensors {missing[:5]}")

    def __enter__(self) -> GGUFWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()


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
