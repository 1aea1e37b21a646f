"""The viewer page driven in a real browser: headless Chromium (Debian's, through selenium and the
system chromedriver; Selenium Manager is never asked to download anything).

Skipped, with the reason, where selenium, /usr/bin/chromium or /usr/bin/chromedriver is missing
(`.ci/run` installs them with apt-get when it can).
"""

import json
import os
import pathlib
import re
import shutil

import numpy as np
import pytest
from test_view import ADD_MUL, NEURON, deep_graph

import graphexec as gx
import graphexec.draw as drawmod
from graphexec.viewer import view

from conftest import MODELS

CHROMIUM = os.environ.get("GRAPHEXEC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("GRAPHEXEC_CHROMEDRIVER", "/usr/bin/chromedriver")


def _why_not() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for exe, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            return f"{exe} not found: install Debian's {pkg} (apt-get install chromium chromium-driver)"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    old = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never download a browser or driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--no-default-browser-check", "--window-size=1400,900",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    drv.set_script_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()
        if old is None:
            os.environ.pop("SE_OFFLINE", None)
        else:
            os.environ["SE_OFFLINE"] = old


def open_page(driver, path: pathlib.Path) -> None:
    """Load the page from file:// with the logs drained first, and wait until it is drawn."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")
    driver.get_log("browser")
    driver.get_log("performance")
    driver.get(path.as_uri())
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.body.dataset.ready"))


def press(driver, key: str, times: int = 1) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    k = {"right": Keys.ARROW_RIGHT, "left": Keys.ARROW_LEFT, "home": Keys.HOME, "end": Keys.END}[key]
    chain = ActionChains(driver)
    for _ in range(times):
        chain.send_keys(k)
    chain.perform()


def wires(driver) -> dict[str, tuple[str, str]]:
    """The accessible wires table: wire -> (value, gradient) as text (the first wire of each
    value; ``into``, the reader, is the second column)."""
    from selenium.webdriver.common.by import By

    out = {}
    for row in driver.find_elements(By.CSS_SELECTOR, "#wires-body tr"):
        name, _into, val, grad = (td.text for td in row.find_elements(By.TAG_NAME, "td"))
        out.setdefault(name, (val, grad))
    return out


def wire_labels(driver) -> list[str]:
    """The text drawn on the wires of the circuit (SVG text, in the DOM)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('.wire-label')].map(t => t.textContent)")


def step_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "step").text


def console(driver) -> list[dict]:
    return driver.get_log("browser")


def network(driver) -> list[tuple[str, str]]:
    """Every request since the page was opened (the DevTools performance log), as (URL, what
    became of it: "answered", "blocked: <reason>", "failed" or "pending")."""
    msgs = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
    urls, fate = {}, {}
    for m in msgs:
        p = m["params"]
        if m["method"] == "Network.requestWillBeSent":
            urls.setdefault(p["requestId"], p["request"]["url"])
        elif m["method"] == "Network.responseReceived":
            fate[p["requestId"]] = "answered"
        elif m["method"] == "Network.loadingFailed":
            reason = p.get("blockedReason")
            fate[p["requestId"]] = f"blocked: {reason}" if reason else "failed"
    return [(u, fate.get(r, "pending")) for r, u in urls.items()]


def requests(driver) -> list[str]:
    """Every URL the page asked for since it was opened."""
    return [u for u, _ in network(driver)]


def num(t: str) -> float:
    return float(t.replace("−", "-"))


@pytest.fixture(scope="module")
def add_mul_page(tmp_path_factory):
    path = tmp_path_factory.mktemp("pages") / "add_mul.html"
    view(gx.load(MODELS / "add_mul.gx"), ADD_MUL, path)
    return path


def test_add_mul_end_shows_the_lectures_numbers(driver, add_mul_page):
    open_page(driver, add_mul_page)
    press(driver, "end")
    w = wires(driver)
    assert w["f"] == ("−12", "1")
    assert {k: w[k][1] for k in "xyz"} == {"x": "−4", "y": "−4", "z": "3"}
    assert {k: w[k][0] for k in "xyzq"} == {"x": "−2", "y": "5", "z": "−4", "q": "3"}
    assert sorted(wire_labels(driver)) == sorted(["−2−4", "5−4", "−43", "3−4", "−121"])
    assert "∂f/∂x = ∂f/∂q · ∂q/∂x = −4 × 1 = −4" in step_text(driver)
    assert console(driver) == []
    assert requests(driver) == [add_mul_page.as_uri()]


