"""One error hierarchy for every stage of graphexec.

Messages say what was expected, what was found, and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "bounded",
    "printable",
    "GraphexecError",
    "GraphFileError",
    "GraphError",
    "UnknownOpError",
    "PluginError",
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


class UnknownOpError(GraphexecError):
    """A graph needs an op that no installed plugin provides, or a newer version of it."""


class PluginError(GraphexecError):
    """A gate plugin could not be imported or its class breaks the gate contract."""


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
