"""graphexec: run computational graphs stored in files — forward, backward, train.

The pipeline, one module per stage::

    file ─fileformat─► header ─graph─► Graph ─plan─► Plan ─executor─► forward/backward

``import graphexec`` loads only this file and the error classes: every other public name is
imported on first use (PEP 562 module ``__getattr__``), so that the command line and a script
that needs one stage do not pay for numpy, pydantic, networkx and the training stack up front.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:  # what the lazy names below resolve to, for type checkers and IDEs
    from graphexec import draw, examples, nn, optim, testing
    from graphexec.api import dumps, load, loads, save
    from graphexec.builder import GraphBuilder, Value
    from graphexec.executor import Executor, run
    from graphexec.gate import Attrs, Ctx, Gate, NoAttrs, Spec, unbroadcast
    from graphexec.gradcheck import GradcheckReport, gradcheck
    from graphexec.graph import Graph
    from graphexec.registry import register_gate
    from graphexec.training import data
    from graphexec.training.train import History, fit, predict
    from graphexec.viewer import view

__version__ = "0.1.0"

#: public name -> (module, attribute in it; None: the module itself), imported on first use.
_LAZY: dict[str, tuple[str, str | None]] = {
    "dumps": ("graphexec.api", "dumps"),
    "load": ("graphexec.api", "load"),
    "loads": ("graphexec.api", "loads"),
    "save": ("graphexec.api", "save"),
    "GraphBuilder": ("graphexec.builder", "GraphBuilder"),
    "Value": ("graphexec.builder", "Value"),
    "Executor": ("graphexec.executor", "Executor"),
    "run": ("graphexec.executor", "run"),
    "Attrs": ("graphexec.gate", "Attrs"),
    "Ctx": ("graphexec.gate", "Ctx"),
    "Gate": ("graphexec.gate", "Gate"),
    "NoAttrs": ("graphexec.gate", "NoAttrs"),
    "Spec": ("graphexec.gate", "Spec"),
    "unbroadcast": ("graphexec.gate", "unbroadcast"),
    "GradcheckReport": ("graphexec.gradcheck", "GradcheckReport"),
    "gradcheck": ("graphexec.gradcheck", "gradcheck"),
    "Graph": ("graphexec.graph", "Graph"),
    "register_gate": ("graphexec.registry", "register_gate"),
    "nn": ("graphexec.nn", None),  # the layers and mlp, plus convnet
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


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    """The ``graphexec`` module object. Importing a submodule binds it on its package, so the
    first ``import graphexec.gradcheck`` (by anyone) would shadow the lazily imported function
    ``gx.gradcheck``; binding keeps the function of that name instead, as the eager
    ``from graphexec.gradcheck import gradcheck`` of 0.1 did."""

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == (value.__name__, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
    "examples",
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
    "Spec",
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
