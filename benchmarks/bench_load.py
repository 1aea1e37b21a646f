"""Loading parameters: ``gx.load`` of 1M / 10M / 100M float32 parameters (warm page cache) vs a
raw ``readinto`` of the same bytes into a fresh array vs safetensors; and ``graphexec info`` on a
~400 MB file, which must read only the header (checked by counting the bytes the process reads).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
import tempfile
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
        rows += info_rows(big, settings)
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
