"""graphexec on Dask: sweeps and batch prediction across worker processes or machines.

Needs the extra ``graphexec[distributed]`` (``dask[distributed]``). Nothing here builds a
scheduler, a queue or an RPC layer: Dask does all of that; this package decides what goes to
the workers (a graph as its file bytes, once per worker) and sets their environment (one BLAS
thread each, glibc's adaptive malloc left on). See ``docs/distributed.md``.

* :func:`sweep` — every point of a grid trained by ``gx.fit`` on the workers;
* :func:`predict` — ``gx.predict`` over a Dask array or a ``.npy`` file, chunk by chunk;
* :func:`local_cluster`, :func:`connect` — clients with the right worker environment;
* :func:`worker_report`, :func:`hygiene_problems` — what a worker's environment is, and what
  is wrong with it (connecting to a scheduler warns about it).
"""

from graphexec.distributed._cluster import (
    BLAS_THREAD_VARS,
    WORKER_ENV,
    DistributedError,
    connect,
    hygiene_problems,
    local_cluster,
    worker_report,
)
from graphexec.distributed._predict import predict, predict_to_npy
from graphexec.distributed._sweep import SweepResult, grid_points, run_point, sweep

__all__ = [
    "BLAS_THREAD_VARS",
    "WORKER_ENV",
    "DistributedError",
    "SweepResult",
    "connect",
    "grid_points",
    "hygiene_problems",
    "local_cluster",
    "predict",
    "predict_to_npy",
    "run_point",
    "sweep",
    "worker_report",
]
