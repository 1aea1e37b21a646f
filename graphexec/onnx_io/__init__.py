"""ONNX interop: ``export_onnx`` (graphexec → ONNX), ``import_onnx`` (ONNX op subset → graphexec).

onnx and onnxruntime are an optional extra (``pip install 'graphexec[onnx]'``), imported on first
use: ``import graphexec.onnx_io`` works without them, and a call says what to install.
"""

from graphexec.onnx_io.common import (
    OnnxExportError,
    OnnxImportError,
    OnnxUnavailableError,
    require_onnx,
)
from graphexec.onnx_io.export import DEFAULT_OPSET, export_onnx
from graphexec.onnx_io.importer import SUPPORTED_OPS, import_onnx

__all__ = [
    "DEFAULT_OPSET",
    "SUPPORTED_OPS",
    "OnnxExportError",
    "OnnxImportError",
    "OnnxUnavailableError",
    "export_onnx",
    "import_onnx",
    "require_onnx",
]
