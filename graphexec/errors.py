"""One error hierarchy for every stage of graphexec, and the one module that defines it.

Messages say what was expected, what was found, and what to do about it::

    GraphexecError
    ├── GraphFileError           a file (or bytes) is not a valid graph file
    ├── GraphError               an invalid graph, or an executor used wrongly
    │   ├── ExecutionError       a gate failed while the graph ran (names the node)
    │   ├── OnnxImportError      an ONNX model graphexec cannot represent
    │   │   └── OnnxNeedsConstantsError  ... until graph inputs are bound (import_onnx constants=)
    │   └── OnnxExportError      a graph that cannot be written as ONNX
    ├── UnknownOpError           an op no installed plugin provides (or too old a version)
    ├── PluginError              a plugin that cannot be imported or breaks the gate contract
    ├── OnnxUnavailableError     the optional ``onnx`` package is missing
    ├── OptimError, TrainingError, DataError
    ├── DrawError, PlotError, DistributedError
    └── UsageError               a command-line mistake (the CLI exits 2 with one line)

Besides: :class:`ScanError` (internal to the file format, always turned into a
``GraphFileError``) and :class:`InProcessGateWarning`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pydantic

__all__ = [
    "bounded",
    "describe_loc",
    "first_problem",
    "printable",
    "DataError",
    "DistributedError",
    "DrawError",
    "ExecutionError",
    "GraphexecError",
    "GraphFileError",
    "GraphError",
    "InProcessGateWarning",
    "OnnxExportError",
    "OnnxImportError",
    "OnnxNeedsConstantsError",
    "OnnxUnavailableError",
    "OptimError",
    "PlotError",
    "PluginError",
    "ScanError",
    "TrainingError",
    "UnknownOpError",
    "UsageError",
]


#: The longest message any GraphexecError carries, in characters.
MAX_MESSAGE = 1000


class GraphexecError(Exception):
    """Base class of every error graphexec raises on purpose.

    Its message is always one printable line of at most :data:`MAX_MESSAGE` characters: control
    characters (newlines included) are escaped by :func:`printable` and a longer message keeps
    its start and says how much was cut, so no file or argument can make an error huge.
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (bounded(args[0]),)
        super().__init__(*args)


class GraphFileError(GraphexecError):
    """A file (or bytes) is not a valid graphexec graph file."""


class GraphError(GraphexecError):
    """A graph is invalid (cycle, dangling or duplicate name, bad shape, dtype or attribute),
    or an executor was used wrongly (missing input, backward before forward)."""


class ExecutionError(GraphError):
    """A gate failed while the graph ran: it raised, or returned a wrong gradient. The message
    names the node and its op. A ``GraphError`` still, so ``except GraphError`` catches it."""


class UnknownOpError(GraphexecError):
    """A graph needs an op that no installed plugin provides, or a newer version of it."""


class PluginError(GraphexecError):
    """A gate plugin could not be imported or its class breaks the gate contract."""


class OnnxUnavailableError(GraphexecError):
    """The optional ``onnx`` package is not installed."""


class OnnxImportError(GraphError):
    """An ONNX model uses ops (or op settings) that graphexec cannot represent."""


class OnnxNeedsConstantsError(OnnxImportError):
    """An ONNX model whose shapes, axes or bounds are graph inputs: it imports once they are
    bound to values (``import_onnx(model, constants={...})``). ``names``: those inputs."""

    def __init__(self, message: str, names: Sequence[str]) -> None:
        super().__init__(message)
        self.names = tuple(names)


class OnnxExportError(GraphError):
    """A graph cannot be written as ONNX (e.g. an input whose rank is unknown)."""


class OptimError(GraphexecError):
    """An optimiser or schedule got a bad hyperparameter, gradient or saved state."""


class TrainingError(GraphexecError):
    """Training cannot start or cannot go on (bad settings or data, a loss that is not finite)."""


class DataError(GraphexecError):
    """A dataset could not be made or read: bad argument, missing file, bad content."""


class DrawError(GraphexecError):
    """A drawing could not be written: unknown format, Graphviz missing or failing."""


class PlotError(GraphexecError):
    """A figure cannot be drawn (matplotlib missing, nothing to draw, unwritable file)."""


class DistributedError(GraphexecError):
    """Dask is missing, a scheduler cannot be reached, or a sweep or prediction is ill-posed."""


class UsageError(GraphexecError):
    """A command-line mistake (bad -i value, missing file): exit 2 with one line."""


class ScanError(ValueError):
    """The bytes are not an acceptable msgpack header; the message says why and where.

    Internal to the file format: the decoder turns it into a :class:`GraphFileError`."""


class InProcessGateWarning(UserWarning):
    """A graph saved with a gate that only this process knows (``register_gate``)."""


def bounded(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` as one printable line of at most ``limit`` characters: a longer one keeps its
    start and says how long it was ("... [cut: 800012 characters in all]")."""
    line = printable(message[:2 * limit])  # escape only what can be shown: it may be huge
    if len(message) <= 2 * limit and len(line) <= limit:
        return line
    return f"{line[:limit - 48]}... [cut: {len(message)} characters in all]"


def printable(text: str) -> str:
    """``text`` with every control character escaped: messages may quote untrusted values."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


_PLAIN_LOC = re.compile(r"[A-Za-z0-9_.:\-\[\]]{1,64}")


def describe_loc(loc: Sequence[int | str]) -> str:
    """A pydantic error location as ``a.0.b``; a part that came from the file and is not a plain
    name (control characters, markup, very long) is shown escaped and cut, never raw."""
    parts = []
    for p in loc:
        text = str(p)
        if not (isinstance(p, int) or _PLAIN_LOC.fullmatch(text)):
            text = ascii(text[:64]) + ("..." if len(text) > 64 else "")
        parts.append(text)
    return ".".join(parts) or "header"


def first_problem(e: pydantic.ValidationError) -> tuple[str, str]:
    """``(where, what)`` of pydantic's first error: the location as :func:`describe_loc`
    gives it, and the message with control characters escaped (the input is never quoted)."""
    err = e.errors(include_url=False, include_context=False, include_input=False)[0]
    return describe_loc(err["loc"]), printable(err["msg"])
