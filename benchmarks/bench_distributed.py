"""A 6-configuration sweep on 2 Dask worker processes vs the same sweep run serially.

Goal: >= 1.7x faster than serial on a 2-core machine. Each round times, one after the other (the
order alternates): the serial sweep (``run_point`` in this process, numpy's usual BLAS threads, and
again limited to one BLAS thread with threadpoolctl), the sweep on a local cluster of 2 workers
started by ``graphexec.distributed`` (one BLAS thread each, no ``MALLOC_TRIM_THRESHOLD_``) and, with
``--dask-default``, on a cluster with Dask's default worker environment
(``MALLOC_TRIM_THRESHOLD_=65536``). The clusters are started once, before the rounds (their start-up
time is reported apart). Every round checks that each trained file is byte-identical to the serial
one.

On a machine shared with other jobs the wall-clock ratios mostly measure the neighbours, so the
benchmark also reports what load does not change: each contender's CPU seconds and minor page faults
(``getrusage`` of the thread running the serial sweep, or of the worker processes), and the speed-up
the same CPU work would give on idle cores: the 1-thread serial CPU time over the busiest worker's.

Usage: python benchmarks/bench_distributed.py [--rounds 3] [--epochs 3] [--dask-default]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import resource
import statistics
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

import graphexec as gx
from graphexec import distributed as gd

GRID = {"sizes": [[20, 256, 3], [20, 512, 3], [20, 256, 256, 3]], "reg": [1e-3, 1e-2]}
BATCH = 128  # activations of 128 x 256 float64 = 256 KiB: above glibc's initial mmap threshold


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


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """numpy's BLAS limited to ``n`` threads (None: as it is)."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="blas"):
        yield


def usage(client: Any) -> tuple[float, int, float]:
    """(CPU seconds, minor page faults, busiest process's CPU seconds) so far: of the workers
    for a client, else of this process. Load on the machine does not change these."""
    if client is None:  # this thread only: the clusters' event loops live in this process too
        ru = [resource.getrusage(getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF))]
    else:
        ru = list(client.run(resource.getrusage, resource.RUSAGE_SELF).values())
    cpu = [r.ru_utime + r.ru_stime for r in ru]
    return sum(cpu), sum(r.ru_minflt for r in ru), max(cpu)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--dask-default", action="store_true")
    a = p.parse_args()
    import functools

    builder = functools.partial(gx.nn.mlp, seed=0)
    X, y = data()
    opts = {"epochs": a.epochs, "batch_size": BATCH, "optimizer": "adam", "lr": 1e-3}
    points = gd.grid_points(GRID)
    times: dict[str, list[float]] = {"serial": [], "serial, 1 BLAS thread": [],
                                     "graphexec 2 workers": []}
    cost: dict[str, list[tuple[float, int, float]]] = {}
    with contextlib.ExitStack() as stack:
        t = time.perf_counter()
        clients = {"graphexec 2 workers": stack.enter_context(gd.local_cluster(2))}
        print(f"local_cluster(2) started in {time.perf_counter() - t:.1f} s")
        if a.dask_default:
            times["dask default env 2 workers"] = []
            clients["dask default env 2 workers"] = stack.enter_context(dask_default_cluster())
        for c in clients.values():  # workers import graphexec before the clock starts
            c.run(importlib.import_module, "graphexec.distributed")
        for r in range(a.rounds):
            order = list(times) if r % 2 == 0 else list(times)[::-1]
            reference: list[bytes] = []
            for name in order:
                before = usage(clients.get(name))
                t = time.perf_counter()
                if name.startswith("serial"):
                    with blas_threads(1 if "1 BLAS" in name else None):
                        out = [gd.run_point(builder, X, y, opts, pt).graph for pt in points]
                else:
                    out = [res.graph for res in gd.sweep(builder, GRID, X, y,
                                                         client=clients[name], **opts)]
                times[name].append(time.perf_counter() - t)
                after = usage(clients.get(name))
                cost.setdefault(name, []).append(tuple(b - a for a, b in zip(before, after)))
                if reference and out != reference:
                    raise SystemExit(f"{name}: trained files differ from the other run")
                reference = out
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()),
                  flush=True)
    print(f"\n6 configs x {a.epochs} epochs on {len(X)} rows (batch {BATCH}), median of {a.rounds} rounds")
    for name, ts in times.items():
        ratio = {ref: statistics.median([s / t for s, t in zip(times[ref], ts)])
                 for ref in ("serial", "serial, 1 BLAS thread")}
        print(f"  {name:<28} {statistics.median(ts):6.1f} s   speed-up vs serial {ratio['serial']:.2f}x, "
              f"vs serial with 1 BLAS thread {ratio['serial, 1 BLAS thread']:.2f}x"
              + ("   (goal >= 1.70x)" if name == "graphexec 2 workers" else ""))
        cpu, faults, busiest = (statistics.median(c[i] for c in cost[name]) for i in range(3))
        print(f"  {'':<28} CPU {cpu:6.1f} s, {faults / len(points):9.0f} page faults per config, "
              f"CPU-bound speed-up on idle cores (serial 1-thread CPU / busiest process CPU) "
              f"{statistics.median(c[0] for c in cost['serial, 1 BLAS thread']) / busiest:.2f}x")
    print("  trained files byte-identical across all contenders in every round")

if __name__ == "__main__":
    main()
