"""The closed dtype table: the one place that says which element types a graph may hold.

Every stage reads it from here: the file format (names and little-endian type strings), the
graph stage and the builder (what a graph may declare or save), and ONNX import/export (the
matching ``TensorProto`` element types).
"""

from __future__ import annotations

from typing import Literal

__all__ = ["DTYPES", "DTYPE_NAMES", "DType", "ONNX_DTYPES"]

#: dtype name as a file writes it -> numpy little-endian type string.
DTYPES: dict[str, str] = {
    "float32": "<f4",
    "float64": "<f8",
    "int32": "<i4",
    "int64": "<i8",
    "bool": "|b1",
}

#: The dtype names, in table order.
DTYPE_NAMES: tuple[str, ...] = tuple(DTYPES)

#: The same names as a type (the file-format schema validates with it). ``tests/test_dtypes.py``
#: checks that it lists exactly :data:`DTYPE_NAMES`.
DType = Literal["float32", "float64", "int32", "int64", "bool"]

#: dtype name -> ONNX ``TensorProto`` element type.
ONNX_DTYPES: dict[str, int] = {"float32": 1, "float64": 11, "int32": 6, "int64": 7, "bool": 9}
