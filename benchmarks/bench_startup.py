"""Start-up: fresh interpreters running ``python -c pass``, ``import numpy``, ``import graphexec``,
``graphexec --help`` and ``graphexec info models/add_mul.gx``.

Each command runs as a new process, interleaved round by round (the order rotates), and its time
is the median over rounds. ``--clock cpu`` counts the child's CPU time (user + system, from
``getrusage(RUSAGE_CHILDREN)``), which a busy machine disturbs far less than the wall clock;
``wall`` is the time from spawn to exit as a user waits for it. Ratios are medians of per-round
ratios against ``python -c pass`` (the interpreter's own start-up) and against ``import numpy``
in the same round. Bytecode is cached first (a warm-up run may write ``__pycache__``, as
``pip install`` does), so that no round pays for compiling graphexec's sources.

    python benchmarks/bench_startup.py [--quick] [--clock cpu|wall]
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import Row, Settings

ROOT = Path(__file__).resolve().parent.parent
SMALL_FILE = ROOT / "models" / "add_mul.gx"
GOALS = {"import graphexec": "≤ 150 ms", "graphexec --help": "≤ 250 ms",
         "graphexec info add_mul.gx": "≤ 350 ms"}


def _cli() -> list[str]:
    """The installed ``graphexec`` script beside this interpreter, else ``python -m graphexec``."""
    script = Path(sys.executable).parent / "graphexec"
    if script.exists():
        return [str(script)]
    found = shutil.which("graphexec")
    return [found] if found else [sys.executable, "-m", "graphexec"]


def commands() -> dict[str, list[str]]:
    py, cli = sys.executable, _cli()
    return {
        "python -c pass": [py, "-c", "pass"],
        "import numpy": [py, "-c", "import numpy"],
        "import graphexec": [py, "-c", "import graphexec"],
        "graphexec --help": [*cli, "--help"],
        "graphexec info add_mul.gx": [*cli, "info", str(SMALL_FILE)],
    }


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_once(argv: list[str], clock: str, *, write_bytecode: bool = False) -> float:
    """Seconds for one fresh process of ``argv`` (which must succeed)."""
    env = dict(os.environ)
    if write_bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # the same .pyc state in every round
    cpu0, t0 = _children_cpu(), time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                          check=False)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if done.returncode != 0:
        raise RuntimeError(f"{argv} exited {done.returncode}: {done.stderr.decode()[-300:]}")
    return cpu if clock == "cpu" else wall


def measure(settings: Settings) -> dict[str, list[float]]:
    """Per command, its time in each round (one warm-up run of each first: page cache, .pyc)."""
    cmds = commands()
    names = list(cmds)
    for argv in cmds.values():
        time_once(argv, settings.clock, write_bytecode=True)
    rounds = max(settings.rounds, 11) if not settings.quick else 5
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            times[n].append(time_once(cmds[n], settings.clock))
    return times


def run(settings: Settings) -> list[Row]:
    times = measure(settings)
    base, numpy_ = times["python -c pass"], times["import numpy"]
    rows = []
    for name, ts in times.items():
        vs_pass = statistics.median(t / b for t, b in zip(ts, base))
        vs_numpy = statistics.median(t / b for t, b in zip(ts, numpy_))
        rows.append(Row("startup", f"fresh process, {settings.clock} clock", name,
                        statistics.median(ts), vs_pass, goal=GOALS.get(name, ""),
                        note=f"{vs_numpy:.2f}× import numpy",
                        extra={"vs_numpy": vs_numpy}))
        print(f"  startup {name}: {statistics.median(ts) * 1e3:.1f} ms "
              f"({vs_pass:.2f}× python -c pass, {vs_numpy:.2f}× import numpy)", file=sys.stderr)
    return rows


if __name__ == "__main__":
    import argparse

    from harness import table

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="5 rounds")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="cpu: the child processes' CPU time (steady on a busy machine)")
    args = p.parse_args()
    print(table(run(Settings.make(args.quick, args.clock))))
