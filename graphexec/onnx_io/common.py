"""What export and import share: the lazy ``onnx`` import, the error classes, the dtype table."""

from __future__ import annotations

import re
from types import ModuleType
from typing import Any

import numpy as np

from graphexec.dtypes import ONNX_DTYPES
from graphexec.errors import OnnxExportError, OnnxImportError, OnnxUnavailableError

__all__ = ["ONNX_DTYPES", "OnnxExportError", "OnnxImportError", "OnnxUnavailableError",
           "custom_domain", "numpy_dtype", "onnx_elem_type", "require_onnx"]

INSTALL_HINT = "pip install 'graphexec[onnx]'"


def require_onnx() -> ModuleType:
    """The ``onnx`` module (with ``helper``, ``numpy_helper``, ``checker``, ``shape_inference``)."""
    try:
        import onnx
        import onnx.checker
        import onnx.helper
        import onnx.numpy_helper
        import onnx.shape_inference
    except ImportError as e:
        raise OnnxUnavailableError(
            f"ONNX support needs the optional 'onnx' package ({e}); install it with: {INSTALL_HINT}"
        ) from e
    return onnx


_FROM_ONNX = {v: k for k, v in ONNX_DTYPES.items()}


def onnx_elem_type(dtype: Any) -> int:
    return ONNX_DTYPES[np.dtype(dtype).name]


def numpy_dtype(elem_type: int, where: str) -> np.dtype[Any]:
    """The numpy dtype of an ONNX element type, or OnnxImportError for one graphexec lacks."""
    name = _FROM_ONNX.get(elem_type)
    if name is None:
        raise OnnxImportError(f"{where}: ONNX element type {elem_type} is not supported; graphexec "
                              f"has {', '.join(ONNX_DTYPES)}")
    return np.dtype(name)


def custom_domain(dist: str) -> str:
    """The ONNX domain for gates of distribution ``dist``: ``graphexec.<dist>``."""
    return "graphexec." + (re.sub(r"[^A-Za-z0-9_]+", "_", dist).strip("_").lower() or "unknown")
