"""Plugin discovery with fake entry points: isolation of broken plugins, conflicts, validation."""

import importlib
import importlib.metadata
import re
import sys
import textwrap
import threading
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import graphexec as gx
from graphexec import registry as regmod
from graphexec.gates.arith import Add, Mul

from conftest import MODELS


@dataclass
class FakeDist:
    name: str
    version: str = "1.0"

    @property
    def metadata(self):
        return {"Name": self.name}


@dataclass
class FakeEP:
    name: str
    target: Any
    dist: FakeDist
    value: str = "fake.module:Thing"

    def load(self):
        if isinstance(self.target, BaseException):
            raise self.target
        if isinstance(self.target, str):  # "module:attr": a real import, as pip-installed
            return importlib.metadata.EntryPoint(self.name, self.target, regmod.GROUP).load()
        if callable(self.target) and not isinstance(self.target, type):
            return self.target()
        return self.target


class Double(gx.Gate):
    """y = 2x."""

    name, version = "double", 2

    def forward(self, ctx, x):
        return 2 * x

    def backward(self, ctx, dy):
        return (2 * dy,)


def test_broken_plugins_are_reported_and_the_rest_load():
    eps = [
        FakeEP("add", Add, FakeDist("graphexec")),
        FakeEP("double", Double, FakeDist("good-gates")),
        FakeEP("oops", ImportError("No module named 'numpyy'"), FakeDist("broken-gates")),
        FakeEP("notagate", object, FakeDist("broken-gates")),
        FakeEP("mismatch", Double, FakeDist("broken-gates")),
    ]
    reg = regmod.build_registry(eps)
    assert sorted(reg.gates) == ["add", "double"]
    assert reg.gates["double"].dist == "good-gates" and reg.gates["double"].version == 2
    errors = {b.entry: b.error for b in reg.broken}
    assert "cannot import gate 'oops'" in errors["oops"] and "numpyy" in errors["oops"]
    assert "not a graphexec.Gate subclass" in errors["notagate"]
    assert "points at gate 'double'; the names must match" in errors["mismatch"]


def test_conflict_policy_own_gates_win_then_alphabetical():
    class FakeAdd(Add):
        pass

    eps = [FakeEP("add", FakeAdd, FakeDist("zz-gates")), FakeEP("add", Add, FakeDist("graphexec")),
           FakeEP("double", Double, FakeDist("b-gates")), FakeEP("double", Double, FakeDist("a-gates"))]
    reg = regmod.build_registry(eps)
    assert reg.gates["add"].cls is Add and reg.gates["add"].dist == "graphexec"
    assert reg.gates["double"].dist == "a-gates"
    assert len(reg.conflicts) == 2 and "using 'a-gates'" in " ".join(reg.conflicts)


@pytest.mark.parametrize("cls, message", [
    (type("NoName", (gx.Gate,), {"forward": Add.forward, "backward": Add.backward}), "has no op name"),
    (type("BadVersion", (Add,), {"version": "1"}), "version must be an int"),
    (type("NoBackward", (gx.Gate,), {"name": "nb", "forward": Add.forward}), "does not define backward"),
])
def test_gate_class_validation(cls, message):
    with pytest.raises(gx.PluginError, match=message):
        regmod.validate_gate_class(cls, "test:entry")


def test_register_gate_in_process_and_refuse_silent_override():
    gx.register_gate(Double, replace=True)
    assert regmod.registry().gates["double"].dist == "<in-process>"
    with pytest.raises(gx.PluginError, match="already provided by 'graphexec'"):
        gx.register_gate(type("MyAdd", (Add,), {}))


def test_resolve_messages():
    reg = regmod.build_registry([FakeEP("mul", Mul, FakeDist("graphexec", "0.1.0"))])
    with pytest.raises(gx.UnknownOpError, match=r"op 'softplus' version 1 \(the file says it comes "
                       r"from 'gx-extra' 0.3\) .*pip install gx-extra; installed gates: mul"):
        reg.resolve("softplus", 1, "gx-extra", "0.3")
    with pytest.raises(gx.UnknownOpError, match=r"needs version 2.*installed gate is version 1"):
        reg.resolve("mul", 2)


