"""Files written by llamba read in gguf-py, files written by gguf-py read in llamba.

Every metadata value type (scalars, strings, arrays of each, nested and empty arrays) and
several tensor types (F32, F16, BF16, I32, Q8_0, Q4_K; 1 to 4 dims) must come through with
the same value types, values, shapes and bytes, with the default and custom alignments.
The writer's state machine must refuse out-of-order use and never leave a partial file.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from llamba.formats import GGMLType, GGUFValueType
from llamba.formats.gguf_reader import GGUFFile
from llamba.formats.gguf_writer import GGUFWriter, copy_gguf

VT = GGUFValueType

_INT_TYPES = {
    VT.UINT8: np.uint8,
    VT.INT8: np.int8,
    VT.UINT16: np.uint16,
    VT.INT16: np.int16,
    VT.UINT32: np.uint32,
    VT.INT32: np.int32,
    VT.UINT64: np.uint64,
    VT.INT64: np.int64,
}
_FLOAT_TYPES = {VT.FLOAT32: np.float32, VT.FLOAT64: np.float64}
NUMPY_OF = {**_INT_TYPES, **_FLOAT_TYPES, VT.BOOL: np.bool_}

UNICODE = "héllo wörld — 日本語 🦙 e\u0301 ﬁ"


def metadata_cases(include_empty: bool) -> list[tuple[str, object, VT, VT | None]]:
    """(key, value as llamba should read it, value type, array element type)."""
    rng = np.random.default_rng(1234)
    cases: list[tuple[str, object, VT, VT | None]] = []
    for vt, dt in _INT_TYPES.items():
        info = np.iinfo(dt)
        name = vt.name.lower()
        cases += [
            (f"scalar.{name}.min", int(info.min), vt, None),
            (f"scalar.{name}.max", int(info.max), vt, None),
        ]
        arr = rng.integers(info.min, info.max, size=7, dtype=dt, endpoint=True)
        cases.append((f"array.{name}", arr, VT.ARRAY, vt))
    for vt, dt in _FLOAT_TYPES.items():
        name = vt.name.lower()
        cases += [
            (f"scalar.{name}.pi", float(dt(math.pi)), vt, None),
            (f"scalar.{name}.max", float(np.finfo(dt).max), vt, None),
            (f"scalar.{name}.tiny", float(np.finfo(dt).smallest_subnormal), vt, None),
            (f"scalar.{name}.neg_inf", -math.inf, vt, None),
        ]
        cases.append((f"array.{name}", rng.standard_normal(9).astype(dt), VT.ARRAY, vt))
    cases += [
        ("scalar.bool.true", True, VT.BOOL, None),
        ("scalar.bool.false", False, VT.BOOL, None),
        ("array.bool", np.array([True, False, False, True]), VT.ARRAY, VT.BOOL),
        ("string.plain", "llama", VT.STRING, None),
        ("string.empty", "", VT.STRING, None),
        ("string.unicode", UNICODE, VT.STRING, None),
        ("string.controls", "tab\tnewline\nnul\0end", VT.STRING, None),
        ("array.string", ["a", "", UNICODE, "Ġthe", "<|im_end|>"], VT.ARRAY, VT.STRING),
        (
            "array.nested.int32",
            [np.array([1, 2, 3], np.int32), np.array([-4], np.int32)],
            VT.ARRAY,
            VT.ARRAY,
        ),
        ("array.nested.string", [["a", "bc"], [UNICODE]], VT.ARRAY, VT.ARRAY),
        (
            "array.nested.depth3",
            [[np.array([1.5], np.float32)], [np.array([2.5, 3.5], np.float32)]],
            VT.ARRAY,
            VT.ARRAY,
        ),
    ]
    if include_empty:  # gguf-py's writer refuses empty arrays; llamba writes them
        cases += [
            ("array.empty.int32", np.array([], np.int32), VT.ARRAY, VT.INT32),
            ("array.empty.float64", np.array([], np.float64), VT.ARRAY, VT.FLOAT64),
            ("array.empty.string", [], VT.ARRAY, VT.STRING),
        ]
    return cases


# (name, ggml type, numpy-order element shape)
TENSOR_CASES = [
    ("f32.1d", GGMLType.F32, (7,)),
    ("f16.2d", GGMLType.F16, (3, 5)),
    ("bf16.3d", GGMLType.BF16, (2, 3, 4)),
    ("i32.1d", GGMLType.I32, (6,)),
    ("q8_0.2d", GGMLType.Q8_0, (4, 64)),
    ("q4_k.4d", GGMLType.Q4_K, (2, 1, 3, 256)),
    ("f32.4d", GGMLType.F32, (2, 3, 1, 5)),
    ("q4_k.1d", GGMLType.Q4_K, (512,)),
]


def tensor_data(gtype: GGMLType, shape: tuple[int, ...], rng) -> np.ndarray:
    """Data as gguf-py's writer takes it: scalar types as typed arrays, BF16 as uint16 bits,
    block types as uint8 with the byte shape (rows..., row_bytes)."""
    values = rng.standard_normal(shape).astype(np.float32)
    if gtype == GGMLType.F32:
        return values
    if gtype == GGMLType.F16:
        return values.astype(np.float16)
    if gtype == GGMLType.BF16:
        return (values.view(np.uint32) >> 16).astype(np.uint16)
    if gtype == GGMLType.I32:
        return rng.integers(-(2**31), 2**31, size=shape, dtype=np.int32)
    if gtype == GGMLType.Q8_0:
        return gguf.quants.quantize(values, gguf.GGMLQuantizationType.Q8_0)
    # other block types: raw random blocks (bytes only have to survive unchanged)
    byte_shape = gguf.quants.quant_shape_to_byte_shape(shape, gguf.GGMLQuantizationType(gtype))
    return rng.integers(0, 256, size=byte_shape, dtype=np.uint8)


def ggml_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(reversed(shape))


def same_value(got, want) -> bool:
    """Equal values with equal types (numpy dtype, list vs array, int vs bool vs float)."""
    if isinstance(want, np.ndarray):
        return (
            isinstance(got, np.ndarray)
            and got.dtype == want.dtype
            and got.shape == want.shape
            and np.array_equal(got, want)
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(same_value(g, w) for g, w in zip(got, want, strict=True))
        )
    return type(got) is type(want) and got == want


def leaves(value) -> list:
    """The scalar leaves of a (nested) array, flattened as gguf-py's contents() does."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list):
        return [x for v in value for x in leaves(v)]
    return [value]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# -- llamba writes, gguf-py reads ------------------------------------------------------------


