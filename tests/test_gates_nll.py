"""nll_loss: ONNX's NegativeLogLikelihoodLoss (weights, ignore_index, reductions, extra axes),
and SoftmaxCrossEntropyLoss imported through it."""

import numpy as np
import pytest

import graphexec as gx


def _graph(x, labels, weight=None, **attrs):
    b = gx.GraphBuilder("nll")
    ins = [b.input("x", shape=x.shape), b.input("y", shape=labels.shape, dtype="int64")]
    if weight is not None:
        ins.append(b.param("w", weight))
    b.output(b.op("nll_loss", *ins, name="loss", **attrs), "loss")
    return b.build()


def _by_hand(x, labels, weight, reduction, ignore):
    """The loops of ONNX's definition, one label at a time."""
    n, c = x.shape[:2]
    flat_x = x.reshape(n, c, -1)
    flat_y = labels.reshape(n, -1)
    loss, wsum = np.zeros(flat_y.shape), 0.0
    for i in range(n):
        for d in range(flat_y.shape[1]):
            t = flat_y[i, d]
            if t == ignore:
                continue
            w = 1.0 if weight is None else weight[t]
            loss[i, d] = -w * flat_x[i, t, d]
            wsum += w
    loss = loss.reshape(labels.shape)
    return {"none": loss, "sum": loss.sum(), "mean": loss.sum() / wsum}[reduction]


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("ignore", [None, 1, -1, -100, 7])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_the_definition_and_gradcheck(reduction, ignore, weighted):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 2, 2))
    labels = rng.integers(0, 4, size=(3, 2, 2))
    if ignore is not None:
        labels[0, 0, 0] = labels[2, 1, 1] = ignore
    weight = rng.uniform(0.5, 2, 4) if weighted else None
    attrs = {"reduction": reduction, "ignore_index": ignore}
    g = _graph(x, labels, weight, **attrs)
    got = gx.run(g, {"x": x, "y": labels})["loss"]
    np.testing.assert_allclose(got, _by_hand(x, labels, weight, reduction, ignore), rtol=1e-12)
    assert gx.gradcheck(g, {"x": x, "y": labels}).ok


def test_default_equals_softmax_cross_entropy_after_log_softmax():
    rng = np.random.default_rng(0)
    s, y = rng.standard_normal((5, 3)), rng.integers(0, 3, size=5)
    b = gx.GraphBuilder("two")
    si, yi = b.input("s", shape=(5, 3)), b.input("y", shape=(5,), dtype="int64")
    b.output(b.op("nll_loss", b.op("log_softmax", si, axis=1), yi), "a")
    b.output(b.op("softmax_cross_entropy", si, yi), "b")
    out = gx.run(b.build(), {"s": s, "y": y})
    np.testing.assert_allclose(out["a"], out["b"], rtol=1e-12)


def test_a_label_out_of_range_that_is_not_ignored_is_refused():
    x, labels = np.zeros((2, 3)), np.array([0, -1])
    with pytest.raises(gx.GraphError, match=r"label -1 at \(1,\) is not in 0\.\.2 .* nor the "
                                            r"ignore_index -100"):
        gx.run(_graph(x, labels, ignore_index=-100), {"x": x, "y": labels})
    assert gx.run(_graph(x, labels, ignore_index=-1), {"x": x, "y": labels})["loss"] == 0.0


def test_an_ignored_minus_infinity_adds_nothing():
    x = np.array([[-np.inf, 0.0], [-1.0, -2.0]])
    labels = np.array([5, 1])
    got = gx.run(_graph(x, labels, ignore_index=5), {"x": x, "y": labels})["loss"]
    assert got == 2.0


def test_infer_gives_the_labels_shape_for_none_and_names_bad_shapes():
    g = _graph(np.zeros((2, 3, 4)), np.zeros((2, 4), np.int64), reduction="none")
    assert gx.Executor(g).forward(x=np.zeros((2, 3, 4)), y=np.zeros((2, 4), np.int64))[
        "loss"].shape == (2, 4)
    with pytest.raises(gx.GraphError, match=r"expected labels \(2, 4\)"):
        _graph(np.zeros((2, 3, 4)), np.zeros((2, 3), np.int64))
    with pytest.raises(gx.GraphError, match=r"one weight per class, shape \(3,\)"):
        _graph(np.zeros((2, 3)), np.zeros(2, np.int64), np.ones(4))


onnx = pytest.importorskip("onnx")


def _sce_model(ignore_index, reduction="mean"):
    from onnx import TensorProto, helper

    node = helper.make_node("SoftmaxCrossEntropyLoss", ["s", "y"], ["loss", "log_prob"],
                            reduction=reduction, ignore_index=ignore_index)
    graph = helper.make_graph([node], "sce", [
        helper.make_tensor_value_info("s", TensorProto.DOUBLE, [3, 4]),
        helper.make_tensor_value_info("y", TensorProto.INT64, [3])], [
        helper.make_tensor_value_info("loss", TensorProto.DOUBLE, []),
        helper.make_tensor_value_info("log_prob", TensorProto.DOUBLE, [3, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_pytorch_cross_entropy_with_ignore_index_minus_100_imports_and_skips_those_labels():
    # PyTorch always writes ignore_index=-100; a label -100 was refused at run time before
    from graphexec.onnx_io import import_onnx

    g = import_onnx(_sce_model(-100))
    s = np.random.default_rng(1).standard_normal((3, 4))
    y = np.array([2, -100, 0])
    out = gx.run(g, {"s": s, "y": y})
    lp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(out["log_prob"], lp, rtol=1e-12)
    np.testing.assert_allclose(out["loss"], -(lp[0, 2] + lp[2, 0]) / 2, rtol=1e-12)
    assert gx.gradcheck(g, {"s": s, "y": y}).ok

