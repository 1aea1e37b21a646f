"""One error hierarchy for every stage of graphexec.

Messages say what was expected, what was found, and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "printable",
    "GraphexecError",
    "GraphFileError",
    "GraphError",
    "UnknownOpError",
    "PluginError",
]


class GraphexecError(Exception):
    """Base class of every error graphexec raises on purpose."""


class GraphFileError(GraphexecError):
    """A file (or bytes) is not a valid graphexec graph file."""


class GraphError(GraphexecError):
    """A graph is invalid (cycle, dangling or duplicate name, bad shape, dtype or attribute),
    or an executor was used wrongly (missing input, backward before forward)."""


class UnknownOpError(GraphexecError):
    """A graph needs an op that no installed plugin provides, or a newer version of it."""


class PluginError(GraphexecError):
    """A gate plugin could not be imported or its class breaks the gate contract."""


def printable(text: str) -> str:
    """``text`` with every control character escaped: messages may quote untrusted values."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
