"""Real PyTorch exports (tests/fixtures/onnx, made by scripts/make_onnx_fixtures.py; torch is not
needed here): each imports, matches PyTorch's forward and gradients (float32, rtol 1e-4), and
trains a few steps after a loss is put on it with ``GraphBuilder.from_graph``."""

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

import graphexec as gx  # noqa: E402
from graphexec.onnx_io import import_onnx  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "onnx"
CASES = sorted(p.stem for p in FIXTURES.glob("*.onnx"))
RTOL, ATOL = 1e-4, 1e-5


def load(name):
    return import_onnx(FIXTURES / f"{name}.onnx"), dict(np.load(FIXTURES / f"{name}.npz"))


def transposed(name, param):
    """Did the import store ONNX initializer ``param`` transposed (Gemm's transB folded)?"""
    g = import_onnx(FIXTURES / f"{name}.onnx")
    init = {t.name: onnx.numpy_helper.to_array(t)
            for t in onnx.load(FIXTURES / f"{name}.onnx").graph.initializer}.get(param)
    if init is None or init.ndim != 2:
        return False
    return not np.array_equal(g.params[param], init) and np.array_equal(g.params[param], init.T)


def feed_of(g, ref):
    return {k: ref[k] for k in g.inputs}


def test_every_model_and_both_exporters_are_committed():
    models = {"mlp_relu", "mlp_sigmoid", "mlp_tanh", "mlp_leaky_relu", "mlp_elu", "residual_mlp",
              "mlp_log_softmax", "lenet", "cnn_bn_dropout", "cross_entropy", "resnet_block",
              "mobilenet_block", "act_mlp", "mse_loss"}
    assert set(CASES) == {f"{m}_{e}" for m in models for e in ("torchscript", "dynamo")}
    assert sum(p.stat().st_size for p in FIXTURES.iterdir()) < 400_000


def assert_sgd_lowers(g, feed, out, steps=5, lr=0.1):
    """A few plain SGD steps on every trainable parameter lower the model's own loss."""
    before = float(gx.run(g, feed)[out])
    for _ in range(steps):
        ex = gx.Executor(g)
        ex.forward(feed)
        grads = ex.backward(wrt=g.trainable)
        for k in g.trainable:
            g.params[k] -= (lr * grads[k]).astype(g.params[k].dtype)
    assert float(gx.run(g, feed)[out]) < before


@pytest.mark.parametrize("name", CASES)
def test_forward_and_backward_match_pytorch(name):
    g, ref = load(name)
    ex = gx.Executor(g)
    out = ex.forward(feed_of(g, ref))
    (key,) = out
    np.testing.assert_allclose(out[key], ref["out_out"], rtol=RTOL, atol=ATOL)
    grads = ex.backward({key: ref["u_out"]})
    checked = 0
    for k, want in ref.items():
        if not k.startswith("grad_"):
            continue
        got = grads[k[5:]]
        if transposed(name, k[5:]):  # Gemm(transB=1): the import stores W transposed
            got = got.T
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=k)
        checked += 1
    assert checked >= 3


def test_the_shape_chain_of_view_folds_into_one_reshape():
    g, _ = load("lenet_torchscript")
    assert [dict(n.attrs) for n in g.nodes if n.op == "reshape"] == [{"shape": [-1, 32]}]


def test_batchnorm_statistics_are_buffers_and_dropout_is_gone():
    g, _ = load("cnn_bn_dropout_torchscript")
    ops = [n.op for n in g.nodes]
    assert "batchnorm" in ops and "dropout" not in ops
    assert len(g.buffers) == 2 and not set(g.buffers) & set(g.trainable)
    g, _ = load("cnn_bn_dropout_dynamo")  # dynamo folds eval BatchNorm into the conv
    assert {"batchnorm", "dropout"}.isdisjoint(n.op for n in g.nodes)


LOSS_MODELS = ("cross_entropy", "mse_loss")


@pytest.mark.parametrize("name", [c for c in CASES if not c.startswith(LOSS_MODELS)])
def test_trains_after_adding_a_loss(name):
    g, ref = load(name)
    (out,) = g.output_map
    b = gx.GraphBuilder.from_graph(g)
    y = b.input("labels", shape=(None,), dtype="int64")
    scores = b.value(out)
    if name.startswith("mlp_log_softmax"):  # log-probabilities: the loss is their mean at y
        scores = b.op("reshape", scores, shape=[-1, 4])
    b.output(b.op("softmax_cross_entropy", scores, y), "loss")
    tg = b.build()
    rng = np.random.default_rng(0)
    feed = {**feed_of(g, ref)}
    n_classes = ref["out_out"].shape[1]
    feed["labels"] = rng.integers(0, n_classes, size=ref["out_out"].shape[0])
    losses = []
    for _ in range(5):
        ex = gx.Executor(tg)
        losses.append(float(ex.forward(feed, outputs=["loss"])["loss"]))
        grads = ex.backward({"loss": np.array(1.0, "float32")}, wrt=tg.trainable)
        for k in tg.trainable:
            tg.params[k] -= (0.1 * grads[k]).astype(tg.params[k].dtype)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_cross_entropy_model_imports_its_loss_and_trains(exporter):
    g, ref = load(f"cross_entropy_{exporter}")
    # PyTorch writes ignore_index=-100: ONNX's definition, log_softmax then nll_loss
    assert [n.op for n in g.nodes][-2:] == ["log_softmax", "nll_loss"]
    feed = feed_of(g, ref)
    (out,) = g.output_map
    assert_sgd_lowers(g, feed, out)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_mse_loss_model_imports_its_loss_and_trains(exporter):
    g, ref = load(f"mse_loss_{exporter}")
    feed = feed_of(g, ref)
    (out,) = g.output_map
    x, y, w, b = ref["x"], ref["y"], g.params["fc.weight"], g.params["fc.bias"]
    w = w.T if transposed(f"mse_loss_{exporter}", "fc.weight") else w
    np.testing.assert_allclose(gx.run(g, feed)[out], np.mean((x @ w.T + b - y) ** 2), rtol=RTOL)
    assert_sgd_lowers(g, feed, out)


def test_batchnorm_statistics_written_as_identities_of_weights_are_buffers():
    """TorchScript writes a fresh BatchNorm's running variance (equal to its weight, all ones)
    as Identity(weight): the import keeps it a buffer of its own, never the trained weight."""
    model = onnx.load(FIXTURES / "resnet_block_torchscript.onnx")
    assert "Identity" in {n.op_type for n in model.graph.node}
    g, _ = load("resnet_block_torchscript")
    bns = [n for n in g.nodes if n.op == "batchnorm"]
    assert len(bns) == 3 and len(g.buffers) == 6 and not set(g.buffers) & set(g.trainable)
    assert all(set(n.inputs[3:]) <= set(g.buffers) for n in bns)


def test_the_newer_activations_import_as_their_gates():
    # dynamo: Mish, tanh-GELU's x³ as Pow, softplus as Where(Greater(..)), chunk as Split
    ops = {n.op for n in load("act_mlp_dynamo")[0].nodes}
    assert {"mish", "pow_scalar", "where", "compare", "slice", "sqrt", "abs", "clip"} <= ops
    # TorchScript: Mish as x·tanh(Softplus), chunk as Slices whose bounds fold from the shape
    ops = {n.op for n in load("act_mlp_torchscript")[0].nodes}
    assert {"onnx_softplus", "tanh", "clip", "slice", "sqrt", "abs"} <= ops
