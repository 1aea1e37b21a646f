"""The command line: exit codes 0/1/2, one error line, no tracebacks, --json everywhere."""

import json
import subprocess
import sys

import numpy as np
import pytest

from graphexec.cli.main import main

from conftest import MODELS


def test_info_json(capsys):
    assert main(["info", str(MODELS / "wx_norm.gx"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] == 4 and info["nodes_by_op"] == {"matmul": 1, "square": 1, "sum": 1}
    assert info["inputs"] == [{"name": "x", "dtype": "float64", "shape": [2]}]
    assert [o["status"] for o in info["ops"]] == ["ok"] * 3


def test_info_text(capsys):
    assert main(["info", str(MODELS / "add_mul.gx")]) == 0
    out = capsys.readouterr().out
    assert "graph 'add_mul'" in out and "op mul v1 from graphexec" in out


def test_gates_lists_builtins(capsys):
    assert main(["gates", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    ops = {g["op"]: g for g in res["gates"]}
    assert ops["mul"]["dist"] == "graphexec" and ops["mul"]["module"] == "graphexec.gates.arith"


def test_check_valid(capsys):
    assert main(["check", str(MODELS / "add_mul.gx"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True


def test_run_with_npy_input(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.array([0.2, 0.4]))
    assert main(["run", str(MODELS / "wx_norm.gx"), "-i", f"x=@{tmp_path / 'x.npy'}"]) == 0
    assert "f = 0.116" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["run", "nope.gx"], "error: nope.gx: cannot open"),
    (["run", str(MODELS / "add_mul.gx"), "-i", "x"], "error: -i expects NAME=VALUE, got 'x'"),
    (["run", str(MODELS / "add_mul.gx"), "-i", "x=abc"], "error: -i x: 'abc' is not a JSON number"),
    (["run", str(MODELS / "add_mul.gx"), "-i", "x=1"], "error: missing input 'y'"),
    (["run", str(MODELS / "add_mul.gx"), "-i", "x=1", "-i", "y=1", "-i", "z=[1,2]"],
     "error: input 'z' expects shape ()"),
])
def test_user_mistakes_print_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_bad_file_subprocess_no_traceback(tmp_path):
    bad = tmp_path / "bad.gx"
    bad.write_bytes(b"\x89GXF\r\n\x1a\n" + b"\x09\x00\x00\x00" + bytes(12))
    r = subprocess.run([sys.executable, "-m", "graphexec", "info", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (f"error: {bad}: file format version 9 is newer than this graphexec "
                                "supports (version 1); upgrade graphexec to read it")
