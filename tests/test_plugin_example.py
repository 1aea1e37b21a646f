"""The example plugin (plugins/graphexec-example-gates), installed for real into a fresh venv.

The new venv sees this interpreter's site-packages (numpy, pydantic, graphexec installed editable)
through a .pth file, so nothing is downloaded: pip builds the plugin with the setuptools already
installed (--no-build-isolation --no-index). Every step then runs in a new process, as a user would:
install, list the gates, build and save a graph, load and run it, uninstall, load again.
"""

import importlib.metadata
import json
import math
import os
import shutil
import site
import subprocess
import sys

import numpy as np
import pytest

import graphexec as gx
from graphexec.gradcheck import gradcheck
from graphexec.testing import check_gate

from conftest import ROOT

PLUGIN = ROOT / "plugins" / "graphexec-example-gates"
DIST = "graphexec-example-gates"
OPS = ("gelu", "silu", "softplus")
BUILDS = ("import importlib.util as u, setuptools as s; "
          "v = tuple(map(int, s.__version__.split('.')[:2])); "
          "assert v >= (70, 1) or u.find_spec('wheel'), "
          "f'setuptools {s.__version__} without wheel'")
INSTALL = ("-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index")
HIDDEN = ("GRAPHEXEC_DISABLE_PLUGINS", "PYTHONPATH")


# ---------------------------------------------------------------------------- the venv
def sh(py, *args, cwd=None, check=True):
    env = {k: v for k, v in os.environ.items() if k not in HIDDEN}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONNOUSERSITE="1")
    r = subprocess.run([str(py), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                       timeout=300)
    if check and r.returncode != 0:
        raise AssertionError(f"{args} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A new venv that sees our packages, with the example plugin installed; its python path."""
    try:
        importlib.metadata.distribution("graphexec")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("graphexec is not installed (pip install -e .), so a new venv cannot see it")
    root = tmp_path_factory.mktemp("plugin")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True,
                   timeout=300)
    py = root / "venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = sh(py, "-c", where).stdout.strip()
    dirs = "; ".join(f"site.addsitedir({d!r})" for d in site.getsitepackages())
    (root / purelib / "_graphexec_parent_env.pth").write_text(f"import site; {dirs}\n")
    probe = sh(py, "-c", f"{BUILDS}; import pip", check=False)  # setuptools first (distutils shim)
    if probe.returncode != 0:
        why = probe.stderr.strip().splitlines()[-1]
        pytest.skip("cannot build the plugin offline: pip and setuptools>=70.1 (or wheel) must be "
                    f"installed here (pip install -e '.[test]'): {why}")
    src = root / "src"
    junk = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    shutil.copytree(PLUGIN, src, ignore=junk)  # pip writes build files next to the sources
    sh(py, *INSTALL, src)
    return py, root


BUILD = """
import json, sys
import numpy as np
import graphexec as gx

b = gx.GraphBuilder("smooth_net")
x = b.input("x", shape=(None, 3))
W = b.param("W", np.array([[0.5, -1.0], [1.5, 0.25], [-0.75, 2.0]]))
h = b.op("gelu", b.op("matmul", x, W), name="h")
s = b.op("softplus", h, name="s", beta=2.0)
b.output(b.op("sum", b.op("silu", s, name="z"), name="f"), "f")
g = b.build()
gx.save(g, sys.argv[1])
print(json.dumps(gx.run(g, {"x": [[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]})["f"].tolist()))
"""

RUN = """
import json, sys
import graphexec as gx

try:
    g = gx.load(sys.argv[1])
except gx.UnknownOpError as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
    sys.exit(0)
ex = gx.Executor(g)
out = ex.forward(x=[[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
print(json.dumps({"f": out["f"].tolist(), "dW": ex.backward()["W"].tolist()}))
"""


CHECK_DIST = ("from graphexec.testing import check_distribution; "
              f"print(check_distribution({DIST!r}, cases={{'softplus': {{'attrs': {{'beta': 2.0}}}}}}))")


def expected_f():
    """f by hand: sum(silu(softplus_2(gelu(x @ W)))), with the formulas of the plugin's README."""
    x = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    a = x @ np.array([[0.5, -1.0], [1.5, 0.25], [-0.75, 2.0]])
    h = 0.5 * a * (1 + np.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a**3)))
    s = np.log1p(np.exp(2.0 * h)) / 2.0
    return float(np.sum(s / (1 + np.exp(-s))))


