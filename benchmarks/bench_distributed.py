"""A 6-configuration sweep on 2 Dask worker processes vs the same sweep run serially.

Goal: >= 1.7x faster than serial on a 2-core machine. Each round times, one after the other
(the order alternates): the serial sweep (``run_point`` in this process, numpy's usual BLAS
threads), the sweep on a local cluster of 2 workers started by ``graphexec.distributed`` (one
BLAS thread each, no ``MALLOC_TRIM_THRESHOLD_``) and, with ``--dask-default``, on a cluster with
Dask's default worker environment (``MALLOC_TRIM_THRESHOLD_=65536``). The clusters are started
once, before the rounds (their start-up time is reported apart). Every round checks that each
trained file is byte-identical to the serial one.

Usage: python benchmarks/bench_distributed.py [--rounds 3] [--epochs 8] [--dask-default]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

import graphexec as gx
from graphexec import distributed as gd

GRID = {"sizes": [[20, 128, 3], [20, 256, 3], [20, 128, 128, 3]], "reg": [1e-3, 1e-2]}


def data(n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 20))
    return X, (X[:, :3].sum(axis=1) > 0).astype(np.int64) + (X[:, 3] > 1)


@contextlib.contextmanager
def dask_default_cluster() -> Iterator[Any]:
    """Two workers with Dask's own worker environment (for comparison only)."""
    import distributed

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as c, \
            distributed.Client(c) as client:
        yield client


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--dask-default", action="store_true")
    a = p.parse_args()
    import functools

    builder = functools.partial(gx.nn.mlp, seed=0)
    X, y = data()
    opts = {"epochs": a.epochs, "batch_size": 64, "optimizer": "adam", "lr": 1e-3}
    points = gd.grid_points(GRID)
    times: dict[str, list[float]] = {"serial": [], "graphexec 2 workers": []}
    with contextlib.ExitStack() as stack:
        t = time.perf_counter()
        clients = {"graphexec 2 workers": stack.enter_context(gd.local_cluster(2))}
        print(f"local_cluster(2) started in {time.perf_counter() - t:.1f} s")
        if a.dask_default:
            times["dask default env 2 workers"] = []
            clients["dask default env 2 workers"] = stack.enter_context(dask_default_cluster())
        for r in range(a.rounds):
            order = list(times) if r % 2 == 0 else list(times)[::-1]
            reference: list[bytes] = []
            for name in order:
                t = time.perf_counter()
                if name == "serial":
                    out = [gd.run_point(builder, X, y, opts, pt).graph for pt in points]
                else:
                    out = [res.graph for res in gd.sweep(builder, GRID, X, y,
                                                         client=clients[name], **opts)]
                times[name].append(time.perf_counter() - t)
                if reference and out != reference:
                    raise SystemExit(f"{name}: trained files differ from the other run")
                reference = out
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()),
                  flush=True)
    base = statistics.median(times["serial"])
    print(f"\n6 configs x {a.epochs} epochs on {len(X)} rows, median of {a.rounds} rounds")
    for name, ts in times.items():
        ratios = [s / t for s, t in zip(times["serial"], ts)]
        print(f"  {name:<28} {statistics.median(ts):6.1f} s   speed-up vs serial "
              f"{statistics.median(ratios):.2f}x (rounds: {', '.join(f'{x:.2f}' for x in ratios)})"
              + ("   goal >= 1.70x" if name == "graphexec 2 workers" else ""))
    print(f"  serial median {base:.1f} s; results byte-identical in every round")


if __name__ == "__main__":
    main()
