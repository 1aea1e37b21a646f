"""The timing harness shared by every benchmark: interleaved rounds, medians, paired ratios.

Every contender of one benchmark runs in this process, one after the other inside each round
(the order rotates from round to round), so a noisy neighbour or a change of CPU clock hits all of
them alike. Each contender's time is the median over rounds; its ratio is the median over rounds
of (its time / the baseline's time in the same round), which cancels drift between rounds.
"""

from __future__ import annotations

import gc
import importlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Thunk = Callable[[], object]


@dataclass
class Settings:
    """How long to measure. ``quick`` gives rough numbers in a fraction of the time."""

    rounds: int = 15
    min_time: float = 0.05  # seconds per contender per round
    quick: bool = False
    # Idle time after each timed block: numpy's OpenBLAS and PyTorch's OpenMP threads spin for a
    # while after their last task; without a pause they steal the cores from the next contender.
    pause: float = 0.2

    clock: str = "wall"  # or "cpu": this thread's CPU time (use with --threads 1)
    threads: int | None = None  # compute threads of numpy's BLAS, PyTorch, onnxruntime

    @classmethod
    def make(cls, quick: bool, clock: str = "wall", threads: int | None = None) -> Settings:
        if quick:
            return cls(rounds=5, min_time=0.02, quick=True, pause=0.05, clock=clock,
                       threads=threads)
        return cls(clock=clock, threads=threads)


@dataclass
class Row:
    """One line of the results table."""

    group: str
    case: str
    contender: str
    seconds: float | None  # median per call; None when the contender was skipped
    ratio: float | None  # median of paired ratios against the group's baseline
    goal: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def peer(module: str) -> tuple[Any, str]:
    """Import an optional peer library; ``(None, note)`` if it is not installed."""
    try:
        return importlib.import_module(module), ""
    except ImportError as e:
        return None, f"{module} not installed ({e.name}): skipped"


def _calibrate(fn: Thunk, min_time: float) -> int:
    """Calls per timing so that one timing lasts about ``min_time`` seconds."""
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time / 4 or n >= 1 << 20:
            return max(1, int(n * min_time / max(dt, 1e-9)))
        n *= 4


def compare(contenders: dict[str, Thunk], settings: Settings, *, baseline: str | None = None,
            threaded: bool = True) -> dict[str, tuple[float, float]]:
    """Time each contender, interleaved; returns ``name -> (median seconds, median ratio)``.

    The baseline defaults to the first contender. Each thunk runs once untimed first (warm-up,
    lazy compilation, first-touch page faults). ``threaded=False``: no contender uses a thread
    pool, so no pause is needed between timed blocks.
    """
    clock = time.thread_time if settings.clock == "cpu" else time.perf_counter
    names = list(contenders)
    base = baseline or names[0]
    for fn in contenders.values():
        fn()
    counts = {n: _calibrate(contenders[n], settings.min_time) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(settings.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            fn, k = contenders[n], counts[n]
            t0 = clock()
            for _ in range(k):
                fn()
            times[n].append((clock() - t0) / k)
            if threaded and settings.threads != 1:
                time.sleep(settings.pause)
    out = {}
    for n in names:
        ratios = [t / b for t, b in zip(times[n], times[base])]
        out[n] = (statistics.median(times[n]), statistics.median(ratios))
    return out


def once(fn: Thunk, settings: Settings, *, rounds: int | None = None) -> list[float]:
    """Wall time of single calls of ``fn`` (for things too slow to repeat in a loop)."""
    out = []
    for _ in range(rounds or settings.rounds):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


# ---------------------------------------------------------------------------- reporting
def fmt_time(s: float | None) -> str:
    if s is None:
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.2f}×"


def table(rows: list[Row]) -> str:
    """The results as a Markdown table (also readable in a terminal)."""
    head = ["benchmark", "case", "contender", "median", "ratio", "goal", "note"]
    lines = [head, ["---"] * len(head)]
    for r in rows:
        value = r.extra.get("display") or fmt_time(r.seconds)
        lines.append([r.group, r.case, r.contender, value, fmt_ratio(r.ratio), r.goal, r.note])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    return "\n".join("| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths)) + " |"
                     for line in lines)


def machine_facts() -> dict[str, str]:
    """CPU, cores, Python, numpy and its BLAS (kernel and threads), peer versions."""
    import numpy as np

    facts = {"python": f"{platform.python_implementation()} {sys.version.split()[0]}",
             "numpy": np.__version__, "cores (os.cpu_count)": str(os.cpu_count())}
    try:
        with open("/proc/cpuinfo") as f:
            info = dict(ln.split(":", 1) for ln in f.read().split("\n\n")[0].splitlines()
                        if ":" in ln)
        info = {k.strip(): v.strip() for k, v in info.items()}
        simd = [x for x in ("avx2", "avx512f") if x in info.get("flags", "").split()]
        facts["cpu"] = (f"{info.get('model name', '?')} (family {info.get('cpu family', '?')}, "
                        f"model {info.get('model', '?')}; {', '.join(simd) or 'no avx2'})")
    except OSError:
        facts["cpu"] = platform.processor() or platform.machine()
    threadpoolctl, _ = peer("threadpoolctl")
    if threadpoolctl is not None:
        np.ones((2, 2)) @ np.ones((2, 2))
        blas = [i for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
        facts["blas"] = "; ".join(f"{i['internal_api']} {i['version']} ({i.get('architecture', '?')} "
                                  f"kernel, {i['num_threads']} threads)" for i in blas) or "?"
    pinned = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_") or k.endswith(
        "_NUM_THREADS")}
    facts["blas environment"] = ", ".join(f"{k}={v}" for k, v in sorted(pinned.items())) or "none"
    for name in ("torch", "onnxruntime", "safetensors", "networkx"):
        mod, _ = peer(name)
        facts[name] = getattr(mod, "__version__", "?") if mod is not None else "not installed"
    torch, _ = peer("torch")
    if torch is not None:
        facts["torch threads"] = str(torch.get_num_threads())
    return facts