# ---------------------------------------------------------------------------- the life cycle
def test_install_use_uninstall(venv):
    py, root = venv
    gates = json.loads(sh(py, "-m", "graphexec", "gates", "--json").stdout)
    rows = {r["op"]: r for r in gates["gates"]}
    for op in OPS:
        assert (rows[op]["dist"], rows[op]["dist_version"], rows[op]["version"]) \
            == (DIST, "0.1.0", 1)
    assert rows["mul"]["dist"] == "graphexec" and gates["broken"] == []
    assert sh(py, "-m", "graphexec", "gates", "--strict").returncode == 0
    detail = sh(py, "-m", "graphexec", "gates", "softplus").stdout
    assert "Local gradient dy/dx = σ(βx)" in detail and detail.endswith("  beta: float = 1.0\n")
    kit = sh(py, "-c", CHECK_DIST).stdout.splitlines()
    assert kit[0] == f"{DIST} 0.1.0: 3 gate entry points, all pass"
    assert [line.split()[:2] for line in kit[1:]] == [["ok", "gelu:"], ["ok", "silu:"],
                                                      ["ok", "softplus:"]]

    path = root / "smooth.gx"
    (root / "build.py").write_text(BUILD)
    (root / "run.py").write_text(RUN)
    built = json.loads(sh(py, root / "build.py", path).stdout)
    assert built == pytest.approx(expected_f(), rel=1e-12)

    ran = json.loads(sh(py, root / "run.py", path).stdout)  # a new process loads and runs it
    assert ran["f"] == built and len(ran["dW"]) == 3
    check = json.loads(sh(py, "-m", "graphexec", "check", path, "--grad", "--json").stdout)
    assert check["ok"] is True
    assert check["gradcheck"]["n_checked"] == 9 + 6  # x (None, 3) is drawn (3, 3), W is (3, 2)
    info = sh(py, "-m", "graphexec", "info", path).stdout
    assert f"op gelu v1 from {DIST} 0.1.0\n" in info and "UNRESOLVED" not in info

    sh(py, "-m", "pip", "uninstall", "-y", "-q", DIST)
    failed = json.loads(sh(py, root / "run.py", path).stdout)
    assert failed["error"] == "UnknownOpError"
    msg = failed["message"]
    assert ("op 'gelu' version 1 (the file says it comes from "
            f"'{DIST}' 0.1.0) is not provided by any installed plugin") in msg
    assert f"install it with: pip install {DIST}" in msg

    cli = sh(py, "-m", "graphexec", "run", path, "-i", "x=[[1,2,3]]", check=False)
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    assert cli.stderr.startswith("error: ") and cli.stderr.count("\n") == 1
    assert "op 'gelu' version 1" in cli.stderr and f"pip install {DIST}" in cli.stderr
    info = sh(py, "-m", "graphexec", "info", path)
    assert info.returncode == 0
    for op in OPS:
        assert f"op {op} v1 from {DIST} 0.1.0  [UNRESOLVED]" in info.stdout
    assert "op matmul v1 from graphexec" in info.stdout and info.stdout.count("UNRESOLVED") == 3


def test_plugin_s_own_tests_pass_against_the_installed_package(venv):
    py, root = venv
    sh(py, *INSTALL, root / "src")
    r = sh(py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=root / "src",
           check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " passed" in r.stdout


NEWER = """
import sys
import graphexec as gx
from graphexec.fileformat import encode
from graphexec.header import to_header

header, arrays = to_header(gx.load(sys.argv[1]))
nodes = [n.model_copy(update={"version": 2}) if n.op == "gelu" else n for n in header.nodes]
ops = [o.model_copy(update={"version": 2, "dist_version": "0.2.0"}) if o.op == "gelu" else o
       for o in header.ops]
with open(sys.argv[2], "wb") as f:
    f.write(b"".join(encode(header.model_copy(update={"nodes": nodes, "ops": ops}), arrays)))
"""


def test_a_file_that_needs_a_newer_gate_names_both_versions(venv):
    py, root = venv
    sh(py, *INSTALL, root / "src")
    (root / "build.py").write_text(BUILD)
    (root / "newer.py").write_text(NEWER)
    (root / "run.py").write_text(RUN)
    sh(py, root / "build.py", root / "v1.gx")
    sh(py, root / "newer.py", root / "v1.gx", root / "v2.gx")
    failed = json.loads(sh(py, root / "run.py", root / "v2.gx").stdout)
    assert failed["message"].endswith(
        f"op 'gelu': the graph needs version 2 (the file says it comes from '{DIST}' 0.2.0), but "
        f"the installed gate is version 1 (from '{DIST}' 0.1.0); upgrade it: pip install -U {DIST}")


# ---------------------------------------------------------------------------- in this process
@pytest.fixture
def example_gates(monkeypatch, restore_registry):
    """The plugin's gate classes, imported from its source tree; the registry restored after."""
    monkeypatch.syspath_prepend(str(PLUGIN / "src"))
    import graphexec_example_gates as m

    return {c.name: c for c in (m.Softplus, m.SiLU, m.GELU)}


@pytest.mark.parametrize("op", OPS)
def test_example_gates_pass_the_kit_and_gradcheck(example_gates, op):
    cls = example_gates[op]
    assert check_gate(cls, (4, 3), value_range=(-5.0, 5.0)) < 1e-6
    gx.register_gate(cls, replace=True)
    rng = np.random.default_rng(11)
    b = gx.GraphBuilder(op)
    x = b.input("x", shape=(None, 3))
    W = b.param("W", rng.standard_normal((3, 4)))
    b.output(b.op("sum", b.op(op, b.op("matmul", x, W))), "f")
    report = gradcheck(b.build(), {"x": rng.standard_normal((5, 3)) * 2})
    assert report.ok and report.max_rel_error < 1e-6 and report.n_checked == 15 + 12
