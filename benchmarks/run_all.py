"""Run every benchmark and print one table of medians and ratios (Markdown).

    python benchmarks/run_all.py                 # everything (about 10 minutes)
    python benchmarks/run_all.py --quick         # fewer, shorter rounds (about 2 minutes)
    python benchmarks/run_all.py --only train,overhead --threads 1

Every contender of a benchmark runs in this one process, interleaved round by round; see
``harness.py``. Peers that are not installed (PyTorch, onnxruntime, safetensors) are skipped with
a note. The results are also written to ``--out`` (default: none) as Markdown.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_compile
import bench_conv
import bench_convnet
import bench_inference
import bench_load
import bench_memory
import bench_overhead
import bench_startup
import bench_train
from harness import Row, Settings, machine_facts, peer, table

BENCHMARKS = {
    "train": bench_train.run,
    "overhead": bench_overhead.run,
    "inference": bench_inference.run,
    "load": bench_load.run,
    "compile": bench_compile.run,
    "memory": bench_memory.run,
    "conv": bench_conv.run,
    "convnet": bench_convnet.run,
    "startup": bench_startup.run,
}


def set_threads(n: int) -> None:
    """Limit numpy's BLAS and PyTorch to ``n`` threads (onnxruntime: see bench_inference)."""
    threadpoolctl, note = peer("threadpoolctl")
    if threadpoolctl is None:
        sys.exit(f"--threads needs threadpoolctl: {note}")
    import numpy as np

    np.ones((2, 2)) @ np.ones((2, 2))  # load BLAS so that threadpoolctl sees it
    threadpoolctl.threadpool_limits(n)
    torch, _ = peer("torch")
    if torch is not None:
        torch.set_num_threads(n)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer and shorter rounds")
    p.add_argument("--only", default=",".join(BENCHMARKS),
                   help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    p.add_argument("--threads", type=int, help="BLAS / PyTorch threads (default: theirs)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: this thread's CPU time (steady on a busy machine; use --threads 1)")
    p.add_argument("--adam", action="store_true", help="train steps with Adam as well as SGD")
    p.add_argument("--out", help="also write the Markdown table to this file")
    args = p.parse_args(argv)
    chosen = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    if args.threads:
        set_threads(args.threads)
    settings = Settings.make(args.quick, args.clock, args.threads)
    rows: list[Row] = []
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    for name in chosen:
        print(f"[{name}]", file=sys.stderr)
        if name == "train":
            rows += bench_train.run(settings, ("sgd", "adam") if args.adam else ("sgd",))
        else:
            rows += BENCHMARKS[name](settings)
    facts = machine_facts()
    facts["load average (1 min) before / after"] = (f"{load_before[0]:.2f} / "
                                                    f"{os.getloadavg()[0]:.2f}")
    facts["settings"] = (f"{settings.rounds} rounds × ≥{settings.min_time * 1e3:.0f} ms per "
                         f"contender, clock {settings.clock}, threads "
                         f"{settings.threads or 'library default'}, run took "
                         f"{time.perf_counter() - t0:.0f} s")
    text = "\n".join(f"- {k}: {v}" for k, v in facts.items()) + "\n\n" + table(rows) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
