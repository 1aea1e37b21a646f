"""The dtype table has one home (graphexec.dtypes); every stage agrees with it.

Version 1 of the file format holds five dtypes; version 2 adds float16, int8, int16, uint8,
uint16, uint32 and uint64. A graph is written in the oldest version that holds it.
"""

import typing

import numpy as np
import pytest

import graphexec as gx
from graphexec import dtypes
from graphexec.fileformat import decode, encode
from graphexec.fileformat.schema import (
    Header,
    HeaderV2,
    InputSpec,
    InputSpecV2,
    TensorEntry,
    TensorEntryV2,
    TrainingSectionV2,
)
from graphexec.header import Training

NEW = ["float16", "int8", "int16", "uint8", "uint16", "uint32", "uint64"]


def test_the_literal_types_list_exactly_the_table():
    assert typing.get_args(dtypes.DType) == dtypes.DTYPE_NAMES
    assert typing.get_args(dtypes.DTypeV1) == dtypes.V1_DTYPE_NAMES
    assert dtypes.V1_DTYPE_NAMES == ("float32", "float64", "int32", "int64", "bool")
    assert [n for n, v in dtypes.DTYPE_SINCE.items() if v == 2] == NEW
    assert tuple(dtypes.DTYPE_SINCE) == dtypes.DTYPE_NAMES


def test_schema_validates_with_the_table():
    assert InputSpec.model_fields["dtype"].annotation is dtypes.DTypeV1
    assert TensorEntry.model_fields["dtype"].annotation is dtypes.DTypeV1
    assert InputSpecV2.model_fields["dtype"].annotation is dtypes.DType
    assert TensorEntryV2.model_fields["dtype"].annotation is dtypes.DType
    assert TrainingSectionV2.model_fields["tensors"].annotation == list[TensorEntryV2]


def test_type_strings_are_little_endian_and_name_the_same_dtype():
    for name, code in dtypes.DTYPES.items():
        assert np.dtype(code).name == name
        assert code[0] in "<|"


def test_onnx_table_covers_the_same_names():
    assert tuple(dtypes.ONNX_DTYPES) == dtypes.DTYPE_NAMES
    assert len(set(dtypes.ONNX_DTYPES.values())) == len(dtypes.ONNX_DTYPES)
    onnx = pytest.importorskip("onnx")
    for name, code in dtypes.ONNX_DTYPES.items():  # onnx's own mapping agrees
        assert onnx.helper.tensor_dtype_to_np_dtype(code) == np.dtype(name)


def _extremes(name: str) -> np.ndarray:
    """Values at the edges of the dtype: its min and max, and for float16 subnormals, inf, nan."""
    dt = np.dtype(name)
    if dt.kind == "f":
        fi = np.finfo(dt)
        return np.array([fi.min, fi.max, fi.tiny, fi.smallest_subnormal, -0.0, np.inf, -np.inf,
                         np.nan, 0.1], dtype=dt)
    ii = np.iinfo(dt)
    return np.array([ii.min, ii.max, 0, 1, ii.max - 1], dtype=dt)


@pytest.mark.parametrize("name", NEW)
def test_new_dtypes_round_trip_as_version_2(name, tmp_path):
    b = gx.GraphBuilder("typed")
    x = b.input("x", shape=(None, 9 if name == "float16" else 5), dtype=name)
    w = b.param("w", _extremes(name))
    b.output(b.op("max", x, w), "y")
    g = b.build()
    g.training = Training({"note": "t"}, {}, {"m": _extremes(name)[::-1].copy()})
    path = tmp_path / "typed.gx"
    gx.save(g, path)
    data = path.read_bytes()
    assert data[8:12] == (2).to_bytes(4, "little")  # version 1 cannot hold the dtype
    g2 = gx.load(path)
    assert g2.input_decls[0].dtype == np.dtype(name)
    for got, want in ((g2.params["w"], _extremes(name)),
                      (g2.training.tensors["m"], _extremes(name)[::-1])):
        assert got.dtype == np.dtype(name)
        assert got.tobytes() == want.tobytes()  # bit for bit (nan, -0.0, subnormals)
    assert gx.dumps(g2) == data