def test_disable_env_keeps_only_own_gates(monkeypatch):
    monkeypatch.setenv(regmod.DISABLE_ENV, "1")
    reg = regmod.build_registry()
    assert {i.dist for i in reg.gates.values()} == {"graphexec"}


def test_every_builtin_gate_is_an_entry_point_in_pyproject():
    """One door: pyproject lists every Gate subclass of graphexec.gates, and nothing else."""
    import importlib
    import pkgutil

    import graphexec.gates

    declared = {ep.name: ep.value for ep in importlib.metadata.distribution("graphexec").entry_points
                if ep.group == "graphexec.gates"}  # as installed from pyproject.toml (no tomllib: 3.10)
    found = {}
    for mod in pkgutil.iter_modules(graphexec.gates.__path__):
        m = importlib.import_module(f"graphexec.gates.{mod.name}")
        for obj in vars(m).values():
            if isinstance(obj, type) and issubclass(obj, gx.Gate) and obj.__module__ == m.__name__:
                found[obj.name] = f"{m.__name__}:{obj.__name__}"
    assert declared == found  # each entry point name is its gate's name, and every gate has one
    # the ops CONTRACT.md promises are all there; a new built-in gate only adds to them
    contract = ["add", "sub", "mul", "div", "neg", "exp", "log", "square", "sum", "mean", "max",
                "matmul", "affine", "reshape", "sigmoid", "tanh", "relu", "leaky_relu", "prelu",
                "elu", "maxout", "softmax_cross_entropy", "svm_loss", "l2"]
    assert set(contract) <= set(found), sorted(set(contract) - set(found))
    assert all(re.fullmatch(r"[a-z_0-9]+", k) for k in declared)


# ---------------------------------------------------------------------------- helpers
BROKEN = FakeDist("graphexec-broken-gates", "0.0.1")


def installed(monkeypatch, *fakes):
    """Make discovery see ``fakes`` beside the real entry points; the next use of the process
    registry discovers again (conftest's fixture puts the old registry back afterwards)."""
    real = list(importlib.metadata.entry_points(group=regmod.GROUP))
    monkeypatch.setattr(regmod, "entry_points", lambda group: [*real, *fakes])
    regmod.reset_registry()


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """Write a module of a fake plugin on sys.path; ``write(name, source)`` -> its name."""
    written = []

    def write(name, source):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    monkeypatch.syspath_prepend(str(tmp_path))
    yield write
    for name in written:
        sys.modules.pop(name, None)


class Boom(gx.Gate):
    """y = x."""

    name = "boom"

    def forward(self, ctx, x):
        return x

    def backward(self, ctx, dy):
        return (dy,)


def builtin_graph():
    return gx.load(MODELS / "add_mul.gx")


# ---------------------------------------------------------------------------- gx.Attrs
def test_attrs_base_forbids_extra_keys_and_is_frozen():
    class A(gx.Attrs):
        k: float = 1.0

    with pytest.raises(Exception, match="Extra inputs are not permitted"):
        A(kk=3.0)
    with pytest.raises(Exception, match="frozen"):
        A().k = 2.0  # type: ignore[misc]


def test_a_plain_basemodel_attrs_is_refused_with_the_fix():
    from pydantic import BaseModel

    class Scale(gx.Gate):
        name = "scale"

        class Attrs(BaseModel):  # drops unknown keys: kk=3.0 would run with the default k
            k: float = 1.0

        def forward(self, ctx, x):
            return self.attrs.k * x

        def backward(self, ctx, dy):
            return (self.attrs.k * dy,)

    with pytest.raises(gx.PluginError, match=r"gate 'scale': its Attrs allows extra keys "
                       r"\(extra=None\).*inherit graphexec.Attrs"):
        regmod.validate_gate_class(Scale, "test:scale")

    class Fixed(Scale):
        class Attrs(gx.Attrs):
            k: float = 1.0

    gx.register_gate(Fixed)
    b = gx.GraphBuilder()
    with pytest.raises(gx.GraphError, match=r"bad attribute 'kk'.*; scale takes k: float = 1.0$"):
        b.op("scale", b.input("x"), kk=3.0)


def test_every_builtin_attrs_inherits_gx_attrs():
    for info in regmod.registry().gates.values():
        if info.dist == "graphexec":
            assert issubclass(info.cls.Attrs, gx.Attrs), info.name


