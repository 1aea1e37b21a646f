"""Clients and local clusters with the worker environment graphexec needs.

Worker hygiene, measured on a 2-core machine (see ``docs/distributed.md``):

* one BLAS thread per worker process (``OMP_NUM_THREADS`` & co. = 1): the workers are the
  parallelism, and BLAS threads on top of them fight over the same cores;
* no ``MALLOC_TRIM_THRESHOLD_``: Dask sets it to 65536 by default, and setting it at all turns
  off glibc's adaptive mmap threshold, so every activation array above 128 KiB is mapped and
  unmapped again (≈ 50,000 page faults per sweep task, 0.37-0.68x of serial speed).

Both must be in place before the worker process starts (numpy reads the thread count on import,
glibc reads the malloc settings at start-up), so they go into Dask's
``distributed.nanny.pre-spawn-environ`` for the clusters started here. Workers started by
someone else (``dask worker``) need them in their shell; :func:`worker_report` shows what a
worker has.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

from graphexec.errors import DistributedError as DistributedError  # re-exported for _predict/_sweep

__all__ = [
    "BLAS_THREAD_VARS",
    "WORKER_ENV",
    "DistributedError",
    "connect",
    "local_cluster",
    "require",
    "worker_report",
]

BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: The environment of every worker process graphexec starts.
WORKER_ENV = {name: "1" for name in BLAS_THREAD_VARS}
#: Variables removed from the environment the worker processes inherit.
WORKER_UNSET = ("MALLOC_TRIM_THRESHOLD_",)
CONNECT_TIMEOUT = "10s"  # a hang guard: a scheduler that does not answer in 10 s is not there


def require() -> Any:
    """The ``distributed`` module, or a DistributedError saying how to install it."""
    try:
        import distributed
    except ImportError as e:
        raise DistributedError("graphexec.distributed needs Dask: pip install "
                               "'graphexec[distributed]' (dask[distributed] >= 2024.1)") from e
    return distributed


@contextlib.contextmanager
def _spawn_environment() -> Iterator[None]:
    """Dask's pre-spawn settings replaced by ours while workers start; os.environ restored."""
    import dask

    saved = dict(os.environ)
    try:
        for name in WORKER_UNSET:
            os.environ.pop(name, None)
        with dask.config.set({"distributed.nanny.pre-spawn-environ": dict(WORKER_ENV),
                              "distributed.nanny.environ": {}}):
            yield
    finally:  # the nanny writes the pre-spawn settings into this process's environment
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def local_cluster(n_workers: int | None = None, *, processes: bool = True) -> Iterator[Any]:
    """A ``distributed.Client`` on a fresh local cluster, closed on exit.

    Args:
        n_workers: Worker processes (default: the number of CPUs), one thread each.
        processes: False: workers are threads of this process (tests; no spawn cost, and the
            worker environment is this process's).
    """
    distributed = require()
    n = n_workers if n_workers is not None else (os.cpu_count() or 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DistributedError(f"workers must be an integer >= 1, got {n_workers!r}")
    with _spawn_environment():
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1,
                                           processes=processes, dashboard_address=":0",
                                           silence_logs=logging.ERROR)
    with cluster, distributed.Client(cluster) as client:
        yield client


@contextlib.contextmanager
def connect(client: Any = None, *, workers: int | None = None,
            scheduler: str | None = None) -> Iterator[Any]:
    """The client to use: ``client`` as given (left open), else one connected to
    ``scheduler`` (``tcp://HOST:PORT``), else a local cluster of ``workers`` processes."""
    if client is not None:
        yield client
        return
    if scheduler is None:
        with local_cluster(workers) as local:
            yield local
        return
    distributed = require()
    try:
        remote = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as e:
        raise DistributedError(f"cannot reach the Dask scheduler at {scheduler!r} ({e}); "
                               "expected an address such as tcp://127.0.0.1:8786 of a running "
                               "`dask scheduler`") from e
    with remote:
        for problem in hygiene_problems(remote):
            warnings.warn(problem, stacklevel=3)
        yield remote


def hygiene_problems(client: Any) -> list[str]:
    """What is wrong with the workers' environment for graphexec (see the module docstring),
    one line per kind of problem; empty when every worker is fine."""
    reports = client.run(worker_report).values()
    problems = []
    trim = sorted({r["MALLOC_TRIM_THRESHOLD_"] for r in reports if r["MALLOC_TRIM_THRESHOLD_"]})
    if trim:
        problems.append(f"Dask workers have MALLOC_TRIM_THRESHOLD_={', '.join(trim)}, which "
                        "costs page faults on every activation (sweeps ran at 0.4-0.7x of "
                        "serial); start them with `dask worker --no-nanny` from a shell without it")
    many = [r for r in reports if r["blas_threads"] and max(r["blas_threads"]) > 1]
    if many:
        problems.append(f"{len(many)} Dask worker(s) run several BLAS threads; set "
                        "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 before "
                        "starting them")
    return problems


def worker_report() -> dict[str, Any]:
    """What this process (a worker, under ``client.run``) has: pid, BLAS and malloc settings,
    and the BLAS thread pools threadpoolctl sees (when it is installed)."""
    report: dict[str, Any] = {"pid": os.getpid()}
    for name in BLAS_THREAD_VARS + WORKER_UNSET:
        report[name] = os.environ.get(name)
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        report["blas_threads"] = None
    else:
        report["blas_threads"] = [p.get("num_threads") for p in threadpool_info()
                                  if p.get("user_api") == "blas"]
    return report