def test_a_graph_of_version_1_dtypes_is_still_written_as_version_1():
    for name in dtypes.V1_DTYPE_NAMES:
        b = gx.GraphBuilder("old")
        x = b.input("x", dtype=name)
        b.output(b.op("max", x, b.param("w", np.ones(3, dtype=name))), "y")
        data = gx.dumps(b.build())
        assert data[8:12] == (1).to_bytes(4, "little"), name


@pytest.mark.parametrize("where", ["input", "param"])
def test_one_new_dtype_anywhere_makes_version_2(where):
    b = gx.GraphBuilder("mixed")
    x = b.input("x", dtype="int8" if where == "input" else "float64")
    w = b.param("w", np.ones(2, dtype="int8" if where == "param" else "float64"))
    b.output(b.op("add", x, w), "y")
    assert gx.dumps(b.build())[8:12] == (2).to_bytes(4, "little")


def _v1_bytes_naming(dtype: str, where: str) -> bytes:
    """A version-1 file whose input or parameter claims ``dtype`` (built without validation)."""
    ent = TensorEntry.model_construct(name="w", dtype=dtype if where == "param" else "float64",
                                      shape=[1], offset=0,
                                      nbytes=np.dtype(dtype if where == "param" else "f8").itemsize)
    inp = InputSpec.model_construct(name="x", dtype=dtype if where == "input" else "float64",
                                    shape=None)
    h = Header.model_construct(name="g", inputs=[inp], params=[ent], nodes=[], outputs=[], ops=[],
                               metadata={}, training=None)
    return b"".join(bytes(c) for c in encode(h, [np.zeros(1, dtype=ent.dtype)]))


@pytest.mark.parametrize("where,loc", [("input", "inputs.0.dtype"), ("param", "params.0.dtype")])
def test_a_version_1_file_naming_a_new_dtype_is_refused(where, loc):
    data = _v1_bytes_naming("uint16", where)
    assert data[8:12] == (1).to_bytes(4, "little")
    msg = (f"invalid header at {loc}: dtype 'uint16' needs format version 2, but this file is "
           "version 1 (which holds float32, float64, int32, int64, bool)")
    with pytest.raises(gx.GraphFileError) as e:
        gx.loads(data)
    assert str(e.value) == msg


def test_a_dtype_outside_the_table_is_still_refused_as_before():
    with pytest.raises(gx.GraphFileError, match=r"params\.0\.dtype: Input should be 'float32'"):
        gx.loads(_v1_bytes_naming("complex64", "param"))


def test_a_version_2_file_of_version_1_dtypes_and_no_buffers_is_still_refused():
    h, _ = decode(gx.dumps(_uint8_graph(params=False)))
    assert isinstance(h, HeaderV2)
    old = h.model_copy(update={"inputs": [h.inputs[0].model_copy(update={"dtype": "int32"})]})
    with pytest.raises(gx.GraphFileError, match="nothing version 2 adds .*no dtype beyond "
                                                "version 1's"):
        gx.loads(b"".join(bytes(c) for c in encode(old, [])))


def test_the_byte_count_of_a_new_dtype_is_checked():
    data = gx.dumps(_uint8_graph())  # 7 uint16 values: 14 bytes
    with pytest.raises(gx.GraphFileError, match="truncated"):
        gx.loads(data[:-1])


def _uint8_graph(params: bool = True) -> gx.Graph:
    b = gx.GraphBuilder("u8")
    x = b.input("x", dtype="uint8")
    b.output(b.op("add", x, b.param("w", np.arange(7, dtype="u2"))) if params else b.op("neg", x), "y")
    return b.build()


def test_header_only_reads_and_the_info_table_name_new_dtypes(tmp_path):
    path = tmp_path / "u.gx"
    gx.save(_uint8_graph(), path)
    header = gx.fileformat.read_header(path)
    assert header.inputs[0].dtype == "uint8" and header.params[0].dtype == "uint16"
