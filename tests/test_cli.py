"""The command line: exit codes 0/1/2, one error line, no tracebacks, --json everywhere."""

import argparse
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import graphexec as gx
from graphexec.cli.main import build_parser, main

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
                       capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (f"error: {bad}: file format version 9 is newer than this graphexec "
                                "supports (version 2); upgrade graphexec to read it")


# ---------------------------------------------------------------------------- 0.2: the terminal


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"graphexec {gx.__version__}"


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_option_has_a_help_line_with_its_default():
    top = build_parser()
    missing = []
    for verb, p in [("graphexec", top), *_subparsers(top)]:
        if verb in ("gates", "export", "import"):  # cli/gates.py, cli/onnx.py: other owners
            continue
        formatter = p._get_formatter()
        for a in p._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            text = formatter._get_help_string(a) or ""
            if not text:
                missing.append(f"{verb} {a.dest}: no help")
            elif (a.option_strings and a.default is not None and a.default is not False
                  and a.default != argparse.SUPPRESS and "default" not in text):
                missing.append(f"{verb} {a.dest}: default {a.default!r} not stated")
    assert missing == []


def test_check_help_shows_the_seed_default(capsys):
    assert main(["check", "--help"]) == 0
    assert "seed of the random inputs (default: 0)" in " ".join(capsys.readouterr().out.split())


def test_json_errors_are_json_objects(capsys):
    assert main(["run", "nope.gx", "--json"]) == 2
    out, err = capsys.readouterr()
    res = json.loads(out)
    assert res["exit_code"] == 2 and res["error"].startswith("nope.gx: cannot open") and err == ""
    assert main(["info", "--json"]) == 2  # a usage mistake found by argparse
    assert json.loads(capsys.readouterr().out)["error"] == "the following arguments are required: file"


def test_info_on_an_empty_file_says_it_is_empty(tmp_path, capsys):
    (tmp_path / "e.gx").write_bytes(b"")
    assert main(["info", str(tmp_path / "e.gx")]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'e.gx'}: the file is empty (0 bytes); "
                                       "expected a .gx graph file (was it written completely?)\n")


def _write_unchecked(g, path):
    path.write_bytes(gx.dumps(g))
    return str(path)


def test_info_checks_the_nodes_ops_not_the_header_list(tmp_path, capsys):
    g = gx.load(MODELS / "add_mul.gx")
    g.nodes[0] = dataclasses.replace(g.nodes[0], op="no_such_op_xyz")
    path = _write_unchecked(g, tmp_path / "bad_op.gx")
    assert main(["info", path, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["missing_ops"] == ["no_such_op_xyz v1"]
    row = next(r for r in info["ops"] if r["op"] == "no_such_op_xyz")
    assert row["status"].startswith("unresolved: op 'no_such_op_xyz' version 1")
    assert main(["info", path]) == 0
    assert "missing ops: no_such_op_xyz v1: this file cannot be loaded here" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["-i", "x=true", "-i", "y=1", "-i", "z=1"],
     "error: -i x: expected numbers, found a JSON boolean in 'true'; write 1 or 0"),
    (["-i", "x=[1, false]", "-i", "y=1", "-i", "z=1"], "error: -i x: expected numbers, found a JSON"),
    (["-i", "x=1", "-i", "x=2", "-i", "y=1", "-i", "z=1"],
     "error: -i x is given twice; expected each input once, drop one"),
])
def test_run_refuses_booleans_and_repeated_inputs(args, message, capsys):
    assert main(["run", str(MODELS / "add_mul.gx"), *args]) == 2
    assert capsys.readouterr().err.startswith(message)


