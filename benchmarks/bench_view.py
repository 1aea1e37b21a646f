"""The viewer on a 2,000-gate graph: how long building the page takes (Python), how big it is,
and, in headless Chromium, how long the page takes to open and to take a step.

    python benchmarks/bench_view.py [--layers 640] [--rounds 3]

Needs selenium and Debian's chromium + chromium-driver for the browser half (skipped with a note
otherwise). The graph is tests/test_view.py's ``deep_graph``: residual tanh layers, 3 gates each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from test_view import ADD_MUL, deep_graph  # noqa: E402

import graphexec as gx  # noqa: E402
from graphexec.viewer import view  # noqa: E402

STEP_JS = """
const n = arguments[0], t0 = performance.now();
for (let i = 0; i < n; i++)
  document.dispatchEvent(new KeyboardEvent('keydown', {key: arguments[1], bubbles: true}));
return performance.now() - t0;
"""
OPEN_JS = """
const [nav] = performance.getEntriesByType('navigation');
return {parsed: nav.domInteractive, loaded: nav.loadEventEnd};
"""


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the ``dot`` runs): unlike wall
    time, not inflated by other jobs on a shared machine."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def build(graph: gx.Graph, feed: dict[str, Any], layout: str, rounds: int) -> tuple[float, float, int]:
    """Median wall and CPU seconds of ``view`` and the page's size in bytes."""
    wall, cpu = [], []
    for _ in range(rounds):
        t, c = time.perf_counter(), _cpu()
        page = view(graph, feed, layout=layout)
        wall.append(time.perf_counter() - t)
        cpu.append(_cpu() - c)
    return statistics.median(wall), statistics.median(cpu), len(page.html.encode("utf-8"))


def browser(path: str, rounds: int) -> dict[str, float] | str:
    chromium, driver_exe = "/usr/bin/chromium", "/usr/bin/chromedriver"
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        return "selenium not installed"
    if not (os.path.exists(chromium) and os.path.exists(driver_exe)):
        return "chromium / chromium-driver not installed"
    os.environ["SE_OFFLINE"] = "true"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--no-first-run",
                "--window-size=1400,900", f"--user-data-dir={tempfile.mkdtemp()}"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=driver_exe), options=opts)
    out: dict[str, list[float]] = {"open (ms)": [], "ready (ms)": [], "one step, median of 50 (ms)": [],
                                   "End (ms)": [], "open a box (ms)": []}
    try:
        for _ in range(rounds):
            t = time.perf_counter()
            drv.get("file://" + path)
            WebDriverWait(drv, 120).until(lambda d: d.execute_script("return document.body.dataset.ready"))
            out["ready (ms)"].append((time.perf_counter() - t) * 1000)
            out["open (ms)"].append(drv.execute_script(OPEN_JS)["loaded"])
            per = [drv.execute_script(STEP_JS, 1, "ArrowRight") for _ in range(50)]
            out["one step, median of 50 (ms)"].append(statistics.median(per))
            out["End (ms)"].append(drv.execute_script(STEP_JS, 1, "End"))
            out["open a box (ms)"].append(drv.execute_script(
                "const t0 = performance.now(); document.querySelector('.node.group').dispatchEvent("
                "new MouseEvent('click', {bubbles: true})); return performance.now() - t0;"))
    finally:
        drv.quit()
    return {k: statistics.median(v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=640)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    g = deep_graph(args.layers)
    feed = {"x": np.ones((2, 3)), "s": 0.9}
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"graph: {len(g.nodes)} gates, {sum(v.size for v in g.params.values())} parameters")
    small = gx.load(os.path.join(HERE, "..", "models", "add_mul.gx"))
    layouts = ["dagre"] + (["dot"] if shutil.which("dot") else [])
    for layout in layouts:
        s, c, size = build(small, ADD_MUL, layout, args.rounds)
        print(f"build add_mul, layout {layout}: {s * 1000:.0f} ms wall, {c * 1000:.0f} ms CPU, "
              f"{size / 1e3:.0f} kB")
        s, c, size = build(g, feed, layout, args.rounds)
        print(f"build {len(g.nodes)} gates, layout {layout}: {s:.2f} s wall, {c:.2f} s CPU, "
              f"{size / 1e6:.1f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        for layout in layouts:
            path = os.path.join(tmp, f"deep-{layout}.html")
            view(g, feed, path, layout=layout)
            res = browser(path, args.rounds)
            if isinstance(res, str):
                print(f"browser: skipped ({res})")
                break
            print(f"browser, layout {layout}: " + ", ".join(f"{k} {v:.1f}" for k, v in res.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
