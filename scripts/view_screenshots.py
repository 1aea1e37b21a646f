"""Screenshots of the viewer for docs/viewer.md: three steps each of add_mul, sigmoid_neuron and
digits_mlp, in headless Chromium (Debian's chromium + chromium-driver, through selenium).

    python scripts/view_screenshots.py [OUT_DIR]      # default docs/img
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

import graphexec as gx
from graphexec.viewer import view

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
PAGES = {  # model -> (inputs, steps to photograph)
    "add_mul": ({"x": -2.0, "y": 5.0, "z": -4.0}, (2, 3, 4)),
    "sigmoid_neuron": ({"w0": 2.0, "w1": -3.0, "w2": -3.0, "x0": -1.0, "x1": -2.0}, (5, 6, 10)),
    "digits_mlp": ({"x": np.random.default_rng(0).standard_normal((4, 64)),
                    "y": np.array([0, 3, 5, 9])}, (2, 9, 16)),
}


def driver(width: int, height: int):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--no-first-run",
                "--hide-scrollbars", f"--window-size={width},{height}",
                f"--user-data-dir={tempfile.mkdtemp()}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)


def main(out: str) -> int:
    from selenium.webdriver.support.ui import WebDriverWait

    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for model, (feed, steps) in PAGES.items():
            page = view(gx.load(os.path.join(ROOT, "models", f"{model}.gx")), feed,
                        os.path.join(tmp, f"{model}.html"))
            drv = driver(*((1800, 1000) if model == "digits_mlp" else (1400, 720)))
            try:
                drv.get("file://" + str(page.path))
                WebDriverWait(drv, 60).until(lambda d: d.execute_script("return document.body.dataset.ready"))
                for s in steps:
                    drv.execute_script("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Home'}));"
                                       f"for (let i = 0; i < {s}; i++) document.dispatchEvent("
                                       "new KeyboardEvent('keydown', {key: 'ArrowRight'}));")
                    path = os.path.join(out, f"view_{model}_{s}.png")
                    drv.save_screenshot(path)
                    print(f"wrote {path}")
            finally:
                drv.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "img")))
