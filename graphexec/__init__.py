"""graphexec: run computational graphs stored in files — forward, backward, train.

The pipeline, one module per stage::

    file ─fileformat─► header ─graph─► Graph ─plan─► Plan ─executor─► forward/backward
"""

from graphexec.api import dumps, load, loads, save
from graphexec.builder import GraphBuilder, Value
from graphexec.errors import GraphError, GraphexecError, GraphFileError, PluginError, UnknownOpError
from graphexec.executor import Executor, run
from graphexec.gate import Attrs, Ctx, Gate, NoAttrs, unbroadcast
from graphexec.gradcheck import GradcheckReport, gradcheck
from graphexec.graph import Graph
from graphexec.registry import register_gate

__version__ = "0.1.0"

# Heavier parts load on first use, so that `import graphexec` stays fast.
_LAZY = {
    "nn": ("graphexec.nn", None),
    "optim": ("graphexec.optim", None),
    "data": ("graphexec.data", None),
    "testing": ("graphexec.testing", None),
    "draw": ("graphexec.draw", None),
    "fit": ("graphexec.train", "fit"),
    "predict": ("graphexec.train", "predict"),
    "History": ("graphexec.train", "History"),
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
