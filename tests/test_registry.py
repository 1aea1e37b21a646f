"""Plugin discovery with fake entry points: isolation of broken plugins, conflicts, validation."""

import re
import tomllib
from dataclasses import dataclass
from typing import Any

import pytest

import graphexec as gx
from graphexec import registry as regmod
from graphexec.gates.arith import Add, Mul

from conftest import ROOT


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
        if isinstance(self.target, Exception):
            raise self.target
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

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][
        "graphexec.gates"]
    found = {}
    for mod in pkgutil.iter_modules(graphexec.gates.__path__):
        m = importlib.import_module(f"graphexec.gates.{mod.name}")
        for obj in vars(m).values():
            if isinstance(obj, type) and issubclass(obj, gx.Gate) and obj.__module__ == m.__name__:
                found[obj.name] = f"{m.__name__}:{obj.__name__}"
    assert declared == found
    contract = ("add sub mul div neg exp log square sum mean max matmul affine reshape sigmoid tanh relu "
                "leaky_relu prelu elu maxout softmax_cross_entropy svm_loss l2 "
                # 0.2 (issue 13)
                "conv2d max_pool2d avg_pool2d global_avg_pool batchnorm layernorm dropout flatten "
                "transpose concat pad softmax log_softmax clip").split()
    assert sorted(contract) == sorted(found)
    assert all(re.fullmatch(r"[a-z_0-9]+", k) for k in declared)
