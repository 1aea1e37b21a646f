"""Loading parameters: ``gx.load`` of 1M / 10M / 100M float32 parameters (warm page cache) vs a
raw ``readinto`` of the same bytes into a fresh array vs safetensors; ``gx.load(path, mmap=True)``
on the ~400 MB file: time to a runnable graph and to its first forward pass, against the copying
load and numpy's ``np.load(mmap_mode="r")``; and ``graphexec info`` on the ~400 MB file, which
must read only the header (checked by counting the bytes the process reads).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np
from harness import Row, Settings, compare, peer

import graphexec as gx
from graphexec.cli.main import main as cli

SIZES = {"1M": 10**6, "10M": 10**7, "100M": 10**8}
TENSORS = 4  # parameters split over this many tensors, like the layers of a network


def write_model(folder: str, n: int) -> tuple[str, dict[str, np.ndarray]]:
    """A .gx file whose parameters total ``n`` float32 values, plus the arrays themselves."""
    b = gx.GraphBuilder(f"params_{n}")
    x = b.input("x", shape=(1,), dtype="float32")
    rng = np.random.default_rng(0)
    total = None
    arrays = {}
    for i in range(TENSORS):
        a = rng.standard_normal((n // TENSORS // 1000, 1000), dtype=np.float32)
        arrays[f"W{i}"] = a
        p = b.op("l2", b.param(f"W{i}", a))
        total = p if total is None else b.op("add", total, p)
    b.output(b.op("mul", total, x), "y")
    path = os.path.join(folder, f"params_{n}.gx")
    gx.save(b.build(check_shapes=False), path)
    return path, arrays


def raw_reader(path: str, arrays: dict[str, np.ndarray]) -> Any:
    """The floor: one readinto of the tensor section (the same bytes) into a new array."""
    nbytes = sum(a.nbytes for a in arrays.values())
    start = os.path.getsize(path) - nbytes  # tensors are laid end to end at the end of file

    def read() -> np.ndarray:
        out = np.empty(nbytes, dtype=np.uint8)
        with open(path, "rb") as f:
            f.seek(start)
            f.readinto(memoryview(out))
        return out

    return read


def bytes_read(fn: Any) -> int:
    """How many bytes this process reads (read syscalls) while ``fn`` runs."""
    def rchar() -> int:
        with open("/proc/self/io") as f:
            return int(next(ln for ln in f if ln.startswith("rchar")).split()[1])

    before = rchar()
    fn()
    return rchar() - before


def run(settings: Settings) -> list[Row]:
    """Always on the wall clock: reading is I/O, which a thread's CPU time does not see whole."""
    settings = dataclasses.replace(settings, clock="wall")
    safetensors, st_note = peer("safetensors.numpy")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        big = ""
        for label, n in SIZES.items():
            path, arrays = write_model(folder, n)
            loaded = gx.load(path)
            assert all(np.array_equal(loaded.params[k], v) for k, v in arrays.items())
            contenders = {"raw readinto": raw_reader(path, arrays),
                          "graphexec": lambda path=path: gx.load(path)}
            if safetensors is not None:
                st_path = os.path.join(folder, f"params_{n}.safetensors")
                safetensors.save_file(arrays, st_path)
                contenders["safetensors"] = lambda p=st_path: safetensors.load_file(p)
            del arrays, loaded
            res = compare(contenders, settings, threaded=False)
            case = f"{label} float32 params ({n * 4 / 1e6:.0f} MB)"
            for name, (t, r) in res.items():
                goal = "≤ 1.2×" if name == "graphexec" and n == 10**8 else ""
                rows.append(Row("load", case, name, t, r, goal=goal))
            if safetensors is None:
                rows.append(Row("load", case, "safetensors", None, None, note=st_note))
            print(f"  load {label}: " + ", ".join(
                f"{k} {v[0] * 1e3:.2f} ms ({v[1]:.2f}×)" for k, v in res.items()), file=sys.stderr)
            big = path
        rows += mmap_rows(big, folder, settings)
        rows += info_rows(big, settings)
    return rows


def runnable(path: str, **kw: Any) -> gx.Executor:
    """Load and make the executor: after this a forward pass can run."""
    return gx.Executor(gx.load(path, **kw))


def npy_files(path: str, folder: str) -> list[str]:
    """The parameters of ``path`` as one ``.npy`` file each (numpy's own mapped format)."""
    out = []
    for k, v in gx.load(path).params.items():
        out.append(os.path.join(folder, f"{k}.npy"))
        np.save(out[-1], v)
    return out