def test_stepping_shows_what_the_executor_computed_at_each_step(driver, add_mul_page):
    from selenium.webdriver.common.by import By

    open_page(driver, add_mul_page)
    ex = gx.Executor(gx.load(MODELS / "add_mul.gx"))
    f = float(ex.forward(ADD_MUL)["f"])
    grads = {k: float(v) for k, v in ex.backward().items()}
    seen = []
    for _ in range(5):
        w = wires(driver)
        seen.append((w.get("q", ("", ""))[0], w.get("f", ("", ""))[0],
                     tuple(w.get(k, ("", ""))[1] for k in "xyz")))
        press(driver, "right")
    assert seen == [
        ("", "", ("", "", "")),          # start: inputs only
        ("3", "", ("", "", "")),         # forward q = x + y
        ("3", "−12", ("", "", "")),      # forward f = q z
        ("3", "−12", ("", "", "3")),     # backward at f: dz = q (and dq = z)
        ("3", "−12", ("−4", "−4", "3")),  # backward at q: dx = dy = dq
    ]
    assert num(seen[-1][1]) == f and [num(g) for g in seen[-1][2]] == [grads[k] for k in "xyz"]
    press(driver, "left", 2)  # back to the forward step at f: the gradients are gone again
    w = wires(driver)
    assert w["f"] == ("−12", "") and w["x"] == ("−2", "")
    assert "f = q × z = 3 × (−4) = −12" in step_text(driver)
    driver.find_element(By.ID, "home").click()
    assert "q" not in wires(driver) and "step 0 of 4" in driver.find_element(By.ID, "step-no").text
    driver.find_element(By.ID, "next").click()
    assert wires(driver)["q"] == ("3", "")
    current = driver.find_elements(By.CSS_SELECTOR, ".node.current")
    assert [c.get_attribute("aria-label") for c in current] == ["gate q"]
    assert console(driver) == []


def test_sigmoid_neuron_to_the_end_shows_the_lectures_numbers_in_order(driver, tmp_path):
    path = tmp_path / "sigmoid_neuron.html"
    view(gx.load(MODELS / "sigmoid_neuron.gx"), NEURON, path)
    open_page(driver, path)
    panels = []
    for _ in range(10):
        press(driver, "right")
        panels.append(step_text(driver))
    assert "step 10 of 10" in driver.page_source
    # the lecture: f = 0.73; ddot = 0.20; dx = [0.39, -0.59]; dw = [-0.20, -0.39]
    lines = [ln for p in panels for ln in p.splitlines() if re.search(r"= −?\d", ln)]
    found = []
    for want, pattern in ((0.73, r"^f = σ\(dot\) = σ\(1\) = (\S+)$"),
                          (0.20, r"^∂f/∂dot = ∂f/∂f · ∂f/∂dot = 1 × \S+ = (\S+)$"),
                          (0.39, r"^∂f/∂x0 = ∂f/∂w0x0 · ∂w0x0/∂x0 = 0.1966 × 2 = (\S+)$"),
                          (-0.59, r"^∂f/∂x1 = ∂f/∂w1x1 · ∂w1x1/∂x1 = 0.1966 × \(−3\) = (\S+)$"),
                          (-0.20, r"^∂f/∂w0 = ∂f/∂w0x0 · ∂w0x0/∂w0 = 0.1966 × \(−1\) = (\S+)$"),
                          (-0.39, r"^∂f/∂w1 = ∂f/∂w1x1 · ∂w1x1/∂w1 = 0.1966 × \(−2\) = (\S+)$")):
        at = [i for i, ln in enumerate(lines) if re.match(pattern, ln)]
        assert len(at) == 1, (pattern, lines)
        assert round(num(re.match(pattern, lines[at[0]]).group(1)), 2) == want
        found.append(at[0])
    # the value first, then each gradient as the backward pass reaches its gate (the executor
    # runs w1x1's backward before w0x0's: the reverse of its forward order)
    assert found[0] < found[1] < min(found[2:])
    assert found[3] < found[2] and found[5] < found[4]
    assert all("rule (" in p for p in panels)  # each step names the gate's rule
    assert console(driver) == []


