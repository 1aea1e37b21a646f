"""graphexec: run computational graphs stored in files — forward, backward, train.

The pipeline, one module per stage::

    file ─fileformat─► header ─graph─► Graph ─plan─► Plan ─executor─► forward/backward
"""

from graphexec.api import dumps, load, loads, save
from graphexec.builder import GraphBuilder, Value
from graphexec.errors import (
    DataError,
    DistributedError,
    DrawError,
    ExecutionError,
    GraphError,
    GraphexecError,
    GraphFileError,
    InProcessGateWarning,
    OnnxExportError,
    OnnxImportError,
    OnnxUnavailableError,
    OptimError,
    PlotError,
    PluginError,
    TrainingError,
    UnknownOpError,
    UsageError,
)
from graphexec.executor import Executor, run
from graphexec.gate import Attrs, Ctx, Gate, NoAttrs, unbroadcast
from graphexec.gradcheck import GradcheckReport, gradcheck
from graphexec.graph import Graph
from graphexec.registry import register_gate

__version__ = "0.1.0"

# Heavier parts load on first use, so that `import graphexec` stays fast.
_LAZY = {
    "nn": ("graphexec.training.nn", None),
    "optim": ("graphexec.optim", None),  # optimisers and schedules, as in 0.1
    "data": ("graphexec.training.data", None),
    "testing": ("graphexec.testing", None),
    "draw": ("graphexec.draw", None),
    "examples": ("graphexec.examples", None),
    "fit": ("graphexec.training.train", "fit"),
    "predict": ("graphexec.training.train", "predict"),
    "History": ("graphexec.training.train", "History"),
    "view": ("graphexec.viewer", "view"),
}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'graphexec' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


__all__ = [
    "Attrs",
    "DataError",
    "DistributedError",
    "DrawError",
    "ExecutionError",
    "InProcessGateWarning",
    "OnnxExportError",
    "OnnxImportError",
    "OnnxUnavailableError",
    "OptimError",
    "PlotError",
    "TrainingError",
    "UsageError",
    "Ctx",
    "GradcheckReport",
    "History",
    "data",
    "draw",
    "fit",
    "gradcheck",
    "nn",
    "optim",
    "predict",
    "testing",
    "Executor",
    "Gate",
    "Graph",
    "GraphBuilder",
    "GraphError",
    "GraphFileError",
    "GraphexecError",
    "NoAttrs",
    "PluginError",
    "UnknownOpError",
    "Value",
    "dumps",
    "load",
    "loads",
    "register_gate",
    "run",
    "save",
    "unbroadcast",
    "view",
]
