"""``graphexec gates [NAME] [--strict] [--json]``: listing, one gate in detail, CI mode, pipes."""

import importlib.metadata
import json
import os
import subprocess
import sys

import pytest

import graphexec as gx
from graphexec import registry as regmod
from graphexec.cli.main import main
from graphexec.gates.arith import Add


class _Dist:
    def __init__(self, name, version="1.0"):
        self.metadata, self.version = {"Name": name}, version


class _EP:
    def __init__(self, name, target, dist):
        self.name, self.value, self.dist, self._target = name, f"fake:{name}", _Dist(dist), target

    def load(self):
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


def installed(monkeypatch, *fakes):
    real = list(importlib.metadata.entry_points(group=regmod.GROUP))
    monkeypatch.setattr(regmod, "entry_points", lambda group: [*real, *fakes])
    regmod.reset_registry()  # conftest's fixture puts the old registry back


def test_listing_text_and_json(capsys):
    declared = sorted(ep.name for ep in importlib.metadata.distribution("graphexec").entry_points
                      if ep.group == "graphexec.gates")  # one line per built-in gate, no more
    assert len(declared) >= 24
    assert main(["gates"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == declared
    assert out[0].split()[:3] == [declared[0], "v1", "graphexec"]
    assert main(["gates", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"gates", "broken", "conflicts"}
    assert [g["op"] for g in data["gates"]] == declared
    assert main(["gates", "--strict"]) == 0


def test_strict_fails_on_broken_and_on_conflict(monkeypatch, capsys):
    class OtherAdd(Add):
        pass

    installed(monkeypatch, _EP("boom", RuntimeError("no GPU"), "broken-gates"))
    assert main(["gates"]) == 0
    assert main(["gates", "--strict"]) == 1
    out = capsys.readouterr().out
    assert ("BROKEN broken-gates:boom: broken-gates: cannot import gate 'boom' (fake:boom): "
            "RuntimeError('no GPU')\n") in out
    installed(monkeypatch, _EP("add", OtherAdd, "other-gates"))
    assert main(["gates", "--strict", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["conflicts"] == [("op 'add' is offered by 'graphexec' and 'other-gates'; "
                                  "using 'graphexec'")]


def test_one_gate_in_detail(capsys):
    assert main(["gates", "leaky_relu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("leaky_relu v1 from graphexec ")
    assert "Local gradient" in out and "\ninputs: x\n" in out
    assert out.endswith("attributes:\n  alpha: float = 0.01\n")
    assert main(["gates", "softmax_cross_entropy", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["inputs"] == ["scores", "labels"] and d["attrs"] == [] and "softmax" in d["doc"]
    assert main(["gates", "reshape", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["attrs"][0]["name"] == "shape"


def test_an_in_process_gate_in_detail(capsys):
    class Scale(gx.Gate):
        """y = k·x.  Local gradient dy/dx = k."""

        name = "scale"

        class Attrs(gx.Attrs):
            k: float = 2.0
            tag: str = "s"

        def forward(self, ctx, x):
            return self.attrs.k * x

        def backward(self, ctx, dy):
            return (self.attrs.k * dy,)

    gx.register_gate(Scale)
    assert main(["gates", "scale"]) == 0
    out = capsys.readouterr().out
    assert "  y = k·x.  Local gradient dy/dx = k.\n" in out
    assert out.endswith("attributes:\n  k: float = 2.0\n  tag: str = 's'\n")


def test_an_unknown_name_is_one_error_line(capsys):
    assert main(["gates", "sofplus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: op 'sofplus' is not provided by any installed plugin; "
                          "installed gates: abs, add, ") and err.count("\n") == 1


@pytest.mark.parametrize("args", [["gates"], ["gates", "--json"], ["gates", "relu"]])
def test_a_closed_pipe_ends_quietly(args):
    """``graphexec gates | head -1``: the reader is gone before anything is written."""
    read, write = os.pipe()
    os.close(read)  # every write now fails with EPIPE
    try:
        r = subprocess.run([sys.executable, "-m", "graphexec", *args], stdout=write,
                           stderr=subprocess.PIPE, text=True, timeout=300, check=False)
    finally:
        os.close(write)
    assert (r.returncode, r.stderr) == (0, "")
