"""`graphexec train` and `graphexec evaluate`: in process through main(), and for real."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import MODELS

import graphexec as gx
from graphexec import nn
from graphexec.cli.main import main
from graphexec.data import spiral
from graphexec.train import accuracy

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


# ---------------------------------------------------------------------------- Ctrl-C and resume
def _interrupt_at(monkeypatch, epoch):
    """Make the trainer raise KeyboardInterrupt when it starts epoch ``epoch`` (1-based)."""
    import graphexec.train as train_mod

    real = train_mod._train_epoch

    def step(ex, g, run_, data, state, bar):
        if state.epoch + 1 == epoch:
            raise KeyboardInterrupt
        return real(ex, g, run_, data, state, bar)

    monkeypatch.setattr(train_mod, "_train_epoch", step)


def test_ctrl_c_says_where_it_stopped_and_how_to_resume(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "o.gx")
    _interrupt_at(monkeypatch, 3)
    assert main(["train", SPIRAL, "--data", "spiral", "--epochs", "5", "-o", out,
                 "--no-progress"]) == 130
    stdout, err = capsys.readouterr()
    resume = f"graphexec train {out} --data spiral --resume --epochs 5 -o {out} --no-progress"
    assert stdout == ""
    assert err == f"interrupted during epoch 3 of 5; {out} holds epoch 2; resume with: {resume}\n"
    assert gx.load(out).training.state["epoch"] == 2
    monkeypatch.undo()
    # the printed command finishes the run, bit-identical to an unbroken one
    assert main(resume.split()[1:]) == 0
    assert capsys.readouterr().err.startswith("resuming at epoch 3 of 5\n")
    assert main(["train", SPIRAL, "--data", "spiral", "--epochs", "5", "-o",
                 str(tmp_path / "whole.gx"), "--no-progress"]) == 0
    assert (tmp_path / "whole.gx").read_bytes() == (tmp_path / "o.gx").read_bytes()


def test_ctrl_c_before_the_first_checkpoint(tmp_path, capsys, monkeypatch):
    _interrupt_at(monkeypatch, 1)
    assert main(["train", SPIRAL, "--data", "spiral", "--epochs", "5", "-o",
                 str(tmp_path / "o.gx"), "--json"]) == 130
    res = json.loads(capsys.readouterr().out)
    assert res == {"interrupted": True, "epoch": 1, "epochs": 5, "checkpoint": None,
                   "checkpoint_epoch": None, "resume": None}
    assert not (tmp_path / "o.gx").exists()


def test_ctrl_c_subprocess_no_traceback(tmp_path):
    """For real: a SIGINT-free KeyboardInterrupt raised inside the trainer of a child process."""
    code = ("import sys, graphexec.train as t\n"
            "real = t._train_epoch\n"
            "def step(ex, g, run_, data, state, bar):\n"
            "    if state.epoch == 1: raise KeyboardInterrupt\n"
            "    return real(ex, g, run_, data, state, bar)\n"
            "t._train_epoch = step\n"
            "from graphexec.cli.main import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    r = subprocess.run([sys.executable, "-c", code, "train", SPIRAL, "--data", "spiral",
                        "--epochs", "4", "-o", str(tmp_path / "o.gx")],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 130 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[-1].startswith("interrupted during epoch 2 of 4; ")


def _two_epochs(tmp_path, *flags):
    out = str(tmp_path / "a.gx")
    assert main(["train", SPIRAL, "--data", "spiral", "--epochs", "2", "-o", out,
                 "--no-progress", *flags]) == 0
    return out


def test_resume_past_the_end_says_so(tmp_path, capsys):
    out = _two_epochs(tmp_path)
    capsys.readouterr()
    assert main(["train", out, "--data", "spiral", "--resume", "--epochs", "2"]) == 2
    assert capsys.readouterr().err == (f"error: {out} already holds epoch 2 of 2: nothing to "
                                       "resume; pass --epochs N with N > 2 (the total) to train "
                                       "further\n")


@pytest.mark.parametrize("flag, value, was", [("--val-split", "0.3", "0.2"),
                                              ("--data-seed", "5", "0")])
def test_resume_refuses_other_data_settings(tmp_path, capsys, flag, value, was):
    out = _two_epochs(tmp_path)
    capsys.readouterr()
    assert main(["train", out, "--data", "spiral", "--resume", "--epochs", "4", flag, value]) == 2
    assert capsys.readouterr().err.startswith(
        f"error: cannot resume with {flag} {value}: the checkpoint's run used {flag} {was}, so "
        "it would go on with other data")


def test_resume_warns_when_optimizer_settings_change(tmp_path, capsys):
    out = _two_epochs(tmp_path)
    capsys.readouterr()
    assert main(["train", out, "--data", "spiral", "--resume", "--epochs", "3", "--lr", "0.5",
                 "--no-progress", "-o", str(tmp_path / "b.gx")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("warning: resuming with other settings than the checkpoint's run: lr 0.01 "
                      "-> 0.5; the result will differ from one unbroken run")
    assert err[1] == "resuming at epoch 3 of 3"


def test_train_json_is_one_result_object(tmp_path, capsys):
    out = str(tmp_path / "o.gx")
    assert main(["train", SPIRAL, "--data", "spiral", "--epochs", "3", "-o", out, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    g = gx.load(out)
    assert res["output"] == out and res["epochs"] == 3 and len(res["history"]["loss"]) == 3
    assert res["history"]["loss"] == g.training.state["history.loss"]
    assert res["best_epoch"] == g.training.state["best.epoch"]
    assert main(["train", SPIRAL, "--data", "nope", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"].startswith("unknown dataset 'nope'")
