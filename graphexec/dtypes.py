"""The closed dtype table: the one place that says which element types a graph may hold.

Every stage reads it from here: the file format (names, little-endian type strings, and the
format version that first holds each dtype), the graph stage and the builder (what a graph may
declare or save), and ONNX import/export (the matching ``TensorProto`` element types).
"""

from __future__ import annotations

from typing import Literal

__all__ = ["DTYPES", "DTYPE_NAMES", "DTYPE_SINCE", "DType", "DTypeV1", "ONNX_DTYPES",
           "V1_DTYPE_NAMES"]

#: dtype name as a file writes it -> numpy little-endian type string. Version 1's five first.
DTYPES: dict[str, str] = {
    "float32": "<f4",
    "float64": "<f8",
    "int32": "<i4",
    "int64": "<i8",
    "bool": "|b1",
    "float16": "<f2",
    "int8": "|i1",
    "int16": "<i2",
    "uint8": "|u1",
    "uint16": "<u2",
    "uint32": "<u4",
    "uint64": "<u8",
}

#: The dtype names, in table order.
DTYPE_NAMES: tuple[str, ...] = tuple(DTYPES)

#: dtype name -> the oldest file-format version that may hold it (``docs/format.md``).
DTYPE_SINCE: dict[str, int] = {name: 1 if i < 5 else 2 for i, name in enumerate(DTYPES)}

#: The dtypes a version-1 file may hold.
V1_DTYPE_NAMES: tuple[str, ...] = tuple(n for n, v in DTYPE_SINCE.items() if v == 1)

#: The same names as types (the file-format schema validates with them). ``tests/test_dtypes.py``
#: checks that they list exactly :data:`DTYPE_NAMES` and :data:`V1_DTYPE_NAMES`.
DType = Literal["float32", "float64", "int32", "int64", "bool",
                "float16", "int8", "int16", "uint8", "uint16", "uint32", "uint64"]
DTypeV1 = Literal["float32", "float64", "int32", "int64", "bool"]

#: dtype name -> ONNX ``TensorProto`` element type.
ONNX_DTYPES: dict[str, int] = {"float32": 1, "float64": 11, "int32": 6, "int64": 7, "bool": 9,
                               "float16": 10, "int8": 3, "int16": 5, "uint8": 2, "uint16": 4,
                               "uint32": 12, "uint64": 13}
