"""gx.nn.convnet: shapes known at build, trains in training mode, batchnorm statistics saved."""

import numpy as np
import pytest

import graphexec as gx
from graphexec.errors import GraphError
from graphexec.nn import convnet


def _digits_like(n=64, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.standard_normal((n, 1, 8, 8)) * 0.3
    X[np.arange(n), 0, y * 2, :] += 2.0  # class = which row is bright
    return X, y


def test_shapes_are_inferred_for_every_layer():
    g = convnet((1, 8, 8), conv=[4, 8], kernel=3, pool=2, hidden=[16], classes=3, batchnorm=True,
                dropout=0.25)
    want = {"conv1": (None, 4, 8, 8), "pool1": (None, 4, 4, 4), "conv2": (None, 8, 4, 4),
            "pool2": (None, 8, 2, 2), "flat": (None, 32), "h3": (None, 16), "h4": (None, 3)}
    for name, shape in want.items():
        assert g.specs[name].shape == shape, name
    assert sorted(g.buffers) == ["running_mean1", "running_mean2", "running_var1", "running_var2"]
    assert g.outputs == ["loss", "scores"]


def test_the_cs231n_three_layer_convnet_in_one_call():
    g = convnet((3, 32, 32), conv=[32], kernel=7, pool=2, hidden=[100], classes=10)
    ops = [n.op for n in g.nodes]
    assert ops[:6] == ["conv2d", "relu", "max_pool2d", "flatten", "affine", "relu"]
    assert g.params["W1"].shape == (32, 3, 7, 7) and g.params["W2"].shape == (32 * 16 * 16, 100)


def test_fit_trains_batchnorm_statistics_and_evaluation_is_deterministic(tmp_path):
    X, y = _digits_like()
    g = convnet((1, 8, 8), conv=[4], kernel=3, pool=2, hidden=[8], classes=3, batchnorm=True,
                dropout=0.25, seed=0)
    hist = gx.fit(g, X, y, epochs=4, batch_size=16, optimizer=gx.optim.Adam(lr=1e-2), seed=0)
    assert hist.train_acc[-1] > 0.6
    assert not np.array_equal(g.buffers["running_mean1"], np.zeros(4))
    gx.save(g, tmp_path / "cnn.gx")
    h = gx.load(tmp_path / "cnn.gx")
    np.testing.assert_array_equal(h.buffers["running_var1"], g.buffers["running_var1"])
    a = gx.predict(h, X)
    np.testing.assert_array_equal(a, gx.predict(h, X))  # evaluation: no dropout, no updates
    np.testing.assert_array_equal(h.buffers["running_var1"], g.buffers["running_var1"])


def test_resumed_cnn_run_is_bit_identical(tmp_path):
    X, y = _digits_like()
    kw = dict(batch_size=16, seed=0)
    make = lambda: convnet((1, 8, 8), conv=[4], hidden=[8], classes=3, batchnorm=True,  # noqa: E731
                           dropout=0.25, seed=1)
    whole = make()
    gx.fit(whole, X, y, epochs=3, optimizer=gx.optim.Adam(lr=1e-2), **kw)
    ck = tmp_path / "ck.gx"
    gx.fit(make(), X, y, epochs=1, optimizer=gx.optim.Adam(lr=1e-2), checkpoint=ck, **kw)
    resumed = gx.load(ck)
    gx.fit(resumed, X, y, epochs=3, checkpoint=ck, resume=True, optimizer=None, **kw)
    for k in whole.params:
        np.testing.assert_array_equal(resumed.params[k], whole.params[k])
    for k in whole.buffers:
        np.testing.assert_array_equal(resumed.buffers[k], whole.buffers[k])


def test_gradcheck_of_a_small_convnet_in_training_mode():
    X, y = _digits_like(6)
    g = convnet((1, 8, 8), conv=[2], kernel=3, pool=2, hidden=[4], classes=3, batchnorm=True,
                dropout=0.25)
    rep = gx.gradcheck(g, {"x": X, "y": y}, training=True, seed=1, step=2)
    assert rep.ok, str(rep)


@pytest.mark.parametrize("kw, words", [({"kernel": 4}, "kernel must be odd"),
                                        ({"dropout": 1.0}, "dropout must be"),
                                        ({"conv": [4, 4, 4, 4]}, "pooled away")])
def test_bad_settings_are_refused(kw, words):
    with pytest.raises(GraphError, match=words):
        convnet((1, 8, 8), **kw)
