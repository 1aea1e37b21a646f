"""The lecture's models, shipped with the package: ``gx.examples.load("add_mul")`` works from
any folder, not only from a source tree's root.

The files are the repository's ``models/*.gx`` (one copy of the bytes: this package's
``models`` folder points at them, and wheels carry them as package data). The recipes that
write them, some of which train and need scikit-learn, are not part of the library: they live
beside ``scripts/make_models.py``.
"""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable

from graphexec.api import loads
from graphexec.errors import GraphexecError
from graphexec.graph import Graph

__all__ = ["load", "names", "read_bytes"]

_FOLDER = "models"


def _files() -> Traversable:
    return resources.files(__name__) / _FOLDER


def names() -> list[str]:
    """The shipped models' names (file names without ``.gx``), sorted."""
    return sorted(f.name[:-3] for f in _files().iterdir() if f.name.endswith(".gx"))


def read_bytes(name: str) -> bytes:
    """The bytes of the shipped model ``name`` (e.g. ``"add_mul"``; ``".gx"`` may be given).

    Raises:
        GraphexecError: If no shipped model has that name (the message lists them).
    """
    stem = name[:-3] if name.endswith(".gx") else name
    if stem not in names():
        raise GraphexecError(f"no shipped model {name!r}; expected one of {names()}")
    return (_files() / f"{stem}.gx").read_bytes()


def load(name: str) -> Graph:
    """The shipped model ``name`` as a graph, e.g. ``load("add_mul")`` (f = (x + y) * z).

    Raises:
        GraphexecError: If no shipped model has that name.
        GraphFileError: If the file is not a valid graph (a broken installation).
    """
    return loads(read_bytes(name))
