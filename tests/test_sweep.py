"""`graphexec sweep` and graphexec.plots: the lecture's grid of decision boundaries, curves."""

import json
import sys

import numpy as np
import pytest
from conftest import MODELS

import graphexec as gx
from graphexec.checkpoint import History
from graphexec.cli.main import main
from graphexec.data import spiral
from graphexec.plots import Panel, PlotError, decision_boundaries, training_curves

PNG = b"\x89PNG\r\n\x1a\n"


def _png_size(path):
    """(width, height) from the PNG header."""
    data = path.read_bytes()
    assert data[:8] == PNG
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_sweep_trains_each_combination_and_draws_the_grid(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["sweep", "--data", "spiral", "--hidden", "3,20", "--reg", "0.001,0.1",
                 "--epochs", "40", "-o", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    runs = {(r["hidden"], r["reg"]): r["train_acc"] for r in res["runs"]}
    assert list(runs) == [(3, 0.001), (3, 0.1), (20, 0.001), (20, 0.1)]
    # the lecture's two points: more neurons, more capacity; more L2, smoother (and weaker) fit
    assert runs[(20, 0.001)] > runs[(3, 0.001)] and runs[(20, 0.001)] > runs[(20, 0.1)]
    assert runs[(20, 0.001)] >= 0.9
    assert _png_size(out) == (640, 680)  # 2 x 2 panels of 3.2 in at 100 dpi, plus the title


def test_sweep_text_output(tmp_path, capsys):
    out = tmp_path / "g.svg"
    assert main(["sweep", "--data", "spiral", "--hidden", "6", "--reg", "0.01", "--epochs", "5",
                 "-o", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("hidden    6, reg 0.01    : train ") and "validation" in lines[0]
    assert lines[-1] == f"saved {out}" and out.read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize("argv, message", [
    (["--data", "digits"], "error: sweep draws decision boundaries in the plane: it needs 2-D data"),
    (["--data", "spiral", "--hidden", "3,x"], ("error: --hidden expects comma-separated positive "
                                               "numbers such as 3,6,20, got '3,x'")),
    (["--data", "spiral", "--reg", "-1"], "error: --reg expects comma-separated positive numbers"),
])
def test_sweep_mistakes(argv, message, tmp_path, capsys):
    assert main(["sweep", *argv, "-o", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_missing_matplotlib_names_the_extra(tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(PlotError, match=r"needs matplotlib: pip install graphexec\[plot\]"):
        training_curves(History(loss=[1.0], train_acc=[0.5]), tmp_path / "c.png")
    assert main(["sweep", "--data", "spiral", "--hidden", "3", "--reg", "0.1", "--epochs", "1",
                 "-o", str(tmp_path / "g.png")]) == 2
    assert capsys.readouterr().err == (f"error: cannot draw {str(tmp_path / 'g.png')!r}: drawing "
                                       "figures needs matplotlib: pip install graphexec[plot]\n")


def _no_training(monkeypatch):
    import graphexec.cli.train as cli_train

    def fit(*args, **kwargs):
        raise AssertionError("the figure must be checked before training")

    monkeypatch.setattr(cli_train, "fit", fit)


@pytest.mark.parametrize("verb", ["sweep", "train"])
def test_figure_folder_and_matplotlib_are_checked_before_training(verb, tmp_path, capsys,
                                                                  monkeypatch):
    _no_training(monkeypatch)
    fig = tmp_path / "no" / "g.png"
    argv = (["sweep", "--data", "spiral", "-o", str(fig)] if verb == "sweep" else
            ["train", str(MODELS / "spiral_mlp.gx"), "--data", "spiral", "-o",
             str(tmp_path / "o.gx"), "--plot", str(fig)])
    assert main(argv) == 2
    assert capsys.readouterr().err == (f"error: cannot draw {str(fig)!r}: the folder "
                                       f"{str(fig.parent)!r} does not exist; create it first\n")
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    argv[argv.index(str(fig))] = str(tmp_path / "g.png")
    assert main(argv) == 2
    assert "needs matplotlib: pip install graphexec[plot]" in capsys.readouterr().err
    assert not (tmp_path / "o.gx").exists()


def test_an_unknown_figure_format_is_refused_before_training(tmp_path, capsys, monkeypatch):
    _no_training(monkeypatch)
    assert main(["sweep", "--data", "spiral", "-o", str(tmp_path / "g.docx")]) == 2
    assert "expected a figure file ending in one of " in capsys.readouterr().err


def test_training_curves_and_decision_boundaries_draw_files(tmp_path):
    h = History(loss=[1.0, 0.6, 0.5], train_acc=[0.5, 0.8, 0.9], val_acc=[0.4, 0.7, 0.65],
                lr=[0.1] * 3, best_epoch=2, best_val_acc=0.7)
    training_curves(h, tmp_path / "c.png", title="t")
    assert _png_size(tmp_path / "c.png") == (1000, 400)
    X, y = spiral(n_per_class=20, seed=0)
    g = gx.nn.mlp([2, 5, 3], dtype="float32")
    decision_boundaries([Panel(g, "a"), Panel(g, "b"), Panel(g, "c")], X, y, tmp_path / "d.png",
                        ncols=2)
    assert _png_size(tmp_path / "d.png") == (640, 640)


def test_plot_errors(tmp_path):
    with pytest.raises(PlotError, match="the history has no epochs to draw"):
        training_curves(History(), tmp_path / "c.png")
    with pytest.raises(PlotError, match=r"need data of shape \(N, 2\), got \(4, 3\)"):
        decision_boundaries([Panel(gx.nn.mlp([3, 2]), "x")], np.zeros((4, 3)), np.zeros(4, int),
                            tmp_path / "d.png", ncols=1)
    with pytest.raises(PlotError, match="cannot write the figure to"):
        training_curves(History(loss=[1.0], train_acc=[0.5]), tmp_path / "no" / "such" / "c.png")
