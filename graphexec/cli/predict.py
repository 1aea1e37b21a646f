"""``graphexec predict``: a trained graph over a ``.npy`` file of rows, into a ``.npy`` file.

The input is memory-mapped and read a chunk at a time; the output is written into a temporary
``.npy`` in the output's folder and renamed onto ``-o`` when complete, so memory stays at the
model plus a few chunks whatever the input size, and an interrupted run leaves no half file.
``--workers N`` / ``--scheduler ADDR`` spread the chunks over Dask workers (which read the input
by path). Also the ``--workers`` / ``--scheduler`` flags of ``graphexec sweep``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import graphexec as gx
from graphexec.cli.common import UsageError
from graphexec.errors import printable

if TYPE_CHECKING:  # numpy, the graph and inference load when a verb runs, not for --help
    import numpy as np

    from graphexec.graph import Graph
    from graphexec.inference import NpyWriter

__all__ = ["add_cluster_flags", "register", "sweep_graphs"]


def add_cluster_flags(p: argparse.ArgumentParser) -> None:
    """``--workers N`` (a local Dask cluster) or ``--scheduler ADDR`` (a running one)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--workers", type=int, metavar="N",
                       help="run on a local Dask cluster of N worker processes")
    group.add_argument("--scheduler", metavar="ADDR",
                       help="run on the Dask scheduler at ADDR, e.g. tcp://127.0.0.1:8786")


@contextlib.contextmanager
def _client(args: argparse.Namespace) -> Iterator[Any]:
    """The Dask client the flags ask for; its warnings (worker hygiene) as ``warning:`` lines."""
    from graphexec import distributed

    with contextlib.ExitStack() as stack:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            client = stack.enter_context(distributed.connect(workers=args.workers,
                                                             scheduler=args.scheduler))
        for w in caught:
            print(f"warning: {printable(' '.join(str(w.message).split()))}", file=sys.stderr)
        yield client


def _wants_cluster(args: argparse.Namespace) -> bool:
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers expects a number of processes >= 1, got {args.workers}")
    return args.workers is not None or args.scheduler is not None


# ---------------------------------------------------------------------------- sweep
def sweep_graphs(args: argparse.Namespace, hidden: list[int], regs: list[float],
                 X: np.ndarray, y: np.ndarray, n_classes: int) -> list[Graph] | None:
    """The trained graphs of ``graphexec sweep`` (hidden-major order) computed on Dask, or
    None when neither ``--workers`` nor ``--scheduler`` is given (then the sweep runs here)."""
    if not _wants_cluster(args):
        return None
    from graphexec import distributed
    from graphexec.training import nn

    builder = functools.partial(nn.mlp, activation=args.activation, seed=args.seed,
                                dtype=args.dtype)
    grid: dict[str, list[Any]] = {"sizes": [[X.shape[1], h, n_classes] for h in hidden],
                                  "reg": list(regs)}
    with _client(args) as client:
        results = distributed.sweep(builder, grid, X, y, client=client, epochs=args.epochs,
                                    batch_size=args.batch_size, optimizer=args.optimizer,
                                    lr=args.lr, seed=args.seed)
    return [r.load() for r in results]


# ---------------------------------------------------------------------------- predict
def _cast_to(g: Graph, X: np.ndarray, path: str) -> np.dtype[Any]:
    import numpy as np

    want = next((d.dtype for d in g.input_decls if d.name == "x"), None)
    if want is None:
        raise UsageError(f"graph {g.name!r} has no input 'x' (its inputs: {g.inputs}); predict "
                         "feeds the rows of --input to 'x'")
    if X.dtype != want and not np.can_cast(X.dtype, want, "same_kind"):
        raise UsageError(f"--input {path}: expected rows of {want} for graph {g.name!r}, found "
                         f"{X.dtype}; convert the file with numpy's .astype({want.name!r})")
    return want


def _bar(args: argparse.Namespace, total: int) -> Any:
    from graphexec.training.progress import has_tqdm

    if args.no_progress or not sys.stderr.isatty() or not has_tqdm():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="row", unit_scale=True, file=sys.stderr, dynamic_ncols=True)


def _local(g: Graph, X: np.ndarray, want: np.dtype[Any], writer: NpyWriter, bs: int,
           args: argparse.Namespace, bar: Any) -> None:
    """Chunk by chunk in this process: read, forward, write, forget."""
    import numpy as np

    from graphexec.inference import chunks, drop_pages, forward_chunk

    for start, stop in chunks(len(X), bs):
        y = forward_chunk(g, np.asarray(X[start:stop], dtype=want), args.output)
        writer.write(start, y.argmax(axis=1) if args.labels else y)
        drop_pages(X, start, stop)
        if bar is not None:
            bar.update(stop - start)


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from graphexec.inference import NpyWriter, default_batch_size, open_npy, output_spec

    g = gx.load(args.file)
    if args.output not in g.outputs:
        raise UsageError(f"--output {args.output!r}: graph {g.name!r} has outputs {g.outputs}")
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size expects a number of rows >= 1, got {args.batch_size}")
    X = open_npy(args.input)
    want = _cast_to(g, X, args.input)
    probe = np.asarray(X[:8], dtype=want) if len(X) else np.zeros((1,) + X.shape[1:], want)
    row, dtype = output_spec(g, probe, args.output)
    bs = args.batch_size or default_batch_size(g, probe, args.output)
    shape = (len(X),) if args.labels else (len(X),) + row
    bar = _bar(args, len(X))
    try:
        if _wants_cluster(args):
            from graphexec import distributed

            with _client(args) as client:
                distributed.predict_to_npy(g, os.path.abspath(args.input), args.out,
                                           client=client, output=args.output, batch_size=bs,
                                           labels=args.labels, cast=True,
                                           progress=None if bar is None else bar.update)
        else:
            with NpyWriter(args.out, shape, np.dtype(np.int64) if args.labels else dtype) as w:
                _local(g, X, want, w, bs, args, bar)
    finally:
        if bar is not None:
            bar.close()
    what = "labels" if args.labels else repr(args.output)
    print(f"wrote {args.out}: {what} of shape {shape} for {len(X)} rows "
          f"({-(-len(X) // bs)} chunks of up to {bs} rows)")
    return 0


def register(sub: Any) -> None:
    """Add ``predict`` to the ``graphexec`` subcommands."""
    p = sub.add_parser("predict", help="run a trained graph over a .npy file of rows, into a "
                       ".npy file", description="Run FILE's output over the rows of --input "
                       "(memory-mapped, a chunk at a time) and write them to -o atomically.")
    p.add_argument("file", help="the trained graph (.gx)")
    p.add_argument("--input", required=True, metavar="X.npy", help="rows for input 'x'")
    p.add_argument("-o", "--out", required=True, metavar="OUT.npy", help="output .npy file")
    p.add_argument("--output", default="scores", help="graph output to compute (default scores)")
    p.add_argument("--batch-size", type=int, help="rows per chunk (default: from an "
                   "activation-memory budget)")
    p.add_argument("--labels", action="store_true", help="write the argmax per row (int64)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_cluster_flags(p)
    p.set_defaults(func=cmd_predict)