def test_run_refuses_a_boolean_npy_for_a_float_input(tmp_path, capsys):
    np.save(tmp_path / "b.npy", np.array([True, False]))
    assert main(["run", str(MODELS / "wx_norm.gx"), "-i", f"x=@{tmp_path / 'b.npy'}"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: -i x: input 'x' expects float64 numbers, found a boolean array")


@pytest.mark.parametrize("content", [b"a\n", b"", b"PK\x03\x04 an npz is a zip"])
def test_at_file_that_is_not_npy_says_so_without_pickle_advice(tmp_path, capsys, content):
    (tmp_path / "x.txt").write_bytes(content)
    assert main(["run", str(MODELS / "wx_norm.gx"), "-i", f"x=@{tmp_path / 'x.txt'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: -i x=@{tmp_path / 'x.txt'}: expected a .npy file (written by "
                          "numpy.save), found ")
    assert "pickle" not in err and err.count("\n") == 1


def test_run_grad_of_seeds_only_that_output(capsys):
    # a classifier: --grad seeds loss and every score; --grad-of loss is the gradient of the loss
    g = gx.load(MODELS / "spiral_mlp.gx")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((4, 2)), np.array([0, 1, 2, 1])
    ex = gx.Executor(g)
    ex.forward(x=X, y=y)
    want = ex.backward({"loss": 1.0})
    argv = ["run", str(MODELS / "spiral_mlp.gx"), "-i", f"x={json.dumps(X.tolist())}",
            "-i", f"y={json.dumps(y.tolist())}", "--json"]
    assert main([*argv, "--grad-of", "loss"]) == 0
    grads = json.loads(capsys.readouterr().out)["grads"]
    np.testing.assert_allclose(grads["W1"], want["W1"], rtol=1e-12)
    assert main([*argv, "--grad"]) == 0  # --grad keeps its documented meaning: all outputs
    all_grads = json.loads(capsys.readouterr().out)["grads"]
    assert not np.allclose(all_grads["W1"], want["W1"])
    assert main([*argv, "--grad-of", "nope"]) == 2
    assert json.loads(capsys.readouterr().out)["error"].startswith("--grad-of 'nope': expected one")


def test_run_save_writes_outputs_and_grads(tmp_path, capsys):
    out = tmp_path / "r.npz"
    assert main(["run", str(MODELS / "add_mul.gx"), "-i", "x=-2", "-i", "y=5", "-i", "z=-4",
                 "--grad", "--save", str(out)]) == 0
    assert capsys.readouterr().out == f"saved 1 outputs and 3 gradients to {out}\n"
    with np.load(out, allow_pickle=False) as z:
        assert dict(z) == {"f": -12.0, "grad/x": -4.0, "grad/y": -4.0, "grad/z": 3.0}
    assert main(["run", str(MODELS / "add_mul.gx"), "-i", "x=1", "-i", "y=1", "-i", "z=1",
                 "--save", str(tmp_path / "nope" / "r.npz")]) == 2
    assert "the folder" in capsys.readouterr().err


def _absurd_input(tmp_path):
    b = gx.GraphBuilder("huge_in")
    b.output(b.op("sum", b.op("square", b.input("x", shape=(2,)))), "f")
    g = b.build()
    g.input_decls[0] = dataclasses.replace(g.input_decls[0], shape=(2**62,))
    return _write_unchecked(g, tmp_path / "huge_in.gx")


def _absurd_param(tmp_path):
    b = gx.GraphBuilder("empty_param")
    W = b.param("W", np.zeros((0, 2), dtype=np.float32))
    b.output(b.op("add", b.op("sum", W), b.op("sum", b.input("x", shape=(2,)))), "f")
    g = b.build()
    g.params["W"] = np.zeros((0, 2**60), dtype=np.float32)
    return _write_unchecked(g, tmp_path / "empty_param.gx")


@pytest.mark.parametrize("make", [_absurd_input, _absurd_param])
def test_check_grad_on_absurd_sizes_is_exit_2_not_1(make, tmp_path):
    path = make(tmp_path)
    assert os.path.getsize(path) < 1024
    r = subprocess.run([sys.executable, "-m", "graphexec", "check", "--grad", path],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1


def test_closed_pipe_exits_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before graphexec writes (as with `| head -1`, later)
    try:
        r = subprocess.run([sys.executable, "-m", "graphexec", "info", "--json",
                            str(MODELS / "digits_mlp.gx")], stdout=write_end,
                           stderr=subprocess.PIPE, text=True, check=False)
    finally:
        os.close(write_end)
    assert (r.returncode, r.stderr) == (0, "")


def test_ctrl_c_on_any_verb_is_one_line_exit_130(monkeypatch, capsys):
    def interrupted(path):
        raise KeyboardInterrupt

    # cmd_info imports read_header when it runs (start-up time), so it is replaced at its source
    monkeypatch.setattr("graphexec.fileformat.read_header", interrupted)
    assert main(["info", str(MODELS / "add_mul.gx")]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def _bytes_read() -> int:
    with open("/proc/self/io") as f:  # rchar: bytes this process got from read() calls
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/self/io")
def test_info_reads_only_the_header(tmp_path, capsys):
    """``info`` on a 32 MB file reads a few kilobytes: its header, never the tensor bytes. (Before,
    this was only claimed: a header read that loaded every byte passed the old test.)"""
    b = gx.GraphBuilder("big")
    x = b.input("x", shape=(None, 1000))
    b.output(b.op("matmul", x, b.param("W", np.zeros((4000, 1000)).T.copy())), "y")
    path = tmp_path / "big.gx"
    gx.save(b.build(), path)
    size = path.stat().st_size
    assert size > 32_000_000
    assert main(["info", str(path), "--json"]) == 0  # once first: imports read files too
    capsys.readouterr()
    before = _bytes_read()
    assert main(["info", str(path), "--json"]) == 0
    read = _bytes_read() - before
    assert json.loads(capsys.readouterr().out)["parameters"] == 4_000_000
    assert read < size // 100, f"info read {read} of {size} bytes"
    assert main(["run", str(path), "-i", "x=[[0.0]]", "--json"]) == 2  # the loader does read
    assert _bytes_read() - before > size  # (so the counter sees a full read)
