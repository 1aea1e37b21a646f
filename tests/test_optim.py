"""Tests of graphexec.optim: update rules, optimiser classes, saved state and schedules."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from graphexec.errors import GraphexecError
from graphexec.optim import (
    SGD,
    Adam,
    ExponentialDecay,
    OptimError,
    Optimizer,
    RMSProp,
    StepDecay,
    adam_step,
    make_optimizer,
    make_schedule,
    momentum_step,
    nesterov_step,
    rmsprop_step,
    sgd_step,
)

# ---------------------------------------------------------------- rules, by hand
# One weight w = 1 and the same gradient dw = 1 at every step, worked out on paper.

HAND_COMPUTED: list[tuple[Callable[..., None], dict[str, float], list[float]]] = [
    # w -= 0.1
    (sgd_step, {"lr": 0.1}, [0.9, 0.8, 0.7]),
    # v = -0.1, -0.19, -0.271;  w += v
    (momentum_step, {"lr": 0.1, "mu": 0.9}, [0.9, 0.71, 0.439]),
    # w += -0.9 v_prev + 1.9 v:  -0.19, 0.09 - 0.361, 0.171 - 0.5149
    (nesterov_step, {"lr": 0.1, "mu": 0.9}, [0.81, 0.539, 0.1951]),
    # cache = 0.5, 0.75, 0.875;  w -= 0.1 / sqrt(cache)   (eps negligible)
    (
        rmsprop_step,
        {"lr": 0.1, "decay": 0.5, "eps": 1e-12},
        [
            1 - 0.1 / math.sqrt(0.5),
            1 - 0.1 / math.sqrt(0.5) - 0.1 / math.sqrt(0.75),
            1 - 0.1 / math.sqrt(0.5) - 0.1 / math.sqrt(0.75) - 0.1 / math.sqrt(0.875),
        ],
    ),
    # a constant gradient has m_hat = 1 and v_hat = 1 exactly, so every step is -lr
    (adam_step, {"lr": 0.1, "beta1": 0.9, "beta2": 0.999, "eps": 1e-12}, [0.9, 0.8, 0.7]),
]


@pytest.mark.parametrize(("rule", "hyper", "expected"), HAND_COMPUTED)
def test_rule_against_hand_computed_steps(
    rule: Callable[..., None], hyper: dict[str, float], expected: list[float]
) -> None:
    w, state = np.array([1.0]), dict[str, np.ndarray]()
    for want in expected:
        rule(w, np.array([1.0]), state, **hyper)
        np.testing.assert_allclose(w, [want], rtol=0, atol=1e-10)


# ---------------------------------------------------------------- rules, against scalar code
# Varying gradients on a small array, against the textbook formulas in plain Python floats.


def _reference(rule: str, w: float, grads: list[float], **h: float) -> float:
    """The CS231n formulas, written out for one scalar weight."""
    v = m = cache = 0.0
    for t, dw in enumerate(grads, start=1):
        if rule == "sgd":
            w = w - h["lr"] * dw
        elif rule == "momentum":
            v = h["mu"] * v - h["lr"] * dw
            w = w + v
        elif rule == "nesterov":
            v_prev = v
            v = h["mu"] * v - h["lr"] * dw
            w = w - h["mu"] * v_prev + (1 + h["mu"]) * v
        elif rule == "rmsprop":
            cache = h["decay"] * cache + (1 - h["decay"]) * dw**2
            w = w - h["lr"] * dw / (math.sqrt(cache) + h["eps"])
        elif rule == "adam":
            m = h["beta1"] * m + (1 - h["beta1"]) * dw
            v = h["beta2"] * v + (1 - h["beta2"]) * dw**2
            m_hat, v_hat = m / (1 - h["beta1"] ** t), v / (1 - h["beta2"] ** t)
            w = w - h["lr"] * m_hat / (math.sqrt(v_hat) + h["eps"])
    return w


RULES: dict[str, tuple[Callable[..., None], dict[str, float]]] = {
    "sgd": (sgd_step, {"lr": 0.05}),
    "momentum": (momentum_step, {"lr": 0.05, "mu": 0.8}),
    "nesterov": (nesterov_step, {"lr": 0.05, "mu": 0.8}),
    "rmsprop": (rmsprop_step, {"lr": 0.01, "decay": 0.9, "eps": 1e-8}),
    "adam": (adam_step, {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}),
}


@pytest.mark.parametrize("name", sorted(RULES))
def test_rule_against_scalar_reference_for_three_steps(name: str) -> None:
    rule, hyper = RULES[name]
    w0 = np.array([[0.5, -1.0], [2.0, 0.0]])
    grads = [np.array([[1.0, -2.0], [0.5, 3.0]]) * (k + 1) * (-1) ** k for k in range(3)]
    w, state = w0.copy(), dict[str, np.ndarray]()
    for dw in grads:
        rule(w, dw, state, **hyper)
    for i in np.ndindex(w0.shape):
        want = _reference(name, float(w0[i]), [float(g[i]) for g in grads], **hyper)
        assert w[i] == pytest.approx(want, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("name", sorted(RULES))
def test_rule_updates_parameter_and_state_in_place(name: str) -> None:
    rule, hyper = RULES[name]
    w = np.ones(3)
    w_before, state = w, dict[str, np.ndarray]()
    rule(w, np.full(3, 0.5), state, **hyper)
    arrays_after_first = {k: id(a) for k, a in state.items()}
    rule(w, np.full(3, 0.5), state, **hyper)
    assert w is w_before and not np.array_equal(w, np.ones(3))
    assert {k: id(a) for k, a in state.items()} == arrays_after_first


def test_adam_keeps_step_count_as_0d_int64() -> None:
    state: dict[str, np.ndarray] = {}
    for _ in range(3):
        adam_step(np.ones(2), np.ones(2), state, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
    assert state["t"].shape == () and state["t"].dtype == np.int64 and int(state["t"]) == 3


# ---------------------------------------------------------------- optimiser classes


def _optimizers() -> list[Optimizer]:
    return [
        SGD(lr=0.1),
        SGD(lr=0.1, momentum=0.9),
        SGD(lr=0.1, momentum=0.9, nesterov=True),
        RMSProp(lr=0.01),
        Adam(lr=0.01),
    ]


@pytest.mark.parametrize("opt", _optimizers(), ids=repr)
def test_float32_parameters_stay_float32(opt: Optimizer) -> None:
    params = {"W": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}
    grads = {"W": np.full((2, 3), 0.5, np.float32), "b": np.ones(3, np.float32)}
    for _ in range(3):
        opt.step(params, grads)
    assert all(p.dtype == np.float32 for p in params.values())
    assert all(a.dtype == np.float32 for k, a in opt.state_arrays().items() if k[:2] != "t:")


@pytest.mark.parametrize("opt", _optimizers(), ids=repr)
def test_step_updates_params_in_place_with_state_per_name(opt: Optimizer) -> None:
    W, b = np.ones((2, 2)), np.ones(2)
    params = {"W": W, "b": b}
    opt.step(params, {"W": np.ones((2, 2)), "b": -np.ones(2), "x": np.ones(5)})
    assert params["W"] is W and np.all(W < 1) and np.all(b > 1)
    names = {key.split(":")[1] for key in opt.state_arrays()}
    assert names == (set() if isinstance(opt, SGD) and opt.momentum == 0 else {"W", "b"})


@pytest.mark.parametrize(
    "opt", [Adam(lr=0.1), RMSProp(lr=0.01), SGD(lr=0.1, momentum=0.9, nesterov=True)], ids=repr
)
def test_optimizer_minimises_a_quadratic(opt: Optimizer) -> None:
    target = np.array([3.0, -2.0, 0.5])
    params = {"w": np.zeros(3)}
    for _ in range(2000):
        opt.step(params, {"w": 2 * (params["w"] - target)})  # gradient of |w - target|^2
    np.testing.assert_allclose(params["w"], target, atol=1e-3)


def test_step_refuses_missing_or_misshapen_gradient() -> None:
    opt = SGD(lr=0.1)
    with pytest.raises(OptimError, match="no gradient for parameter 'W'"):
        opt.step({"W": np.ones(2)}, {})
    with pytest.raises(OptimError, match=r"shape \(3,\).*shape \(2,\)"):
        opt.step({"W": np.ones(2)}, {"W": np.ones(3)})
    with pytest.raises(OptimError, match="float ndarray"):
        opt.step({"W": np.ones(2, int)}, {"W": np.ones(2)})


# ---------------------------------------------------------------- saved state


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam"])
def test_state_round_trip_continues_bit_identically(name: str) -> None:
    hyper: dict[str, Any] = {"lr": 0.01}
    if name == "sgd":
        hyper.update(momentum=0.9, nesterov=True)
    rng = np.random.default_rng(0)
    start = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    grads = [{k: rng.standard_normal(v.shape) for k, v in start.items()} for _ in range(5)]

    straight = {k: v.copy() for k, v in start.items()}
    opt = make_optimizer(name, **hyper)
    for g in grads:
        opt.step(straight, g)

    resumed = {k: v.copy() for k, v in start.items()}
    first = make_optimizer(name, **hyper)
    for g in grads[:2]:
        first.step(resumed, g)
    saved = {k: v.copy() for k, v in first.state_arrays().items()}
    second = make_optimizer(name, **hyper)
    second.load_state_arrays(saved)
    for g in grads[2:]:
        second.step(resumed, g)

    assert all(np.array_equal(straight[k], resumed[k]) for k in start)


def test_state_array_keys() -> None:
    opt = Adam()
    opt.step({"W": np.ones(2)}, {"W": np.ones(2)})
    arrays = opt.state_arrays()
    assert sorted(arrays) == ["m:W", "t:W", "v:W"]
    assert arrays["t:W"].shape == () and arrays["t:W"].dtype == np.int64
    assert arrays["m:W"] is not opt.state["W"]["m"]  # a copy, not the live array


def test_load_state_refuses_foreign_or_misshapen_state() -> None:
    with pytest.raises(OptimError, match="'m:W'"):
        SGD(lr=0.1, momentum=0.5).load_state_arrays({"m:W": np.zeros(2)})
    with pytest.raises(OptimError, match="'velocity'"):
        SGD(lr=0.1, momentum=0.5).load_state_arrays({"velocity": np.zeros(2)})
    with pytest.raises(OptimError, match="0-d integer"):
        Adam().load_state_arrays({"t:W": np.zeros(2)})
    opt = Adam()
    opt.load_state_arrays({"m:W": np.zeros(3), "v:W": np.zeros(3), "t:W": np.array(1)})
    with pytest.raises(OptimError, match=r"'m:W'.*\(3,\).*\(2,\)"):
        opt.step({"W": np.ones(2)}, {"W": np.ones(2)})


def test_state_arrays_refuses_slash_in_parameter_name() -> None:
    opt = SGD(lr=0.1, momentum=0.5)
    opt.step({"layer1/W": np.ones(2)}, {"layer1/W": np.ones(2)})
    with pytest.raises(OptimError, match="'/'"):
        opt.state_arrays()


# ---------------------------------------------------------------- hyperparameters


@pytest.mark.parametrize(
    ("make", "param"),
    [
        (lambda: SGD(lr=0.0), "lr"),
        (lambda: SGD(lr=-1.0), "lr"),
        (lambda: SGD(lr=float("inf")), "lr"),
        (lambda: SGD(lr=float("nan")), "lr"),
        (lambda: SGD(lr="0.1"), "lr"),  # type: ignore[arg-type]
        (lambda: SGD(lr=0.1, momentum=1.0), "momentum"),
        (lambda: SGD(lr=0.1, momentum=-0.1), "momentum"),
        (lambda: SGD(lr=0.1, nesterov=True), "nesterov"),
        (lambda: SGD(lr=0.1, momentum=0.9, nesterov="yes"), "nesterov"),  # type: ignore[arg-type]
        (lambda: RMSProp(lr=0.1, decay=1.0), "decay"),
        (lambda: RMSProp(lr=0.1, eps=0.0), "eps"),
        (lambda: Adam(beta1=1.0), "beta1"),
        (lambda: Adam(beta2=-0.5), "beta2"),
        (lambda: Adam(eps=-1e-8), "eps"),
    ],
)
def test_bad_hyperparameters_raise_optim_error(make: Callable[[], Any], param: str) -> None:
    with pytest.raises(OptimError, match=param):
        make()


def test_error_message_names_parameter_value_and_range() -> None:
    with pytest.raises(OptimError) as info:
        SGD(lr=0.1, momentum=1.5)
    assert str(info.value) == "momentum=1.5 is out of range: must be in [0, 1)"
    assert issubclass(OptimError, GraphexecError)


def test_lr_attribute_is_mutable_and_checked() -> None:
    opt = Adam(lr=0.1)
    opt.lr = 0.05
    assert opt.lr == 0.05 and opt.hyperparams()["lr"] == 0.05
    with pytest.raises(OptimError, match="lr"):
        opt.lr = -1.0


@pytest.mark.parametrize("opt", _optimizers(), ids=repr)
def test_config_round_trip(opt: Optimizer) -> None:
    again = Optimizer.from_config(opt.name, opt.hyperparams())
    assert type(again) is type(opt) and again.hyperparams() == opt.hyperparams()


def test_make_optimizer_refuses_unknown_names() -> None:
    with pytest.raises(OptimError, match="unknown optimiser 'adagrad'"):
        make_optimizer("adagrad", lr=0.1)
    with pytest.raises(OptimError, match="momentum"):
        make_optimizer("adam", lr=0.1, momentum=0.9)
    with pytest.raises(OptimError, match="needs hyperparameter"):
        make_optimizer("sgd")


# ---------------------------------------------------------------- schedules


def test_step_decay() -> None:
    sched = StepDecay(every=10, gamma=0.5)
    lrs = [sched.lr_at(0.1, e) for e in (0, 9, 10, 19, 20, 35)]
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.0125])


def test_exponential_decay() -> None:
    sched = ExponentialDecay(gamma=0.9)
    assert sched.lr_at(1.0, 0) == 1.0
    assert sched.lr_at(1.0, 3) == pytest.approx(0.729)


@pytest.mark.parametrize("sched", [StepDecay(every=3, gamma=0.1), ExponentialDecay(0.95)])
def test_schedule_config_round_trip(sched: StepDecay | ExponentialDecay) -> None:
    config = sched.to_config()
    for again in (type(sched).from_config(config), make_schedule(config)):
        assert type(again) is type(sched) and again.to_config() == config
        assert again.lr_at(0.1, 7) == sched.lr_at(0.1, 7)


@pytest.mark.parametrize(
    "make",
    [
        lambda: StepDecay(every=0, gamma=0.5),
        lambda: StepDecay(every=2.5, gamma=0.5),  # type: ignore[arg-type]
        lambda: StepDecay(every=2, gamma=0.0),
        lambda: ExponentialDecay(gamma=1.5),
        lambda: ExponentialDecay(0.9).lr_at(0.1, -1),
        lambda: make_schedule({"name": "cosine"}),
        lambda: StepDecay.from_config({"name": "exponential", "gamma": 0.5}),
        lambda: StepDecay.from_config({"name": "step", "every": 2}),
    ],
)
def test_bad_schedules_raise_optim_error(make: Callable[[], Any]) -> None:
    with pytest.raises(OptimError):
        make()


def test_from_config_on_a_subclass_builds_that_subclass_only() -> None:
    """Before: ``SGD.from_config("adam", ...)`` ignored ``cls`` and returned an Adam."""
    assert type(SGD.from_config("sgd", {"lr": 0.1})) is SGD
    with pytest.raises(OptimError, match="config is for optimiser 'adam', not 'sgd'"):
        SGD.from_config("adam", {"lr": 0.1})
    assert type(Optimizer.from_config("adam", {"lr": 0.1})) is Adam


def test_every_optimizer_has_its_own_default_lr() -> None:
    from graphexec.training.optim import OPTIMIZERS

    assert {n: c.default_lr for n, c in OPTIMIZERS.items()} == {
        "sgd": 1e-2, "rmsprop": 1e-3, "adam": 1e-3}
    for cls in OPTIMIZERS.values():
        assert cls(lr=cls.default_lr).lr == cls.default_lr
