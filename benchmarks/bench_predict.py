"""``graphexec predict`` on a multi-GB input: throughput and peak RSS vs the chunked loop.

Generates ``--gb`` GB of float64 rows (D = 64) in a temporary folder (never committed), then
runs, each in its own process so that each peak RSS is its own:

* ``loop``: the chunked loop in one process, ``np.load(mmap_mode="r")`` and
  ``gx.run(g, {"x": X[i:j]})`` per chunk into an output array in memory;
* ``cli``: ``graphexec predict FILE --input X.npy -o OUT.npy`` (memory-mapped input, output
  written into a .npy chunk by chunk, pages given back after each chunk);
* ``cli --workers 2`` (with ``--workers``): the same on a local Dask cluster (the workers' RSS
  is not in the figure; throughput includes starting the cluster).

Times are measured inside each process after its imports; peak RSS is the process's
``ru_maxrss`` (it counts the pages of the memory-mapped input that are resident).

Usage: python benchmarks/bench_predict.py [--gb 2] [--batch-size 8192] [--rounds 2] [--workers]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

import graphexec as gx

D, H, C = 64, 256, 10

#: The child's own peak RSS in KiB: VmHWM (this process image only; ru_maxrss would also count
#: the pages the child inherited from this process before its exec).
PEAK_KB = """
def PEAK():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""

LOOP = PEAK_KB + f"""
import resource, sys, time, numpy as np, graphexec as gx
t = time.perf_counter()
g = gx.load(sys.argv[1]); X = np.load(sys.argv[2], mmap_mode="r"); bs = int(sys.argv[3])
out = np.empty((len(X), {C}))
for i in range(0, len(X), bs):
    out[i:i + bs] = gx.run(g, {{"x": X[i:i + bs]}}, outputs=["scores"])["scores"]
print(time.perf_counter() - t, PEAK())
"""

CLI = PEAK_KB + """
import resource, sys, time
from graphexec.cli.main import main
t = time.perf_counter()
code = main(["predict", sys.argv[1], "--input", sys.argv[2], "-o", sys.argv[4], "--batch-size",
             sys.argv[3], "--no-progress"] + sys.argv[5:])
assert code == 0
print(time.perf_counter() - t, PEAK())
"""


def make_input(path: str, gb: float) -> int:
    rows = int(gb * 2**30 / (D * 8))
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(rows, D))
    rng = np.random.default_rng(0)
    step = 1 << 16
    for i in range(0, rows, step):
        X[i:i + step] = rng.standard_normal((min(step, rows - i), D))
    X.flush()
    del X
    return rows


def run(label: str, script: str, args: list[str], rows: int) -> None:
    r = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                       check=True)
    secs, peak_kb = r.stdout.split()[-2:]  # timed in the child, after its imports
    secs, peak_mb = float(secs), int(peak_kb) / 1024
    print(f"{label:<22} {secs:7.1f} s  {rows / secs / 1e6:6.2f} M rows/s  "
          f"{rows * D * 8 / secs / 2**20:7.0f} MiB/s  peak RSS {peak_mb:7.0f} MiB", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gb", type=float, default=2.0)
    p.add_argument("--batch-size", type=int, default=8192)
    p.add_argument("--workers", action="store_true", help="also run with --workers 2")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--dir", help="folder for the generated files (default: a temporary one)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        model, data = os.path.join(tmp, "net.gx"), os.path.join(tmp, "x.npy")
        gx.save(gx.nn.mlp([D, H, C], seed=0), model)
        rows = make_input(data, a.gb)
        print(f"input: {rows} rows x {D} float64 = {rows * D * 8 / 2**30:.2f} GiB; "
              f"net {D}-{H}-{C}; batch {a.batch_size}")
        bs = str(a.batch_size)
        runs = [("chunked loop", LOOP, [model, data, bs]),
                ("graphexec predict", CLI, [model, data, bs, os.path.join(tmp, "y.npy")])]
        if a.workers:
            runs.append(("predict --workers 2", CLI, [model, data, bs,
                                                      os.path.join(tmp, "y2.npy"), "--workers", "2"]))
        for r in range(a.rounds):  # the order alternates, so drift hits every contender alike
            for label, script, args in (runs if r % 2 == 0 else runs[::-1]):
                run(label, script, args, rows)
        if a.workers:
            same = np.array_equal(np.load(os.path.join(tmp, "y.npy"), mmap_mode="r"),
                                  np.load(os.path.join(tmp, "y2.npy"), mmap_mode="r"))
            print(f"--workers 2 output identical to the local one: {same}")

if __name__ == "__main__":
    main()
