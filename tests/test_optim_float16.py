"""float16 parameters: the optimiser state and the update are float32, the parameter stays
float16. In float16 Adam's and RMSProp's eps = 1e-8 is 0 and dw² overflows past |dw| = 256,
so a zero gradient gave 0/0 and a large one ∞/∞: NaN."""

from __future__ import annotations

import numpy as np
import pytest

import graphexec as gx
from graphexec.optim import SGD, Adam, OptimError, RMSProp, adam_step, rmsprop_step


@pytest.mark.parametrize("rule,kw", [(adam_step, {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999,
                                                  "eps": 1e-8}),
                                     (rmsprop_step, {"lr": 1e-2, "decay": 0.99, "eps": 1e-8})])
def test_a_zero_and_a_large_gradient_keep_a_float16_parameter_finite(rule, kw):
    w = np.array([1.0, -2.0, 0.5], dtype=np.float16)
    state: dict = {}
    for _ in range(3):
        rule(w, np.array([0.0, 300.0, -1.0], dtype=np.float16), state, **kw)
    assert w.dtype == np.float16 and np.isfinite(w).all()
    assert w[0] == 1.0 and w[1] < -2.0 and w[2] > 0.5  # no step where dw = 0; against dw
    assert all(a.dtype == np.float32 for k, a in state.items() if k != "t")


def test_the_float16_update_matches_the_float32_one_rounded():
    w16, w32 = np.array([1.0, -0.5], np.float16), np.array([1.0, -0.5], np.float32)
    s16: dict = {}
    s32: dict = {}
    for dw in ([0.25, -3.0], [1.0, 400.0]):
        adam_step(w16, np.array(dw, np.float16), s16, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
        adam_step(w32, np.array(dw, np.float32), s32, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
        w32 = w16.astype(np.float32)  # the same start for the next step: w is float16
    np.testing.assert_array_equal(s16["m"], s32["m"])
    np.testing.assert_allclose(s16["v"], s32["v"], rtol=1e-6)


def _float16_classifier() -> tuple[gx.Graph, np.ndarray, np.ndarray]:
    """x (32, 4) -> affine 8 -> relu -> affine 3 -> softmax cross-entropy, all float16."""
    rng = np.random.default_rng(0)
    b = gx.GraphBuilder("mlp16")
    x, y = b.input("x", shape=(None, 4), dtype="float16"), b.input("y", shape=(None,),
                                                                   dtype="int64")
    h = b.op("relu", b.op("affine", x, b.param("W1", rng.standard_normal((4, 8)) * 0.5,
                                               dtype="float16"),
                          b.param("b1", np.zeros(8), dtype="float16")))
    scores = b.op("affine", h, b.param("W2", rng.standard_normal((8, 3)) * 0.5, dtype="float16"),
                  b.param("b2", np.zeros(3), dtype="float16"))
    b.output(b.op("softmax_cross_entropy", scores, y), "loss")
    xs = rng.standard_normal((32, 4)).astype(np.float16)
    ys = (xs[:, 0] > 0).astype(np.int64) + (xs[:, 1] > 0)
    return b.build(), xs, ys


@pytest.mark.parametrize("opt", [Adam(lr=1e-2), RMSProp(lr=1e-2), SGD(lr=0.1, momentum=0.9)],
                         ids=["adam", "rmsprop", "momentum"])
def test_a_float16_graph_trains_a_few_steps_finite_and_its_loss_falls(opt):
    g, x, y = _float16_classifier()
    ex = gx.Executor(g)
    losses = []
    for _ in range(20):
        out = ex.forward({"x": x, "y": y})
        losses.append(float(out["loss"]))
        grads = ex.backward({"loss": np.ones((), out["loss"].dtype)})
        opt.step(g.params, grads)
        assert all(p.dtype == np.float16 and np.isfinite(p).all() for p in g.params.values())
    assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0], losses
    assert all(a.dtype == np.float32 for k, a in opt.state_arrays().items() if k[:2] != "t:")


def test_float16_state_saved_before_is_widened_and_other_dtypes_refused():
    w = np.ones(3, np.float16)
    opt = Adam(lr=1e-3)
    opt.load_state_arrays({"m:w": np.zeros(3, np.float16), "v:w": np.zeros(3, np.float16),
                           "t:w": np.array(0)})
    opt.step({"w": w}, {"w": np.zeros(3, np.float16)})
    assert opt.state["w"]["m"].dtype == np.float32 and np.isfinite(w).all()
    opt.load_state_arrays({"m:w": np.zeros(3, np.float64), "v:w": np.zeros(3, np.float64),
                           "t:w": np.array(0)})
    with pytest.raises(OptimError, match=r"expected state float32 \(3,\)"):
        opt.step({"w": w}, {"w": np.zeros(3, np.float16)})