def write_with_llamba(path: Path, alignment: int | None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    data = {name: tensor_data(gt, shape, rng) for name, gt, shape in TENSOR_CASES}
    with GGUFWriter(path, alignment=alignment) as w:
        w.add("general.architecture", "test", VT.STRING)
        for key, value, vt, elem in metadata_cases(include_empty=True):
            w.add(key, value, vt, elem)
        for name, gt, shape in TENSOR_CASES:
            w.add_tensor_info(name, ggml_shape(shape), gt)
        for name, _, _ in TENSOR_CASES:
            w.write_tensor_data(name, data[name])
    return data


@pytest.mark.parametrize("alignment", [None, 64, 256])
def test_llamba_file_reads_in_gguf_py(tmp_path, alignment):
    path = tmp_path / "llamba.gguf"
    data = write_with_llamba(path, alignment)
    r = gguf.GGUFReader(path)

    assert r.alignment == (alignment or 32)
    assert r.data_offset % r.alignment == 0
    for key, value, vt, elem in metadata_cases(include_empty=True):
        field = r.fields[key]
        assert field.types[0] == vt, key
        if vt != VT.ARRAY:
            assert same_value(field.contents(), value), key
            continue
        if len(value) == 0:
            assert field.types == [VT.ARRAY] and field.contents() == [], key
            continue
        assert field.types[1] == elem, key
        if elem in NUMPY_OF:
            assert field.parts[field.data[0]].dtype == np.dtype(NUMPY_OF[elem]), key
        assert field.contents() == leaves(value), key

    assert [t.name for t in r.tensors] == [n for n, _, _ in TENSOR_CASES]
    for t, (name, gt, shape) in zip(r.tensors, TENSOR_CASES, strict=True):
        assert int(t.tensor_type) == int(gt), name
        assert tuple(int(d) for d in t.shape) == ggml_shape(shape), name
        assert t.data_offset % r.alignment == 0, name
        assert t.data.tobytes() == data[name].tobytes(), name


# -- gguf-py writes, llamba reads ------------------------------------------------------------


def write_with_gguf_py(path: Path, alignment: int | None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    data = {name: tensor_data(gt, shape, rng) for name, gt, shape in TENSOR_CASES}
    w = gguf.GGUFWriter(path, arch="test")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, value, vt, elem in metadata_cases(include_empty=False):
        # gguf-py takes Python sequences and infers the element types of nested arrays
        w.add_key_value(key, as_lists(value), vt, elem)
    for name, gt, _ in TENSOR_CASES:
        raw = None if gt in (GGMLType.F32, GGMLType.F16, GGMLType.I32) else gguf_type(gt)
        w.add_tensor(name, data[name], raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return data


def as_lists(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list):
        return [as_lists(v) for v in value]
    return value


def gguf_type(gt: GGMLType) -> gguf.GGMLQuantizationType:
    return gguf.GGMLQuantizationType(int(gt))


@pytest.mark.parametrize("alignment", [None, 64, 256])
def test_gguf_py_file_reads_in_llamba(tmp_path, alignment):
    path = tmp_path / "gguf_py.gguf"
    data = write_with_gguf_py(path, alignment)
    with GGUFFile(path) as f:
        assert f.alignment == (alignment or 32)
        assert f.data_offset % f.alignment == 0
        assert f.architecture == "test"
        for key, value, vt, elem in metadata_cases(include_empty=False):
            field = f.fields[key]
            assert field.type == vt and field.elem_type == elem, key
            assert same_value(field.value, value), key

        assert list(f.tensors) == [n for n, _, _ in TENSOR_CASES]
        for name, gt, shape in TENSOR_CASES:
            t = f.tensors[name]
            assert t.type == gt and t.shape == ggml_shape(shape), name
            assert t.offset % f.alignment == 0, name
            assert f.tensor_bytes(name).tobytes() == data[name].tobytes(), name
            arr = f.tensor_array(name)
            if gt in (GGMLType.F32, GGMLType.F16, GGMLType.I32, GGMLType.BF16):
                assert arr.shape == shape and arr.dtype == data[name].dtype, name
                assert np.array_equal(arr, data[name]), name
            else:
                assert arr.shape == (math.prod(shape[:-1]), data[name].shape[-1]), name


@pytest.mark.parametrize("alignment", [None, 64, 256])
def test_copy_of_gguf_py_file_is_byte_identical(tmp_path, alignment):
    """llamba's writer lays out a file exactly as gguf-py's does for the same content."""
    src = tmp_path / "gguf_py.gguf"
    write_with_gguf_py(src, alignment)
    with GGUFFile(src) as f:
        copy_gguf(f, tmp_path / "copy.gguf")
    assert sha256(tmp_path / "copy.gguf") == sha256(src)


@pytest.mark.parametrize("alignment", [None, 64, 256])
def test_llamba_round_trip_keeps_every_value_type(tmp_path, alignment):
    """Including what gguf-py cannot write: empty arrays of each kind."""
    path = tmp_path / "llamba.gguf"
    data = write_with_llamba(path, alignment)
    with GGUFFile(path) as f:
        for key, value, vt, elem in metadata_cases(include_empty=True):
            field = f.fields[key]
            assert field.type == vt and field.elem_type == elem, key
            assert same_value(field.value, value), key
        for name, _, _ in TENSOR_CASES:
            assert f.tensor_bytes(name).tobytes() == data[name].tobytes(), name
        copy_gguf(f, tmp_path / "copy.gguf")
    assert sha256(tmp_path / "copy.gguf") == sha256(path)


def test_writer_infers_and_honours_element_types(tmp_path):
    """An explicit element type wins over inference, including UINT8 (enum value 0)."""
    path = tmp_path / "types.gguf"
    with GGUFWriter(path) as w:
        w.add("explicit.u8", [1, 2, 255], elem_type=VT.UINT8)
        w.add("explicit.f64", [0.5, 1.5], elem_type=VT.FLOAT64)
        w.add("inferred.int", 5)
        w.add("inferred.big", 2**40)
        w.add("inferred.float", 0.25)
        w.add("inferred.bool", True)
        w.add("inferred.str_list", ["x", "y"])
        w.add("inferred.numpy", np.arange(3, dtype=np.int16))
    r = gguf.GGUFReader(path)
    types = {k: f.types for k, f in r.fields.items()}
    assert types["explicit.u8"] == [VT.ARRAY, VT.UINT8]
    assert types["explicit.f64"] == [VT.ARRAY, VT.FLOAT64]
    assert types["inferred.int"] == [VT.INT32]
    assert types["inferred.big"] == [VT.INT64]
    assert types["inferred.float"] == [VT.FLOAT32]
    assert types["inferred.bool"] == [VT.BOOL]
    assert types["inferred.str_list"] == [VT.ARRAY, VT.STRING]
    assert types["inferred.numpy"] == [VT.ARRAY, VT.INT16]
    assert r.fields["explicit.u8"].contents() == [1, 2, 255]


# -- writer state machine ----------------------------------------------------------------------


def declare_two(w: GGUFWriter) -> None:
    w.add("general.architecture", "test")
    w.add_tensor_info("a", (4,), GGMLType.F32)
    w.add_tensor_info("b", (32, 2), GGMLType.Q8_0)


A_DATA = np.arange(4, dtype=np.float32)
B_DATA = np.zeros((2, 34), np.uint8)


def metadata_after_header(w):
    declare_two(w)
    w.write_header()
    w.add("late.key", 1)


def tensor_after_header(w):
    declare_two(w)
    w.write_tensor_data("a", A_DATA)
    w.add_tensor_info("late", (4,), GGMLType.F32)


def data_out_of_order(w):
    declare_two(w)
    w.write_tensor_data("b", B_DATA)


def wrong_byte_count(w):
    declare_two(w)
    w.write_tensor_data("a", np.arange(5, dtype=np.float32))


def wrong_dtype_for_bf16(w):
    w.add_tensor_info("h", (4,), GGMLType.BF16)
    w.write_tensor_data("h", np.ones(4, np.float32))  # floats are not BF16 bits


def duplicate_key(w):
    w.add("k", 1)
    w.add("k", 2)


def duplicate_tensor(w):
    w.add_tensor_info("t", (4,), GGMLType.F32)
    w.add_tensor_info("t", (4,), GGMLType.F32)


def value_out_of_range(w):
    w.add("too.big", 300, VT.UINT8)


def data_after_done(w):
    declare_two(w)
    w.write_tensor_data("a", A_DATA)
    w.write_tensor_data("b", B_DATA)
    w.write_tensor_data("b", B_DATA)


def missing_tensor_data(w):
    declare_two(w)
    w.write_tensor_data("a", A_DATA)
    w.close()


def user_error_inside_with(w):
    declare_two(w)
    w.write_tensor_data("a", A_DATA)
    raise KeyboardInterrupt


def user_error_after_last_tensor(w):
    declare_two(w)
    w.write_tensor_data("a", A_DATA)
    w.write_tensor_data("b", B_DATA)
    raise RuntimeError("caller failed after the data was written")


MISUSES = [
    (metadata_after_header, RuntimeError),
    (tensor_after_header, RuntimeError),
    (data_out_of_order, RuntimeError),
    (wrong_byte_count, ValueError),
    (wrong_dtype_for_bf16, TypeError),
    (duplicate_key, ValueError),
    (duplicate_tensor, ValueError),
    (value_out_of_range, ValueError),
    (data_after_done, RuntimeError),
    (missing_tensor_data, RuntimeError),
    (user_error_inside_with, KeyboardInterrupt),
    (user_error_after_last_tensor, RuntimeError),
]


@pytest.mark.parametrize("existing", [False, True], ids=["no_target", "existing_target"])
@pytest.mark.parametrize("misuse, error", MISUSES, ids=[m.__name__ for m, _ in MISUSES])
def test_writer_misuse_raises_and_leaves_target_alone(tmp_path, misuse, error, existing):
    target = tmp_path / "out.gguf"
    before = b"previous file, must survive"
    if existing:
        target.write_bytes(before)
    with pytest.raises(error), GGUFWriter(target) as w:
        misuse(w)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["out.gguf"] if existing else [])
    if existing:
        assert target.read_bytes() == before


@pytest.mark.parametrize("misuse, error", MISUSES[:-2], ids=[m.__name__ for m, _ in MISUSES[:-2]])
def test_writer_misuse_without_with_then_close(tmp_path, misuse, error):
    """Used without `with`: the error is raised, and close() or abort() cleans up."""
    target = tmp_path / "out.gguf"
    w = GGUFWriter(target)
    with pytest.raises(error):
        misuse(w)
    with contextlib.suppress(RuntimeError):  # missing tensor data: nothing is written
        w.close()
    if target.exists():  # the misuse was harmless to the declared content: file is valid
        with GGUFFile(target) as f:
            assert f.version == 3
    assert [p.name for p in tmp_path.iterdir() if p.name != "out.gguf"] == []


def test_writer_without_tensors_and_custom_alignment(tmp_path):
    path = tmp_path / "meta_only.gguf"
    with GGUFWriter(path, alignment=128) as w:
        w.add("general.architecture", "test")
    r = gguf.GGUFReader(path)
    assert r.alignment == 128 and len(r.tensors) == 0
    assert path.stat().st_size % 128 == 0
    with GGUFFile(path) as f:
        assert f.alignment == 128 and f.tensors == {}


@pytest.mark.parametrize("alignment", [0, 3, 48, 2**32])
def test_writer_rejects_bad_alignment(tmp_path, alignment):
    with pytest.raises(ValueError):
        GGUFWriter(tmp_path / "x.gguf", alignment=alignment)
    assert list(tmp_path.iterdir()) == []


def test_written_file_has_normal_permissions(tmp_path):
    """The temp file (created private) gets the permissions a plain open() would give."""
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    path = tmp_path / "perm.gguf"
    with GGUFWriter(path) as w:
        w.add("general.architecture", "test")
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_abort_drops_the_partial_file_and_close_then_refuses(tmp_path):
    target = tmp_path / "out.gguf"
    w = GGUFWriter(target)
    declare_two(w)
    w.write_tensor_data("a", A_DATA)
    w.write_tensor_data("b", B_DATA)
    w.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        w.close()
    assert list(tmp_path.iterdir()) == []


def test_file_appears_only_at_close(tmp_path):
    target = tmp_path / "out.gguf"
    w = GGUFWriter(target)
    declare_two(w)
    w.write_tensor_data("a", A_DATA)
    w.write_tensor_data("b", B_DATA)
    assert not target.exists()
    w.close()
    w.close()  # a second close is a no-op
    assert [p.name for p in tmp_path.iterdir()] == ["out.gguf"]
    with GGUFFile(target) as f:
        assert np.array_equal(f.tensor_array("a"), A_DATA)
        assert f.tensor_bytes("b").tobytes() == B_DATA.tobytes()


def hand_built_nested_file() -> bytes:
    """One entry: an array of 3 arrays — an empty string array, an empty array of arrays,
    and a one-string array — laid out by hand, padded to the default alignment of 32."""
    key = b"nested"
    value = struct.pack("<IQ", VT.ARRAY, 3)
    value += struct.pack("<IQ", VT.STRING, 0)
    value += struct.pack("<IQ", VT.ARRAY, 0)
    value += struct.pack("<IQ", VT.STRING, 1) + struct.pack("<Q", 1) + b"a"
    entry = struct.pack("<Q", len(key)) + key + struct.pack("<I", VT.ARRAY) + value
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + entry
    return head + bytes(-len(head) % 32)


def test_empty_inner_arrays_keep_their_element_type(tmp_path):
    """An empty inner array has no element to infer a type from: the reader must remember
    it, or a copy turns the empty string array into an empty INT32 array."""
    src = tmp_path / "nested.gguf"
    src.write_bytes(hand_built_nested_file())
    with GGUFFile(src) as f:
        value = f.get("nested")
        assert value == [[], [], ["a"]]
        assert [inner.elem_type for inner in value] == [VT.STRING, VT.ARRAY, VT.STRING]
        copy_gguf(f, tmp_path / "copy.gguf")
    assert (tmp_path / "copy.gguf").read_bytes() == src.read_bytes()