def test_mlp_page_heat_maps_node_details_and_no_network(driver, tmp_path):
    from selenium.webdriver.common.by import By

    path = tmp_path / "digits_mlp.html"
    g = gx.load(MODELS / "digits_mlp.gx")
    rng = np.random.default_rng(0)
    view(g, {"x": rng.standard_normal((4, 64)), "y": np.array([0, 3, 5, 9])}, path)
    open_page(driver, path)
    press(driver, "right")
    assert "shape (4, 100)" in step_text(driver)
    assert driver.find_elements(By.CSS_SELECTOR, "#step canvas.heat")
    driver.find_element(By.CSS_SELECTOR, '.node.gate[data-name="h1"]').click()
    details = driver.find_element(By.ID, "details").text
    assert "affine v1" in details and "6500 (W1: 6400, b1: 100)" in details
    assert "x (4, 64), W1 (64, 100), b1 (100,)" in details and "output shape\n(4, 100)" in details
    press(driver, "end")
    assert "∂loss/∂x = ∂loss/∂h1 · ∂h1/∂x" in step_text(driver)
    assert console(driver) == []
    assert requests(driver) == [path.as_uri()]


def test_the_csp_blocks_any_request(driver, add_mul_page):
    open_page(driver, add_mul_page)
    blocked = driver.execute_async_script("""
        const done = arguments[arguments.length - 1], seen = [];
        document.addEventListener('securitypolicyviolation', e => seen.push(e.violatedDirective));
        const img = new Image(); img.src = 'http://127.0.0.1:9/x.png';
        fetch('http://127.0.0.1:9/').catch(() => {}).finally(() => setTimeout(() => done(seen), 200));
    """)
    assert sorted(set(blocked)) == ["connect-src", "img-src"]
    tried = dict(network(driver))
    assert tried.pop(add_mul_page.as_uri()) == "answered"
    assert all(fate.startswith("blocked: csp") for fate in tried.values()), tried
    console(driver)  # the violations were logged; nothing else to check there


def test_dagre_layout_page_works_without_dot(driver, tmp_path, monkeypatch):
    monkeypatch.setattr(drawmod.shutil, "which", lambda name: None)
    path = tmp_path / "add_mul_dagre.html"
    view(gx.load(MODELS / "add_mul.gx"), ADD_MUL, path)
    open_page(driver, path)
    press(driver, "end")
    assert wires(driver)["x"] == ("−2", "−4")
    xs = driver.execute_script("""
        return Object.fromEntries([...document.querySelectorAll('.node')].map(
            n => [n.getAttribute('aria-label'), n.querySelector('rect').x.baseVal.value]));""")
    assert xs["input x"] < xs["gate q"] < xs["gate f"] < xs["output f"]  # laid out left to right
    assert console(driver) == []


@pytest.mark.parametrize("layout", ["dagre"] + (["dot"] if shutil.which("dot") else []))
def test_a_2000_gate_graph_opens_and_steps(driver, tmp_path, layout):
    from selenium.webdriver.common.by import By

    g = deep_graph(640)
    assert len(g.nodes) >= 2000
    path = tmp_path / "deep.html"
    view(g, {"x": np.ones((2, 3)), "s": 0.9}, path, layout=layout)
    open_page(driver, path)
    boxes = driver.find_elements(By.CSS_SELECTOR, ".node.group")
    assert 20 <= len(boxes) <= 120
    press(driver, "right", 50)
    assert driver.find_element(By.ID, "step-no").text.startswith("step 50 of ")
    assert len(driver.find_elements(By.CSS_SELECTOR, ".node.group.current")) == 1
    driver.find_element(By.ID, "follow").click()
    press(driver, "right")  # now the view goes into the box of the current gate
    assert driver.find_element(By.ID, "view-title").text.startswith("inside the box")
    assert len(driver.find_elements(By.CSS_SELECTOR, ".node.gate.current")) == 1
    press(driver, "end")
    assert "∂loss/∂x" in step_text(driver) or "∂loss/∂W0" in step_text(driver)
    driver.find_element(By.ID, "up").click()
    boxes[0].click()  # a box opens on click
    assert driver.find_element(By.ID, "view-title").text.startswith("inside the box m0")
    assert console(driver) == []


def test_the_jupyter_iframe_runs_the_page(driver, tmp_path):
    """What ``_repr_html_`` gives Jupyter: an iframe whose srcdoc is the page, CSP and all."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    page = view(gx.load(MODELS / "add_mul.gx"), ADD_MUL)
    notebook = tmp_path / "notebook.html"
    notebook.write_text(f"<!DOCTYPE html><html><body>{page._repr_html_()}</body></html>", "utf-8")
    driver.get("about:blank")
    driver.get_log("browser")
    driver.get(notebook.as_uri())
    driver.switch_to.frame(driver.find_element(By.TAG_NAME, "iframe"))
    try:
        WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.body.dataset.ready"))
        driver.find_element(By.ID, "end").click()
        assert wires(driver)["f"] == ("−12", "1")
    finally:
        driver.switch_to.default_content()
    assert console(driver) == []
