"""The shipped convnets: models/digits_cnn.gx (trained) and models/cifar10_convnet.gx (untrained).

Cheap checks only: loading, forward passes in evaluation mode, one training step. Retraining the
digits CNN takes minutes, so its recipe is checked through the stored spec, not rerun.
"""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

import graphexec as gx
from graphexec.checkpoint import read_spec, read_state

from conftest import MODELS, ROOT

DIGITS, CIFAR = MODELS / "digits_cnn.gx", MODELS / "cifar10_convnet.gx"


def _script():
    spec = importlib.util.spec_from_file_location("make_cnn_models",
                                                  ROOT / "scripts" / "make_cnn_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _held_out_digits():
    """The seed-0 split's 20 % that the shipped CNN never saw, as (N, 1, 8, 8) images."""
    pytest.importorskip("sklearn")
    from graphexec.data import digits

    _, _, Xv, yv = digits(val_fraction=0.2, seed=0)
    return Xv.reshape(-1, 1, 8, 8), yv


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "graphexec", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


# ---------------------------------------------------------------------------- digits_cnn.gx
def test_digits_cnn_has_trained_batchnorm_statistics():
    g = gx.load(DIGITS)
    assert sorted(g.buffers) == ["running_mean1", "running_var1"]
    mean, var = g.buffers["running_mean1"], g.buffers["running_var1"]
    assert mean.shape == var.shape == (32,)
    # fit updated them from the initial zeros and ones (batchnorm statistics end up in the file)
    assert np.abs(mean).min() > 1e-6 and np.abs(var - 1.0).min() > 1e-6
    assert (var > 0).all()
    assert [n.op for n in g.nodes][:5] == ["conv2d", "batchnorm", "relu", "max_pool2d", "flatten"]
    assert "dropout" in {n.op for n in g.nodes}


def test_digits_cnn_scores_on_the_held_out_split_in_evaluation_mode():
    X, y = _held_out_digits()
    g = gx.load(DIGITS)
    before = {k: v.copy() for k, v in g.buffers.items()}
    scores = gx.predict(g, X)
    assert scores.shape == (len(y), 10)
    acc = float((scores.argmax(axis=1) == y).mean())
    assert acc >= 0.95, acc
    # evaluation mode: no dropout (the same scores again), running statistics untouched
    np.testing.assert_array_equal(gx.predict(g, X), scores)
    for k, v in before.items():
        np.testing.assert_array_equal(g.buffers[k], v)


def test_digits_cnn_stores_its_training_spec_and_run():
    g = gx.load(DIGITS)
    recipe = _script().DIGITS_FIT
    spec = read_spec(g.training)
    assert (spec.optimizer, spec.hyperparams["lr"], spec.epochs, spec.batch_size, spec.seed) == (
        "adam", recipe["lr"], recipe["epochs"], recipe["batch_size"], 0)
    assert spec.extra["val_split"] == 0.2 and spec.extra["data_seed"] == 0
    state = read_state(g.training)
    assert state.epoch == recipe["epochs"] and len(state.history.loss) == recipe["epochs"]
    assert state.history.loss[-1] < state.history.loss[0]


def test_digits_cnn_untrained_recipe_matches_the_shipped_architecture():
    shipped, fresh = gx.load(DIGITS), _script().digits_cnn(train=False)
    assert [(n.name, n.op) for n in shipped.nodes] == [(n.name, n.op) for n in fresh.nodes]
    assert {k: v.shape for k, v in shipped.params.items()} == {
        k: v.shape for k, v in fresh.params.items()}
    assert not any(np.array_equal(shipped.params[k], fresh.params[k]) for k in ("W1", "W2"))


# ---------------------------------------------------------------------------- cifar10_convnet.gx
def test_cifar10_convnet_is_rebuilt_byte_for_byte():
    assert gx.dumps(_script().cifar10_convnet()) == CIFAR.read_bytes()


def test_cifar10_convnet_shapes_are_inferred_and_spec_stored():
    g = gx.load(CIFAR)
    want = {"conv1": (None, 32, 32, 32), "pool1": (None, 32, 16, 16), "flat": (None, 8192),
            "h2": (None, 100), "h3": (None, 10)}
    for name, shape in want.items():
        assert g.specs[name].shape == shape, name
    assert g.params["W1"].shape == (32, 3, 7, 7) and g.params["W1"].dtype == np.float32
    spec = read_spec(g.training)
    assert (spec.optimizer, spec.epochs, spec.batch_size, spec.extra["val_split"]) == (
        "adam", 10, 50, 0.02)
    assert read_state(g.training) is None  # untrained


def test_cifar10_convnet_one_training_step_on_random_images():
    g = gx.load(CIFAR)
    rng = np.random.default_rng(0)
    X = rng.random((8, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, 8)
    W1 = g.params["W1"].copy()

    def loss():
        return float(gx.Executor(g).forward({"x": X, "y": y}, outputs=["loss"])["loss"])

    before = loss()
    hist = gx.fit(g, X, y, epochs=1, batch_size=8)  # one step: the spec's Adam, lr 1e-3
    assert hist.epochs == 1 and hist.loss[0] == pytest.approx(before, rel=1e-5)
    assert loss() < before
    assert not np.array_equal(g.params["W1"], W1) and g.params["W1"].dtype == np.float32
    assert read_state(g.training).step == 1


# ---------------------------------------------------------------------------- the CLI
@pytest.mark.parametrize("path, shape", [(DIGITS, [None, 1, 8, 8]), (CIFAR, [None, 3, 32, 32])])
def test_cli_info(path, shape):
    r = _cli("info", path, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["inputs"][0] == {"name": "x", "dtype": info["inputs"][0]["dtype"], "shape": shape}
    assert info["nodes_by_op"]["conv2d"] == 1 and info["missing_ops"] == []
    assert info["training"] is True


def test_cli_check_grad_digits_cnn():
    r = _cli("check", "--grad", DIGITS)
    assert r.returncode == 0, r.stderr
    assert "gradcheck 'digits_cnn': ok" in r.stdout and "gamma1" in r.stdout


def test_cli_check_cifar10_and_its_gradients_in_process():
    """``check --grad`` on the CIFAR net works (checked by hand) but costs ~50 s of CPU, so the
    subprocess runs ``check`` and the gradient check runs on fewer coordinates here."""
    from graphexec.gradcheck import gradcheck, random_inputs

    r = _cli("check", CIFAR)
    assert r.returncode == 0 and "valid graph, 14 nodes" in r.stdout, r.stderr
    g = gx.load(CIFAR)
    report = gradcheck(g, random_inputs(g, size=2), max_coords=3)
    assert report.ok, str(report)
    assert {t.name for t in report.tensors} >= {"W1", "b1", "W2", "W3"}


def test_cli_evaluate_digits_cnn():
    pytest.importorskip("sklearn")
    r = _cli("evaluate", DIGITS, "--data", "digits", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accuracy"] >= 0.95


def _fake_cifar(path, n=20, seed=0):
    rng = np.random.default_rng(seed)
    records = rng.integers(0, 256, (n, 3073), dtype=np.uint8)
    records[:, 0] = np.arange(n) % 10
    records.tofile(path)


def test_cli_train_and_evaluate_cifar10_convnet_on_binary_batches(tmp_path):
    _fake_cifar(tmp_path / "data_batch_1.bin")
    out = tmp_path / "trained.gx"
    r = _cli("train", CIFAR, "--data", tmp_path / "data_batch_*.bin", "--epochs", "1",
             "--val-split", "0.5", "-o", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    r = _cli("evaluate", out, "--data", tmp_path / "data_batch_*.bin", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["examples"] == 10



def test_draw_cifar10_convnet_names_every_layer_and_shape():
    from graphexec.draw import to_dot

    dot = to_dot(gx.load(CIFAR))
    assert "input (N, 3, 32, 32)" in dot and "parameter (32, 3, 7, 7)" in dot
    for node in ("conv1", "relu1", "pool1", "flat", "h2", "h3"):
        assert f"<B>{node}</B>" in dot or f">{node}<" in dot, node


def test_draw_digits_cnn_with_batchnorm_buffers():
    from graphexec.draw import to_dot

    assert "running_mean1" in to_dot(gx.load(DIGITS))
