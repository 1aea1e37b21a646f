"""``predict``: ``gx.predict`` over a Dask array or a ``.npy`` file, one block per task.

The graph travels as its file bytes in one ``dask.delayed`` value, so the scheduler sends it to
each worker once, not once per block; each worker keeps the loaded graph in a small cache keyed
by the bytes' digest, and so loads and compiles it once. A ``.npy`` input is named by its path:
each task memory-maps the file itself and reads only its rows, so the data never passes through
the task graph (``da.from_array`` on a memmap would put the whole array there).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from graphexec.api import dumps, load, loads
from graphexec.distributed._cluster import DistributedError, require
from graphexec.graph import Graph
from graphexec.inference import NpyWriter, default_batch_size, drop_pages, open_npy, output_spec
from graphexec.inference import predict as local_predict

__all__ = ["predict", "predict_to_npy"]

_CACHE: OrderedDict[str, Graph] = OrderedDict()  # per worker process: digest -> graph
_CACHE_SIZE = 4
_CACHE_LOCK = threading.Lock()


def _graph(blob: bytes, digest: str) -> Graph:
    """The graph of ``blob``, loaded once per process (threads of a worker share it)."""
    with _CACHE_LOCK:
        g = _CACHE.get(digest)
        if g is not None:
            _CACHE.move_to_end(digest)
            return g
    g = loads(blob)
    with _CACHE_LOCK:
        _CACHE[digest] = g
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return g


def _rows(block: np.ndarray, blob: bytes, digest: str, output: str, batch_size: int | None,
          cast: str | None, labels: bool) -> np.ndarray:
    """One block's outputs (the function every task runs)."""
    X = block if cast is None else block.astype(cast)
    y = local_predict(_graph(blob, digest), X, batch_size=batch_size, output=output)
    return y.argmax(axis=1) if labels else y


def _array_block(block: np.ndarray, blob: bytes, digest: str, output: str,
                 batch_size: int | None, cast: str | None, labels: bool) -> np.ndarray:
    return _rows(block, blob, digest, output, batch_size, cast, labels)


def _file_block(path: str, blob: bytes, digest: str, output: str, batch_size: int | None,
                cast: str | None, labels: bool, block_info: Any = None) -> np.ndarray:
    """Rows of a ``.npy`` file, read on the worker through its own memory map."""
    start, stop = block_info[None]["array-location"][0]
    X = open_npy(path)
    try:
        return _rows(np.asarray(X[start:stop]), blob, digest, output, batch_size, cast, labels)
    finally:
        drop_pages(X, start, stop)


def _npy_header(path: str) -> tuple[tuple[int, ...], str]:
    X = open_npy(path)
    return tuple(X.shape), X.dtype.str


def _check_dtype(g: Graph, dtype: np.dtype[Any], cast: bool) -> str | None:
    want = next(d.dtype for d in g.input_decls if d.name == "x")
    if dtype == want:
        return None
    if cast and np.can_cast(dtype, want, "same_kind"):
        return want.str
    raise DistributedError(f"input 'x' of graph {g.name!r} expects {want}, found {dtype} rows; "
                           f"convert them with .astype({want.name!r})")


def _prepare(graph: Graph | str | os.PathLike[str]) -> tuple[Graph, Any, str]:
    """The graph here, and its bytes as one delayed value (sent once per worker) + digest."""
    from dask.delayed import delayed

    g = graph if isinstance(graph, Graph) else load(graph)
    blob = dumps(g)
    digest = hashlib.sha256(blob).hexdigest()
    return g, delayed(blob, pure=True), digest


