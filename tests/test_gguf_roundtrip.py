"""Both real models read in llamba exactly as gguf-py reads them, and copy byte for byte.

gguf-py's reader is the oracle: every metadata value (with its GGUF types) and every tensor
(name, type, ggml shape, offset, bytes) must match; copy_gguf must reproduce the file.
"""

from __future__ import annotations

import hashlib

import gguf
import numpy as np
import pytest

from llamba.formats import GGUFValueType
from llamba.formats.gguf_reader import GGUFFile
from llamba.formats.gguf_writer import copy_gguf

VT = GGUFValueType
CHUNK = 1 << 24  # bytes compared or hashed at a time, so memory stays flat


class OracleReader(gguf.GGUFReader):
    """gguf-py's reader, unchanged, over a plain ndarray view of its np.memmap: slicing a
    memmap subclass costs ~4x more per slice, and gguf-py slices once per token string."""

    @property
    def data(self) -> np.ndarray:
        return self._plain_data

    @data.setter
    def data(self, mapped: np.memmap) -> None:
        self._plain_data = mapped.view(np.ndarray)  # same bytes, same mapping


@pytest.fixture(scope="module")
def both_readers(real_model_path):
    """(llamba GGUFFile, gguf-py reader) on one real model; gguf-py's parse of Gemma's
    262k-token vocabulary takes seconds, so it runs once per model."""
    with GGUFFile(real_model_path) as f:
        yield f, OracleReader(real_model_path)


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8)
    if a.size != b.size:
        return False
    return all(np.array_equal(a[i : i + CHUNK], b[i : i + CHUNK]) for i in range(0, a.size, CHUNK))


def gguf_py_value(field: gguf.ReaderField):
    """A gguf-py field as llamba represents it: numbers and strings as Python scalars,
    arrays of numbers as numpy arrays of the stored dtype, arrays of strings as lists."""
    if field.types[0] != VT.ARRAY:
        return field.contents()
    if len(field.types) == 1:  # empty array: gguf-py keeps no element type
        return []
    if field.types[1] == VT.STRING:
        return field.contents()
    if field.types[1] == VT.ARRAY:
        raise AssertionError(f"{field.name}: real models have no nested arrays")
    dtype = field.parts[field.data[0]].dtype
    return np.array(field.contents(), dtype=dtype)


@pytest.mark.slow
def test_header_matches_gguf_py(both_readers):
    f, r = both_readers
    assert f.version == int(r.fields["GGUF.version"].contents())
    assert f.alignment == r.alignment
    assert f.data_offset == r.data_offset
    assert f.architecture == r.fields["general.architecture"].contents()


@pytest.mark.slow
def test_every_metadata_value_matches_gguf_py(both_readers):
    f, r = both_readers
    oracle = {k: v for k, v in r.fields.items() if not k.startswith("GGUF.")}
    assert list(f.fields) == list(oracle)  # same keys in file order
    for key, field in f.fields.items():
        want_field = oracle[key]
        assert field.offset == want_field.offset, key
        assert field.type == want_field.types[0], key
        if field.type == VT.ARRAY:
            assert field.elem_type == want_field.types[1], key
        want = gguf_py_value(want_field)
        if isinstance(want, np.ndarray):
            assert isinstance(field.value, np.ndarray), key
            assert field.value.dtype == want.dtype, key
            assert np.array_equal(field.value, want), key
        elif isinstance(want, list):  # strings; llamba's list also keeps the element type
            assert isinstance(field.value, list) and field.value == want, key
            assert field.value.elem_type == VT.STRING, key
        else:
            assert type(field.value) is type(want), key
            assert field.value == want, key
        assert f.get(key) is field.value


@pytest.mark.slow
def test_every_tensor_matches_gguf_py(both_readers):
    f, r = both_readers
    assert list(f.tensors) == [t.name for t in r.tensors]
    for t in r.tensors:
        info = f.tensors[t.name]
        assert int(info.type) == int(t.tensor_type), t.name
        assert info.shape == tuple(int(d) for d in t.shape), t.name
        assert info.offset == t.data_offset, t.name
        assert info.nbytes == t.n_bytes, t.name
        assert same_bytes(f.tensor_bytes(t.name), t.data), t.name
        view = f.tensor_array(t.name)
        assert view.shape == t.data.shape, t.name  # gguf-py: numpy order, bytes for blocks
        if view.dtype != np.uint16:  # gguf-py views BF16 as bytes, llamba as uint16 bits
            assert view.dtype == t.data.dtype, t.name


@pytest.mark.slow
def test_tensor_views_are_zero_copy(both_readers):
    f, _ = both_readers
    for name in list(f.tensors)[:5]:
        view = f.tensor_bytes(name)
        assert not view.flags.owndata and not view.flags.writeable


@pytest.mark.slow
def test_copy_is_byte_identical(real_model_path, tmp_path):
    copy = tmp_path / "copy.gguf"
    with GGUFFile(real_model_path) as f:
        copy_gguf(f, copy)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.gguf"]  # no temp file left
    assert sha256_file(copy) == sha256_file(real_model_path)
