"""Batch inference: a trained graph over many rows, a chunk at a time.

``gx.predict(g, X)`` runs the graph forward on ``batch_size`` rows at a time and copies each
chunk's output into one result array, so the activations alive at once are those of one chunk,
whatever ``len(X)``. The default batch size keeps them within :data:`ACTIVATION_BUDGET` bytes:

    batch_size = clamp(ACTIVATION_BUDGET // bytes_per_row, 1, MAX_BATCH)

where ``bytes_per_row`` is every activation of a forward pass on a few probe rows, divided by the
number of probe rows (an upper bound: the forward-only run frees each value after its last use).

Chunking changes no row's value beyond floating-point rounding: a row's output depends on that
row only (forward-only, no batch statistics), but BLAS may order a dot product differently for
different chunk heights, so results can differ from the unchunked run in the last bits. The same
``batch_size`` always gives the same bits.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from graphexec.errors import GraphError, printable
from graphexec.executor import Executor, run
from graphexec.graph import Graph

__all__ = ["ACTIVATION_BUDGET", "MAX_BATCH", "NpyWriter", "chunks", "default_batch_size",
           "drop_pages", "forward_chunk", "open_npy", "output_spec", "predict"]

#: Bytes of activations one chunk may hold at once (the default batch size follows from it).
ACTIVATION_BUDGET = 32 * 2**20
#: Upper bound of the default batch size (beyond it chunking gains nothing).
MAX_BATCH = 65536
_PROBE_ROWS = 8
#: Up to this many rows run in one pass without probing (the probe would cost more than it saves).
SMALL = 1024


def forward_chunk(g: Graph, X: np.ndarray, output: str = "scores") -> np.ndarray:
    """One forward-only pass: output ``output`` of ``g`` for the rows ``X``.

    The one place batch inference calls the executor (so evaluation mode, when it comes, is
    switched on here for every caller: gx.predict, the CLI, the Dask workers).
    """
    return run(g, {"x": X}, outputs=[output])[output]


def _check(g: Graph, output: str) -> None:
    if "x" not in g.inputs:
        raise GraphError(f"predict feeds the rows to input 'x', but graph {g.name!r} has inputs "
                         f"{g.inputs}; build it with input 'x' (as gx.nn.mlp does)")
    if output not in g.outputs:
        raise GraphError(f"graph {g.name!r} has no output {output!r}; its outputs are "
                         f"{g.outputs}; pass output=... with one of them")


def _activation_bytes_per_row(g: Graph, X: np.ndarray, output: str) -> int:
    """Bytes of all values a forward pass on the probe rows makes, per row (>= 1)."""
    probe = X[:_PROBE_ROWS]
    ex = Executor(g)
    ex.forward({"x": probe}, outputs=[output])
    vals = getattr(ex, "_vals", None)  # the kept values of that pass (executor internals)
    leaves = {id(v) for v in g.params.values()}
    if vals is None:  # executor internals changed: assume one input-sized value per node
        total = probe.nbytes * (len(g.nodes) + 1)
    else:
        total = sum(v.nbytes for v in vals if isinstance(v, np.ndarray) and id(v) not in leaves)
    return max(1, -(-int(total) // max(1, len(probe))))


def default_batch_size(g: Graph, X: np.ndarray, output: str = "scores") -> int:
    """Rows per chunk so that one chunk's activations fit in :data:`ACTIVATION_BUDGET`."""
    if len(X) == 0:
        return 1
    per_row = _activation_bytes_per_row(g, X, output)
    return int(min(MAX_BATCH, max(1, ACTIVATION_BUDGET // per_row)))


def _check_batch(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise GraphError(f"batch_size must be an integer >= 1 (or None for the default), "
                         f"got {batch_size!r}")
    return int(batch_size)


def chunks(n: int, batch_size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` row ranges of at most ``batch_size`` rows covering ``0..n``."""
    for start in range(0, n, batch_size):
        yield start, min(n, start + batch_size)


def output_spec(g: Graph, X: np.ndarray, output: str = "scores") -> tuple[tuple[int, ...],
                                                                             np.dtype[Any]]:
    """Shape of one output row and its dtype, from a one-row pass (``X`` needs a row)."""
    try:
        y = forward_chunk(g, X[:1], output)
    except GraphError as e:
        if not str(e).startswith("missing input"):
            raise
        raise GraphError(f"output {output!r} of graph {g.name!r} needs more inputs than 'x' "
                         f"({e}); predict computes an output from 'x' alone, such as "
                         "'scores'") from e
    if y.ndim == 0 or y.shape[0] != 1:
        raise GraphError(f"output {output!r} of graph {g.name!r} is not one row per input row "
                         f"(shape {y.shape} for 1 row); predict needs a per-row output "
                         "such as 'scores'")
    return tuple(y.shape[1:]), y.dtype


def predict(g: Graph, X: np.ndarray, batch_size: int | None = None,
            output: str = "scores") -> np.ndarray:
    """The output ``output`` (default ``scores``, (N, C)) of ``g`` for the rows of ``X``.

    Args:
        g: A graph with input ``x`` (N, ...) and the output ``output``; labels are not needed.
        X: The rows, dtype of the graph's ``x`` (no silent casts). A ``np.memmap`` works: only
            one chunk of it is read at a time.
        batch_size: Rows per forward pass; None: from :data:`ACTIVATION_BUDGET`.
        output: Which graph output to compute (one row per input row).

    Returns:
        An array of shape (N, ...) stacking the chunks' outputs.

    Raises:
        GraphError: No input ``x`` or no such output, a bad ``batch_size``, or rows that do not
            fit the graph's declared input.
    """
    _check(g, output)
    if batch_size is not None:
        batch_size = _check_batch(batch_size)
    if not isinstance(X, np.ndarray) or X.ndim == 0:
        return forward_chunk(g, X, output)  # lists, scalars: the executor checks and converts
    if len(X) == 0 or (batch_size is None and len(X) <= SMALL):
        return forward_chunk(g, X, output)
    bs = batch_size or default_batch_size(g, X, output)
    if bs >= len(X):
        return forward_chunk(g, X, output)
    first = forward_chunk(g, X[:bs], output)
    if first.ndim == 0 or first.shape[0] != bs:
        raise GraphError(f"output {output!r} of graph {g.name!r} is not one row per input row "
                         f"(shape {first.shape} for {bs} rows); predict needs a per-row output "
                         "such as 'scores'")
    result = np.empty((len(X),) + first.shape[1:], dtype=first.dtype)
    result[:bs] = first
    del first
    for start, stop in chunks(len(X), bs):
        if start:
            result[start:stop] = forward_chunk(g, X[start:stop], output)
    return result


# ---------------------------------------------------------------------------- .npy files
def open_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """The array in a ``.npy`` file, memory-mapped read-only; nothing is unpickled.

    Raises:
        GraphError: The file is missing, not a ``.npy`` file, or holds Python objects.
    """
    try:
        X = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise GraphError(f"{os.fspath(path)!r}: expected a .npy file of numbers, cannot read it "
                         f"({printable(str(e)):.120}); write one with numpy.save") from e
    if not isinstance(X, np.ndarray) or X.dtype.kind not in "biuf" or X.ndim == 0:
        raise GraphError(f"{os.fspath(path)!r}: expected a .npy array of rows of numbers, found "
                         f"{getattr(X, 'dtype', type(X).__name__)} of shape {getattr(X, 'shape', ())}")
    return X


def drop_pages(a: np.ndarray, start: int, stop: int) -> None:
    """Tell the kernel rows ``start:stop`` of the memory map ``a`` are done with, so that a
    pass over a file bigger than memory keeps only a chunk of it resident (the pages are read
    again from the file if touched; written pages stay in the file)."""
    mm = getattr(a, "_mmap", None)  # np.memmap's mapping (numpy internals; absent: do nothing)
    if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED") \
            or a.ndim == 0:
        return
    row = a.itemsize * int(np.prod(a.shape[1:]))
    base = int(getattr(a, "offset", 0)) % mmap.ALLOCATIONGRANULARITY
    first = (base + start * row + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
    last = (base + stop * row) // mmap.PAGESIZE * mmap.PAGESIZE
    if last > first:
        mm.madvise(mmap.MADV_DONTNEED, first, last - first)


class NpyWriter:
    """A ``.npy`` output written a chunk at a time, appearing at ``path`` only when complete.

    The array is a memory map of a temporary file in the same folder; :meth:`commit` flushes it
    and renames it onto ``path`` (``os.replace``, atomic), :meth:`abort` removes it.
    """

    def __init__(self, path: str | os.PathLike[str], shape: tuple[int, ...],
                 dtype: np.dtype[Any]) -> None:
        self.path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise GraphError(f"output {self.path!r}: expected an existing folder, found no "
                             f"{folder!r}; create it first")
        fd, self.tmp = tempfile.mkstemp(prefix=".predict-", suffix=".npy.tmp", dir=folder)
        os.close(fd)
        self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=dtype, shape=shape)

    def write(self, start: int, rows: np.ndarray) -> None:
        """Rows ``start : start + len(rows)`` of the output."""
        self.array[start:start + len(rows)] = rows
        drop_pages(self.array, start, start + len(rows))

    def commit(self) -> None:
        self.array.flush()
        del self.array
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.__dict__.pop("array", None)
        with contextlib.suppress(OSError):
            os.remove(self.tmp)

    def __enter__(self) -> NpyWriter:  # noqa: PYI034 (never subclassed)
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()
