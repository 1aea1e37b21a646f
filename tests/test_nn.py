"""graphexec.nn: the lecture's networks built on the graph builder (structure, init, loss, grads)."""

import numpy as np
import pytest

import graphexec as gx
from graphexec import nn
from graphexec.errors import GraphError

ACTS = sorted(nn.ACTIVATIONS)


def _batch(d=4, n=6, c=3, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, c, n)


def _numerical_grad(g, feed, name, h=1e-6):
    """Central differences of the loss with respect to parameter ``name``."""
    w = g.params[name]
    grad = np.zeros_like(w)
    for i in np.ndindex(w.shape):
        old = w[i]
        w[i] = old + h
        up = gx.run(g, feed, outputs=["loss"])["loss"]
        w[i] = old - h
        down = gx.run(g, feed, outputs=["loss"])["loss"]
        w[i] = old
        grad[i] = (up - down) / (2 * h)
    return grad


def test_two_layer_net_structure_as_in_the_lecture():
    g = nn.mlp([2, 100, 3], activation="relu", loss="softmax", reg=1e-3, seed=0)
    assert g.inputs == ["x", "y"] and g.outputs == ["loss", "scores"]
    decls = {d.name: d for d in g.input_decls}
    assert decls["x"].shape == (None, 2) and decls["x"].dtype == np.float64
    assert decls["y"].shape == (None,) and decls["y"].dtype == np.int64
    assert {k: v.shape for k, v in g.params.items()} == {
        "W1": (2, 100), "b1": (100,), "W2": (100, 3), "b2": (3,)}
    assert not g.params["b1"].any() and not g.params["b2"].any()
    assert [n.op for n in g.nodes if n.op in ("affine", "relu")] == ["affine", "relu", "affine"]


def test_linear_and_three_layer_nets():
    lin = nn.mlp([5, 4])
    assert list(lin.params) == ["W1", "b1"] and lin.params["W1"].shape == (5, 4)
    assert not any(n.op == "relu" for n in lin.nodes)
    deep = nn.mlp([5, 8, 7, 4])
    assert [p.shape for p in deep.params.values()] == [(5, 8), (8,), (8, 7), (7,), (7, 4), (4,)]
    assert sum(n.op == "relu" for n in deep.nodes) == 2


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_activation_builds_runs_and_keeps_its_dtype(activation, dtype):
    g = nn.mlp([4, 5, 6, 3], activation=activation, loss="svm", reg=0.1, seed=1, dtype=dtype)
    X, y = _batch(dtype=dtype)
    out = gx.run(g, {"x": X, "y": y})
    assert out["scores"].shape == (6, 3) and out["scores"].dtype == np.dtype(dtype)
    assert out["loss"].shape == () and out["loss"].dtype == np.dtype(dtype)
    assert all(p.dtype == np.dtype(dtype) for p in g.params.values())


def test_prelu_slopes_and_maxout_pieces_are_learned_parameters():
    p = nn.mlp([4, 5, 3], activation="prelu", seed=0)
    assert p.params["alpha1"].shape == (5,) and np.all(p.params["alpha1"] == 0.25)
    m = nn.mlp([4, 5, 3], activation="maxout", seed=0)
    assert m.params["W1"].shape == (2, 4, 5) and m.params["b1"].shape == (2, 5)
    for g, name in ((p, "alpha1"), (m, "W1")):
        ex = gx.Executor(g)
        ex.forward(dict(zip("xy", _batch(n=20))))
        grads = ex.backward({"loss": 1.0}, wrt=list(g.params))
        assert np.abs(grads[name]).sum() > 0


def test_leaky_relu_uses_the_lecture_slope():
    g = nn.mlp([2, 3, 2], activation="leaky_relu")
    assert next(n for n in g.nodes if n.op == "leaky_relu" and n.name == "a1").attrs["alpha"] == 0.1


@pytest.mark.parametrize("activation, std", [("relu", np.sqrt(2 / 400)), ("tanh", np.sqrt(1 / 400)),
                                             ("sigmoid", np.sqrt(1 / 400)), ("elu", np.sqrt(2 / 400))])
def test_he_and_xavier_initialisation(activation, std):
    g = nn.mlp([400, 300, 10], activation=activation, seed=0)
    assert abs(g.params["W1"].std() / std - 1) < 0.01  # 120000 draws: well within 1 %
    assert abs(g.params["W1"].mean()) < 0.01 * std * 10


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = nn.mlp([3, 4, 2], seed=7), nn.mlp([3, 4, 2], seed=7), nn.mlp([3, 4, 2], seed=8)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["W1"], c.params["W1"])
    assert gx.dumps(a) == gx.dumps(b)
    f32 = nn.mlp([3, 4, 2], seed=7, dtype="float32")
    np.testing.assert_array_equal(f32.params["W1"], a.params["W1"].astype(np.float32))


