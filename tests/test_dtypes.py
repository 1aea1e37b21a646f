"""The dtype table has one home (graphexec.dtypes); every stage agrees with it."""

import typing

import numpy as np

from graphexec import dtypes
from graphexec.fileformat.schema import InputSpec, TensorEntry


def test_the_literal_type_lists_exactly_the_table():
    assert typing.get_args(dtypes.DType) == dtypes.DTYPE_NAMES


def test_schema_validates_with_the_table():
    assert InputSpec.model_fields["dtype"].annotation is dtypes.DType
    assert TensorEntry.model_fields["dtype"].annotation is dtypes.DType


def test_type_strings_are_little_endian_and_name_the_same_dtype():
    for name, code in dtypes.DTYPES.items():
        assert np.dtype(code).name == name
        assert code[0] in "<|"


def test_onnx_table_covers_the_same_names():
    assert tuple(dtypes.ONNX_DTYPES) == dtypes.DTYPE_NAMES
    assert len(set(dtypes.ONNX_DTYPES.values())) == len(dtypes.ONNX_DTYPES)