def predict(graph: Graph | str | os.PathLike[str], X: Any, output: str = "scores", *,
            batch_size: int | None = None, labels: bool = False, cast: bool = False) -> Any:
    """A Dask array of ``gx.predict(graph, rows, output=output)`` over the rows of ``X``.

    Args:
        graph: A graph, or the path of a ``.gx`` file.
        X: A Dask array of rows (chunked along the rows only; other axes are merged), or the
            path of a ``.npy`` file, which each task reads by path (it must be visible to the
            workers at that path).
        output: Which graph output (one row per input row).
        batch_size: Rows per forward pass; for a ``.npy`` path also the rows per block.
            None: ``gx.predict``'s default (from the activation budget).
        labels: True: the index of the largest output per row (argmax) instead of the output.
        cast: Allow rows of another dtype that casts safely to the graph's (``same_kind``);
            False (the default, as ``gx.predict``): such rows are an error.

    Returns:
        A lazy Dask array (``.compute()`` it); each block equals ``gx.predict`` on its rows, so
        the whole equals ``gx.predict(graph, X, batch_size)`` when its blocks are multiples of
        ``batch_size`` rows (else up to BLAS rounding, see :mod:`graphexec.inference`).
    """
    require()
    import dask.array as da
    from dask.delayed import delayed

    g, blob, digest = _prepare(graph)
    if isinstance(X, (str, os.PathLike)):
        path = os.path.abspath(os.fspath(X))
        fshape, dtype = delayed(_npy_header, pure=False)(path).compute()
        return _from_file(g, path, fshape, np.dtype(dtype), blob, digest, output, batch_size,
                          labels, cast)
    if not isinstance(X, da.Array) or X.ndim == 0:
        raise DistributedError(f"X: expected a dask array of rows or the path of a .npy file, "
                               f"found {type(X).__name__}; wrap arrays with dask.array.from_array")
    X = X.rechunk({i: -1 for i in range(1, X.ndim)})  # type: ignore[no-untyped-call]
    cast_to = _check_dtype(g, X.dtype, cast)
    row_shape, out_dtype = output_spec(g, np.zeros((1,) + X.shape[1:], cast_to or X.dtype), output)
    shape: tuple[int, ...] = () if labels else row_shape
    kind = np.dtype(np.int64) if labels else out_dtype
    ndim = 1 + len(shape)
    return X.map_blocks(_array_block, blob, digest, output, batch_size, cast_to, labels,
                        chunks=(X.chunks[0],) + tuple((n,) for n in shape),
                        drop_axis=list(range(ndim, X.ndim)) if X.ndim > ndim else None,
                        new_axis=list(range(X.ndim, ndim)) if X.ndim < ndim else None,
                        dtype=kind, meta=np.empty((0,) * ndim, kind))


def _from_file(g: Graph, path: str, shape: tuple[int, ...], dtype: np.dtype[Any], blob: Any,
               digest: str, output: str, batch_size: int | None, labels: bool, cast: bool) -> Any:
    import dask.array as da

    cast_to = _check_dtype(g, dtype, cast)
    probe = np.zeros((8,) + shape[1:], cast_to or dtype)
    row_shape, out_dtype = output_spec(g, probe, output)
    out_shape: tuple[int, ...] = () if labels else row_shape
    n = shape[0]
    bs = batch_size or (default_batch_size(g, probe, output) if n else 1)
    rows = tuple(min(bs, n - s) for s in range(0, n, bs)) or (0,)
    kind = np.dtype(np.int64) if labels else out_dtype
    return da.map_blocks(  # type: ignore[no-untyped-call]
        _file_block, path, blob, digest, output, bs, cast_to, labels,
        chunks=(rows,) + tuple((k,) for k in out_shape), dtype=kind,
        meta=np.empty((0,) * (1 + len(out_shape)), kind))


def predict_to_npy(graph: Graph | str | os.PathLike[str], X: Any, out: str | os.PathLike[str],
                   *, client: Any, output: str = "scores", batch_size: int | None = None,
                   labels: bool = False, cast: bool = False, in_flight: int | None = None,
                   progress: Any = None) -> tuple[int, ...]:
    """Compute :func:`predict` on ``client`` and write it into the ``.npy`` file ``out`` block
    by block as blocks finish (atomically: ``out`` appears complete or not at all). At most
    ``in_flight`` blocks (default: twice the workers) are held at once. Returns the shape."""
    distributed = require()
    Y = predict(graph, X, output, batch_size=batch_size, labels=labels, cast=cast)
    starts = np.concatenate([[0], np.cumsum(Y.chunks[0])])
    blocks = [(i, Y.blocks[i]) for i in range(Y.numblocks[0]) if Y.chunks[0][i]]
    limit = in_flight or max(2, 2 * len(client.scheduler_info().get("workers", {})))
    with NpyWriter(out, Y.shape, Y.dtype) as writer:
        pending = {client.compute(b): i for i, b in blocks[:limit]}
        queue = distributed.as_completed(list(pending))
        following = limit
        for fut in queue:
            i = pending.pop(fut)
            writer.write(int(starts[i]), fut.result())
            fut.release()
            if progress is not None:
                progress(int(Y.chunks[0][i]))
            if following < len(blocks):
                j, block = blocks[following]
                nxt = client.compute(block)
                pending[nxt] = j
                queue.add(nxt)
                following += 1
    return tuple(Y.shape)
