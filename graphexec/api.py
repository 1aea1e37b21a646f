"""Files ⇄ graphs: ``load``, ``loads``, ``save``, ``dumps``."""

from __future__ import annotations

import os

from graphexec.errors import GraphError, GraphFileError
from graphexec.fileformat import Limits, decode, encode, read_file, write_file
from graphexec.fileformat.codec import DEFAULT_LIMITS
from graphexec.fileformat.mapped import map_file
from graphexec.graph import Graph
from graphexec.header import from_header, to_header
from graphexec.registry import warn_in_process

__all__ = ["load", "loads", "save", "dumps"]


def _graph(header: object, arrays: list, where: str) -> Graph:  # type: ignore[type-arg]
    try:
        return from_header(header, arrays)  # type: ignore[arg-type]
    except GraphError as e:
        raise GraphFileError(f"{where}: invalid graph: {e}") from e


def load(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS,
         mmap: bool = False) -> Graph:
    """Read, validate and bind a ``.gx`` file. Never executes or unpickles anything in it.

    ``mmap=True`` maps the file instead of reading it: parameters, buffers and training tensors
    are read-only views of the map (``fit`` copies a trainable one before it first changes it),
    and the file must not be changed in place while the graph is alive (``docs/format.md``).

    Raises GraphFileError for a bad file, UnknownOpError for an op no installed plugin provides.
    """
    where = os.fspath(path)
    try:
        header, arrays = map_file(path, limits) if mmap else read_file(path, limits)
    except GraphFileError as e:
        raise GraphFileError(f"{where}: {e}") from e
    return _graph(header, arrays, where)


def loads(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Graph:
    """``load`` from bytes."""
    header, arrays = decode(bytes(data), limits)
    return _graph(header, arrays, "<bytes>")


def dumps(graph: Graph) -> bytes:
    """The file's bytes: the same graph always gives the same bytes."""
    return b"".join(encode(*to_header(graph)))


def save(graph: Graph, path: str | os.PathLike[str]) -> None:
    """Write ``graph`` to ``path`` atomically (the old file survives any crash mid-save).
    Warns (InProcessGateWarning) if it uses a gate registered only in this process."""
    warn_in_process(graph.name, graph.nodes)
    write_file(path, *to_header(graph))