def test_a_bad_attribute_lists_the_valid_ones():
    b = gx.GraphBuilder()
    x = b.input("x")
    with pytest.raises(gx.GraphError, match=r"bad attribute 'alhpa'.*leaky_relu takes alpha: "
                       r"float = 0.01$"):
        b.op("leaky_relu", x, alhpa=0.1)
    with pytest.raises(gx.GraphError, match=r"expected float, found bool.*leaky_relu takes alpha"):
        b.op("leaky_relu", x, alpha=True)
    with pytest.raises(gx.GraphError, match=r"relu takes no attributes$"):
        b.op("relu", x, alpha=0.1)


# ---------------------------------------------------------------------------- read-only table
def test_the_discovered_table_is_read_only_and_register_gate_is_an_overlay():
    reg = regmod.registry()
    assert isinstance(reg.gates, types.MappingProxyType)
    with pytest.raises(TypeError):
        reg.gates["double"] = reg.gates["add"]  # type: ignore[index]
    gx.register_gate(Double)
    assert reg.overlay["double"].dist == regmod.IN_PROCESS and reg.gates["double"].cls is Double
    assert reg.resolve("double", 2).cls is Double


def test_snapshot_and_restore_undo_registrations_and_reset_registry():
    before = regmod.registry()
    saved = regmod.snapshot()
    gx.register_gate(Double)
    regmod.reset_registry(regmod.build_registry([FakeEP("mul", Mul, FakeDist("graphexec"))]))
    regmod.restore(saved)
    assert regmod.registry() is before and "double" not in before.gates


def test_with_gates_leaves_the_registry_alone():
    reg = regmod.registry()
    private = reg.with_gates(Double)
    assert private.resolve("double", 1).cls is Double and reg.find("double") is None


# ---------------------------------------------------------------------------- lazy loading
def test_discovery_imports_nothing_and_a_graph_imports_only_what_it_uses(monkeypatch):
    calls = []

    def hang():  # stands for an import that never returns: it must not even be started
        calls.append("hang")
        raise AssertionError("imported a plugin the graph does not use")

    installed(monkeypatch, FakeEP("slow", hang, FakeDist("slow-gates")))
    g = builtin_graph()
    reg = regmod.registry()
    assert calls == [] and {n.op for n in g.nodes} == {"add", "mul"}
    assert "slow" in reg.names() and calls == []
    assert "slow" in {b.entry for b in reg.broken} and calls == ["hang"]  # listing imports all


def test_a_hanging_plugin_blocks_only_the_graphs_that_use_it(monkeypatch):
    entered, release = threading.Event(), threading.Event()

    def hang():
        entered.set()
        release.wait()
        return Boom

    installed(monkeypatch, FakeEP("boom", hang, BROKEN))
    waiter = threading.Thread(target=lambda: regmod.registry().resolve("boom", 1), daemon=True)
    waiter.start()  # the first to use the registry: its import of the plugin gets stuck
    try:
        assert entered.wait(60)
        loader = threading.Thread(target=builtin_graph, daemon=True)
        loader.start()
        loader.join(60)  # a deadlock guard, not a speed limit: loading takes milliseconds
        assert not loader.is_alive(), "a graph of built-in gates waited for a plugin's import"
    finally:
        release.set()
        waiter.join(60)
    assert regmod.registry().resolve("boom", 1).cls is Boom


@pytest.mark.parametrize("source, reason", [
    ("import sys\nsys.exit(3)\n", "it failed to import: SystemExit(3)"),
    ("raise RuntimeError('no GPU')\n", "it failed to import: RuntimeError('no GPU')"),
    ("""
     class Evil(Exception):
         def __repr__(self):
             raise ValueError("repr is broken too")
     raise Evil()
     """, "it failed to import: Evil(<repr() raised>)"),
    ("""
     import graphexec as gx
     class Gate(gx.Gate):
         name = "boom"
         forward = max  # a builtin: inspect.signature raises ValueError
         def backward(self, ctx, dy):
             return (dy,)
     """, "its gate class is invalid: gate 'boom': forward has no inspectable signature"),
])
def test_a_broken_plugin_is_contained_and_named(monkeypatch, plugin_module, source, reason):
    mod = plugin_module(f"gx_broken_{abs(hash(reason)) % 10**8}", source)
    installed(monkeypatch, FakeEP("boom", f"{mod}:Gate", BROKEN))
    reg = regmod.registry()
    assert builtin_graph().nodes  # graphs of other gates load; nothing escapes
    b = gx.GraphBuilder()
    with pytest.raises(gx.UnknownOpError) as e:
        b.op("boom", b.input("x"))
    assert str(e.value).startswith(
        f"op 'boom' is provided by graphexec-broken-gates 0.0.1, but {reason}")
    assert "pip install" not in str(e.value) and "not provided" not in str(e.value)
    assert [b.entry for b in reg.broken] == ["boom"]


