"""`graphexec train` and `graphexec evaluate`: in process through main(), and for real."""

import json
import subprocess
import sys

import numpy as np
import pytest

import graphexec as gx
from graphexec import nn
from graphexec.cli.main import main
from graphexec.data import spiral
from graphexec.train import accuracy

from conftest import MODELS

SPIRAL = str(MODELS / "spiral_mlp.gx")


def test_train_shipped_spiral_model_with_no_other_flag(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", SPIRAL, "--data", "spiral"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("trained 100 epochs: loss ") and "validation accuracy" in lines[0]
    assert lines[-1] == "saved spiral_mlp_trained.gx"
    # not a terminal: a few progress lines on stderr instead of a bar
    assert err.splitlines()[0].startswith("epoch 1/100: loss ")
    assert err.splitlines()[-1].startswith("epoch 100/100: loss ")
    g = gx.load(tmp_path / "spiral_mlp_trained.gx")
    X, y = spiral(seed=0)
    assert accuracy(g, X, y) >= 0.98
    assert g.training.state["epoch"] == 100 and g.training.spec["val_split"] == 0.2


def test_flags_override_the_spec_and_are_recorded(tmp_path, capsys):
    out = tmp_path / "o.gx"
    assert main(["train", SPIRAL, "--data", "spiral", "-o", str(out), "--epochs", "3",
                 "--batch-size", "50", "--optimizer", "sgd", "--lr", "0.5", "--momentum", "0.9",
                 "--reg", "0.01", "--seed", "4", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    g = gx.load(out)
    spec = g.training.spec
    assert (spec["optimizer"], spec["optimizer.lr"], spec["optimizer.momentum"]) == ("sgd", 0.5, 0.9)
    assert (spec["epochs"], spec["batch_size"], spec["seed"], spec["reg"]) == (3, 50, 4, 0.01)
    assert nn.get_reg(g) == 0.01 and g.training.state["step"] == 3 * 6


def test_resume_on_the_command_line_equals_one_run(tmp_path):
    common = ["--data", "spiral", "--no-progress"]
    assert main(["train", SPIRAL, *common, "--epochs", "6", "-o", str(tmp_path / "whole.gx")]) == 0
    assert main(["train", SPIRAL, *common, "--epochs", "2", "-o", str(tmp_path / "a.gx")]) == 0
    assert main(["train", str(tmp_path / "a.gx"), *common, "--epochs", "6", "--resume",
                 "-o", str(tmp_path / "b.gx")]) == 0
    assert (tmp_path / "whole.gx").read_bytes() == (tmp_path / "b.gx").read_bytes()


def test_train_draws_curves(tmp_path, capsys):
    png = tmp_path / "curves.png"
    assert main(["train", SPIRAL, "--data", "spiral", "--epochs", "5", "-o",
                 str(tmp_path / "o.gx"), "--plot", str(png), "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"saved {png}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_train_on_an_npz_file_with_a_float32_graph(tmp_path):
    X, y = spiral(n_per_class=40, seed=3)
    np.savez(tmp_path / "d.npz", x=X, y=y)
    gx.save(nn.mlp([2, 20, 3], reg=1e-3, dtype="float32"), tmp_path / "net.gx")
    assert main(["train", str(tmp_path / "net.gx"), "--data", str(tmp_path / "d.npz"),
                 "--epochs", "4", "-o", str(tmp_path / "o.gx"), "--no-progress"]) == 0
    g = gx.load(tmp_path / "o.gx")
    assert {p.dtype for p in g.params.values()} == {np.dtype("float32")}
    assert g.training.spec["optimizer"] == "adam" and g.training.spec["batch_size"] == 64


def test_evaluate_prints_accuracy_and_confusion_matrix(capsys):
    model = str(MODELS / "digits_mlp.gx")
    assert main(["evaluate", model, "--data", "digits", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["split"] == "val" and res["examples"] == 359
    cm = np.array(res["confusion"])
    assert cm.shape == (10, 10) and cm.sum() == 359 and np.trace(cm) == res["correct"]
    assert res["accuracy"] == res["correct"] / 359 >= 0.96
    assert main(["evaluate", model, "--data", "digits"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"digits (val, 359 examples): accuracy {res['accuracy']:.2%} " \
                       f"({res['correct']}/359)"
    assert lines[1].startswith("confusion matrix (rows: true class, columns: predicted class)")
    assert lines[2].split() == [str(i) for i in range(10)] and len(lines) == 13


@pytest.mark.parametrize("argv, message", [
    (["train", SPIRAL, "--data", "nope"], "error: unknown dataset 'nope'"),
    (["train", SPIRAL, "--data", "spiral", "--momentum", "0.9"],
     "error: --momentum is a setting of --optimizer sgd, not of 'adam'"),
    (["train", SPIRAL, "--data", "spiral", "--epochs", "0"], "error: epochs must be an integer >= 1"),
    (["train", SPIRAL, "--data", "spiral", "--lr", "-1"], "error: lr=-1.0 is out of range"),
    (["train", str(MODELS / "add_mul.gx"), "--data", "spiral"],
     "error: fit needs a graph with inputs 'x' and 'y' and outputs 'loss' and 'scores'"),
    (["evaluate", str(MODELS / "sigmoid_neuron.gx"), "--data", "spiral"],
     "error: graph 'sigmoid_neuron' has no input 'x'"),
    (["train", str(MODELS / "add_mul.gx"), "--data", "spiral", "--reg", "0.1"],
     "error: graph 'add_mul' has no l2 node"),
    (["train", SPIRAL, "--data", "spiral", "--resume"], "error: resume=True, but graph 'spiral_mlp'"),
    (["train", SPIRAL, "--data", "digits"], ("error: X, y does not fit graph 'spiral_mlp': input 'x' "
                                             "expects shape (None, 2)")),
    (["evaluate", str(MODELS / "digits_mlp.gx"), "--data", "digits", "--val-split", "0"],
     "error: the 'val' split of 'digits' is empty (val split 0.0)"),
    (["train", "missing.gx", "--data", "spiral"], "error: missing.gx: cannot open"),
])
def test_user_mistakes_print_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_train_then_run_for_real(tmp_path):
    """The README's main job, as a user types it (fewer epochs)."""
    out = tmp_path / "trained.gx"
    cmd = [sys.executable, "-m", "graphexec", "train", SPIRAL, "--data", "spiral", "--epochs", "20",
           "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "epoch 20/20" in res.stderr and f"saved {out}" in res.stdout
    run = subprocess.run([sys.executable, "-m", "graphexec", "run", str(out), "-i",
                          "x=[[0.5, 0.5], [-0.5, 0.1]]", "-o", "scores", "--json"],
                         capture_output=True, text=True, check=True)
    scores = np.array(json.loads(run.stdout)["outputs"]["scores"])
    np.testing.assert_allclose(scores, gx.predict(gx.load(out), np.array([[0.5, 0.5], [-0.5, 0.1]])),
                               rtol=1e-12)