def single_calls(contenders: dict[str, Any], settings: Settings) -> dict[str, tuple[float, float]]:
    """Like :func:`harness.compare`, but one call per timing with a ``gc.collect()`` before it
    (untimed): a graph and its executor form reference cycles, so without it 400 MB copies pile
    up until the collector runs, and the next timings pay for their pages. Interleaved rounds,
    rotating order, median times and median paired ratios against the first contender."""
    names = list(contenders)
    times: dict[str, list[float]] = {n: [] for n in names}
    for fn in contenders.values():
        fn()  # warm-up
    for r in range(settings.rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            gc.collect()
            t0 = time.perf_counter()
            contenders[n]()
            times[n].append(time.perf_counter() - t0)
    base = times[names[0]]
    return {n: (statistics.median(t), statistics.median(a / b for a, b in zip(t, base)))
            for n, t in times.items()}


def safe_open_reader(path: str) -> dict[str, Any]:
    """safetensors' lazy reader, if installed: ``safe_open`` maps the file, and ``get_tensor``
    (numpy) makes each tensor an array (the file written by :func:`run` beside ``path``)."""
    st = os.path.splitext(path)[0] + ".safetensors"
    safetensors, _ = peer("safetensors")
    if safetensors is None or not os.path.exists(st):
        return {}

    def read() -> dict[str, np.ndarray]:
        with safetensors.safe_open(st, framework="np") as f:
            return {k: f.get_tensor(k) for k in f.keys()}

    return {"safetensors safe_open": read}


def mmap_rows(path: str, folder: str, settings: Settings) -> list[Row]:
    """``mmap=True`` on the largest file: time to a runnable graph (load + executor) and to the
    end of the first forward pass (which touches every parameter byte), vs the copying load."""
    nbytes = sum(a.nbytes for a in gx.load(path, mmap=True).params.values())
    npys = npy_files(path, folder)
    x = np.ones(1, dtype=np.float32)
    mapped = gx.load(path, mmap=True)
    assert all(np.array_equal(mapped.params[k], np.load(f)) for k, f in zip(mapped.params, npys))
    del mapped
    case = f"100M float32 params ({nbytes / 1e6:.0f} MB)"
    ready = single_calls({
        "raw readinto": raw_reader(path, {"all": np.empty(nbytes, np.uint8)}),
        "graphexec copy": lambda: runnable(path),
        "graphexec mmap=True": lambda: runnable(path, mmap=True),
        "np.load(mmap_mode='r')": lambda: [np.load(f, mmap_mode="r") for f in npys],
        **safe_open_reader(path),
    }, settings)
    first = single_calls({
        "graphexec copy": lambda: runnable(path).forward(x=x),
        "graphexec mmap=True": lambda: runnable(path, mmap=True).forward(x=x),
    }, settings)
    warm_copy, warm_map = runnable(path), runnable(path, mmap=True)
    again = compare({"graphexec copy": lambda: warm_copy.forward(x=x),
                     "graphexec mmap=True": lambda: warm_map.forward(x=x)},
                    settings, threaded=False)
    rows = []
    for group, res in (("load to runnable graph", ready), ("load + first forward", first),
                       ("forward, already loaded", again)):
        for name, (t, r) in res.items():
            goal = "≤ 5 ms" if group == "load to runnable graph" and "mmap" in name and \
                "graphexec" in name else ""
            note = f"{1 / r:.0f}× less time than {next(iter(res))}" if r < 0.05 else ""
            rows.append(Row(group, case, name, t, r, goal=goal, note=note))
        print(f"  {group}: " + ", ".join(f"{k} {v[0] * 1e3:.2f} ms ({v[1]:.2f}×)"
                                        for k, v in res.items()), file=sys.stderr)
    return rows


def info_rows(path: str, settings: Settings) -> list[Row]:
    """``graphexec info`` on the largest file: time, and bytes read vs the file size."""
    def info() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli(["info", path]) == 0

    size = os.path.getsize(path)
    read = bytes_read(info)
    res = compare({"graphexec load": lambda: gx.load(path), "graphexec info": info}, settings,
                  threaded=False)
    case = f"header only, {size / 1e6:.0f} MB file"
    t, r = res["graphexec info"]
    note = f"read {read / 1e3:.1f} kB of {size / 1e6:.0f} MB"
    print(f"  info: {t * 1e3:.2f} ms, {note}", file=sys.stderr)
    return [Row("graphexec info", case, "graphexec load", res["graphexec load"][0], 1.0),
            Row("graphexec info", case, "graphexec info", t, r, goal="header only", note=note)]


if __name__ == "__main__":
    from harness import table

    print(table(run(Settings.make("--quick" in sys.argv))))