@pytest.mark.parametrize("loss", ["softmax", "svm"])
def test_loss_is_data_loss_plus_reg_times_half_squared_weights(loss):
    reg = 0.05
    g = nn.mlp([4, 5, 3], loss=loss, reg=reg, seed=3)
    X, y = _batch()
    p = g.params
    scores = np.maximum(X @ p["W1"] + p["b1"], 0) @ p["W2"] + p["b2"]
    rows = np.arange(len(y))
    if loss == "softmax":
        shifted = scores - scores.max(axis=1, keepdims=True)
        data = -(shifted[rows, y] - np.log(np.exp(shifted).sum(axis=1))).mean()
    else:
        margins = np.maximum(0, scores - scores[rows, y][:, None] + 1)
        margins[rows, y] = 0
        data = margins.sum() / len(y)
    expected = data + reg * 0.5 * ((p["W1"] ** 2).sum() + (p["W2"] ** 2).sum())
    out = gx.run(g, {"x": X, "y": y})
    np.testing.assert_allclose(out["scores"], scores, rtol=1e-12)
    np.testing.assert_allclose(out["loss"], expected, rtol=1e-12)


@pytest.mark.parametrize("activation", ACTS)
def test_gradients_of_every_parameter_match_central_differences(activation):
    g = nn.mlp([3, 4, 3], activation=activation, reg=0.1, seed=2)
    X, y = _batch(d=3, n=5, seed=4)
    feed = {"x": X, "y": y}
    ex = gx.Executor(g)
    ex.forward(feed)
    grads = ex.backward({"loss": 1.0}, wrt=list(g.params))
    for name in g.params:
        np.testing.assert_allclose(grads[name], _numerical_grad(g, feed, name),
                                   rtol=1e-5, atol=1e-7, err_msg=f"{activation}: {name}")


def test_regularisation_scale_is_exact_and_changeable():
    g = nn.mlp([3, 4, 2], reg=1e-3, seed=0)
    assert nn.get_reg(g) == 1e-3
    X, y = _batch(d=3, c=2)
    data = gx.run(nn.set_reg(g, 0.0), {"x": X, "y": y})["loss"]
    l2 = 0.5 * sum((g.params[k] ** 2).sum() for k in ("W1", "W2"))
    for reg in (0.0, 1e-3, 0.5):
        h = nn.set_reg(g, reg)
        assert nn.get_reg(h) == reg and h.params["W1"] is not g.params["W1"]
        np.testing.assert_allclose(gx.run(h, {"x": X, "y": y})["loss"], data + reg * l2,
                                   rtol=1e-14)
    assert nn.get_reg(gx.loads(gx.dumps(nn.set_reg(g, 0.25)))) == 0.25


def test_l2_scale_is_the_regularisation_strength():
    b = gx.GraphBuilder("s")
    w = b.param("W", np.array([[1.0, -2.0], [3.0, 0.5]]))
    b.output(nn.l2_penalty(b, [w], 0.3), "out")
    g = b.build()
    ex = gx.Executor(g)
    assert ex.forward()["out"] == (0.5 * 0.3) * (1 + 4 + 9 + 0.25)
    np.testing.assert_array_equal(ex.backward()["W"], g.params["W"] * 0.3)


def test_helpers_compose_other_architectures():
    b = gx.GraphBuilder("custom")
    x = b.input("x", shape=(None, 4))
    y = b.input("y", shape=(None,), dtype="int64")
    rng = np.random.default_rng(0)
    h = nn.hidden_layer(b, x, 4, 6, "tanh", index=1, rng=rng)
    h = nn.activation(b, nn.dense(b, h, 6, 5, index=2, rng=rng), "prelu", index=2, width=5)
    scores = nn.dense(b, h, 5, 3, index=3, rng=rng, init="xavier")
    b.output(nn.classifier_loss(b, scores, y, "svm", weights=["W1", "W2", "W3"], reg=0.01), "loss")
    b.output(scores, "scores")
    g = b.build()
    assert set(g.params) == {"W1", "b1", "W2", "b2", "alpha2", "W3", "b3"}
    assert nn.get_reg(g) == 0.01
    out = gx.run(g, dict(zip("xy", _batch())))
    assert out["scores"].shape == (6, 3) and np.isfinite(out["loss"])


@pytest.mark.parametrize("kwargs, message", [
    ({"sizes": [3]}, "sizes must be [D, ..., C]: at least two positive integers, got [3]"),
    ({"sizes": [3, 0, 2]}, "sizes must be [D, ..., C]"),
    ({"sizes": [3, 2], "activation": "swish"}, "unknown activation 'swish'; use one of ['elu', "),
    ({"sizes": [3, 2], "loss": "hinge"}, "unknown loss 'hinge'; use one of ['softmax', 'svm']"),
    ({"sizes": [3, 2], "reg": -1.0}, "reg=-1.0 is out of range: must be in [0, inf)"),
    ({"sizes": [3, 2], "reg": float("nan")}, "reg=nan is out of range: must be in [0, inf)"),
    ({"sizes": [3, 2], "reg": True}, "reg must be a number in [0, inf), got True"),
    ({"sizes": [3, 2], "dtype": "int64"}, "mlp needs a float dtype ('float32' or 'float64')"),
])
def test_bad_arguments_are_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(GraphError) as e:
        nn.mlp(**kwargs)
    assert str(e.value).startswith(message)


def test_set_reg_needs_a_regularised_graph(models):
    with pytest.raises(GraphError, match="graph 'add_mul' has no l2 node"):
        nn.set_reg(gx.load(models / "add_mul.gx"), 0.1)
    assert nn.get_reg(gx.load(models / "add_mul.gx")) is None
