"""graphexec: run computational graphs stored in files — forward, backward, train.

The pipeline, one module per stage::

    file ─fileformat─► header ─graph─► Graph ─plan─► Plan ─executor─► forward/backward
"""

from graphexec.api import dumps, load, loads, save
from graphexec.builder import GraphBuilder, Value
from graphexec.errors import GraphError, GraphexecError, GraphFileError, PluginError, UnknownOpError
from graphexec.executor import Executor, run
from graphexec.gate import Ctx, Gate, NoAttrs, unbroadcast
from graphexec.graph import Graph
from graphexec.registry import register_gate

__version__ = "0.1.0"

__all__ = [
    "Ctx",
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
]