def test_keyboard_interrupt_is_not_contained():
    with pytest.raises(KeyboardInterrupt):
        regmod.build_registry([FakeEP("boom", KeyboardInterrupt(), BROKEN)]).find("boom")


def test_a_gate_whose_name_cannot_be_compared_is_contained():
    class Weird(str):
        def __ne__(self, other):
            raise RuntimeError("no comparing")

    cls = type("W", (Boom,), {"name": Weird("boom")})
    reg = regmod.build_registry([FakeEP("boom", cls, BROKEN)])
    assert reg.find("boom") is None
    assert "cannot be checked: RuntimeError('no comparing')" in reg.broken[0].reason


# ---------------------------------------------------------------------------- messages
def test_disabled_plugins_say_so_instead_of_pip_install(monkeypatch):
    monkeypatch.setenv(regmod.DISABLE_ENV, "1")
    installed(monkeypatch, FakeEP("boom", Boom, BROKEN))
    b = gx.GraphBuilder()
    x = b.input("x")
    with pytest.raises(gx.UnknownOpError, match=r"^op 'boom' version 1 is provided by "
                       r"graphexec-broken-gates 0.0.1, but third-party plugins are disabled "
                       r"\(GRAPHEXEC_DISABLE_PLUGINS=1\); unset GRAPHEXEC_DISABLE_PLUGINS"):
        b.op("boom", x)
    reg = regmod.registry()
    with pytest.raises(gx.UnknownOpError) as e:
        reg.resolve("softplus", 1, "gx-extra", "0.3")
    assert "third-party plugins are disabled" in str(e.value) and "pip install" not in str(e.value)


def test_unknown_op_error_lists_every_missing_op_and_distribution():
    reg = regmod.registry().with_gates()
    reg.add(regmod.GateInfo("boom", 1, Boom, 1, "boom-gates", "1.0", __name__))
    reg.add(regmod.GateInfo("double", 2, Double, 1, "double-gates", "2.0", __name__))
    b_nodes = [gx.graph.NodeDef("a", "boom", ("x",)), gx.graph.NodeDef("b", "double", ("a",)),
               gx.graph.NodeDef("c", "boom", ("b",))]
    g = gx.graph.make_graph("two", [gx.graph.InputDecl("x", np.dtype("float64"), None)], {},
                            b_nodes, {"y": "c"}, reg=reg)
    with pytest.raises(gx.UnknownOpError) as e:
        gx.loads(gx.dumps(g))
    msg = str(e.value)
    assert msg.startswith("2 ops of this graph cannot be served: op 'boom' version 1 (the file "
                          "says it comes from 'boom-gates' 1.0) is not provided by any installed "
                          "plugin; op 'double' version 2 (the file says it comes from "
                          "'double-gates' 2.0) is not provided by any installed plugin; "
                          "install them with: pip install boom-gates double-gates; "
                          "installed gates: abs, add, ")


def test_saving_a_graph_with_an_in_process_gate_warns(tmp_path):
    gx.register_gate(Double)
    b = gx.GraphBuilder("local")
    b.output(b.op("double", b.input("x")), "y")
    g = b.build()
    with pytest.warns(regmod.InProcessGateWarning, match=r"graph 'local' uses ops registered "
                      r"only in this process \(double, .*other processes cannot load"):
        gx.save(g, tmp_path / "local.gx")
    assert issubclass(regmod.InProcessGateWarning, UserWarning)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gx.save(builtin_graph(), tmp_path / "builtin.gx")  # no warning for installed gates
