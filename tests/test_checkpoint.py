"""The training section of a .gx file: spec and state round trips, RNG state, bad sections."""

import numpy as np
import pytest

import graphexec as gx
from graphexec.checkpoint import History, TrainSpec, TrainState, read_spec, read_state, to_training
from graphexec.errors import GraphFileError
from graphexec.header import Training

from conftest import MODELS


def _graph_with(training):
    g = gx.nn.mlp([2, 3], seed=0)
    g.training = training
    return gx.loads(gx.dumps(g))  # through the file format and its validation


def _state(rng=None, **kw):
    return TrainState(rng=rng or np.random.default_rng(5), **kw)


def test_spec_round_trips_through_a_file_with_flat_keys():
    spec = TrainSpec(optimizer="sgd", hyperparams={"lr": 0.1, "momentum": 0.9, "nesterov": True},
                     epochs=20, batch_size=64, seed=3,
                     schedule={"name": "step", "every": 5, "gamma": 0.5}, early_stopping=4,
                     extra={"reg": 1e-3, "val_split": 0.2, "data_seed": 0})
    attrs = spec.to_attrs()
    assert attrs == {"optimizer": "sgd", "optimizer.lr": 0.1, "optimizer.momentum": 0.9,
                     "optimizer.nesterov": True, "epochs": 20, "batch_size": 64, "seed": 3,
                     "schedule": "step", "schedule.every": 5, "schedule.gamma": 0.5,
                     "early_stopping": 4, "reg": 1e-3, "val_split": 0.2, "data_seed": 0}
    g = _graph_with(Training(spec=attrs))
    assert read_spec(g.training) == spec
    assert read_state(g.training) is None  # a spec alone: never trained


def test_an_empty_or_missing_section_gives_an_empty_spec():
    assert read_spec(None) == TrainSpec()
    assert read_spec(Training()) == TrainSpec()


def test_rng_state_is_stored_as_hex_and_continues_exactly():
    rng = np.random.default_rng(12345)
    rng.random(7)
    rng.integers(0, 10, 3, dtype=np.uint32)  # leaves a buffered 32-bit half (has_uint32)
    g = _graph_with(to_training(TrainSpec(), _state(rng)))
    st = g.training.state
    assert st["rng.bit_generator"] == "PCG64"
    assert st["rng.state"].startswith("0x") and int(st["rng.state"], 16) >= 0
    restored = read_state(g.training).rng
    np.testing.assert_array_equal(restored.permutation(100), rng.permutation(100))
    assert restored.random() == rng.random()


def test_state_round_trips_history_best_and_optimizer_arrays():
    h = History(loss=[1.5, 0.5], train_acc=[0.5, 0.75], val_acc=[0.4, 0.6], lr=[0.1, 0.05],
                best_epoch=2, best_val_acc=0.6)
    state = _state(epoch=2, step=20, history=h,
                   optim_state={"m:W1": np.ones((2, 3)), "t:W1": np.array(20, dtype=np.int64)},
                   best_params={"W1": np.full((2, 3), 2.0), "b1": np.zeros(3)},
                   last_params={"W1": np.full((2, 3), 3.0), "b1": np.ones(3)})
    t = _graph_with(to_training(TrainSpec(epochs=4), state)).training
    assert t.state["params"] == "best" and t.state["history.loss"] == [1.5, 0.5]
    assert sorted(t.tensors) == ["best.W1", "best.b1", "last.W1", "last.b1", "optim.m:W1",
                                 "optim.t:W1"]
    back = read_state(t)
    assert (back.epoch, back.step, back.history) == (2, 20, h)
    assert back.optim_state["t:W1"].dtype == np.int64 and back.optim_state["t:W1"] == 20
    np.testing.assert_array_equal(back.best_params["W1"], 2.0)
    np.testing.assert_array_equal(back.last_params["b1"], 1.0)


def test_a_checkpoint_holds_no_pickle_and_loads_with_the_default_limits(tmp_path):
    X, y = np.random.default_rng(0).standard_normal((20, 2)), np.arange(20) % 3
    g = gx.nn.mlp([2, 4, 3], seed=0)
    gx.fit(g, X, y, epochs=2, batch_size=5, optimizer=gx.optim.Adam(), checkpoint=tmp_path / "c.gx")
    raw = (tmp_path / "c.gx").read_bytes()
    assert b"numpy" not in raw and b"\x80\x04\x95" not in raw  # no pickle protocol-4 frame
    assert gx.load(tmp_path / "c.gx").training.state["epoch"] == 2


def _section(**state):
    base = to_training(TrainSpec(), _state()).state
    return Training(state={**base, **state})


@pytest.mark.parametrize("section, message", [
    (_section(epoch=-1), "training section: state 'epoch' must be an integer >= 0, got -1"),
    (_section(epoch=3), "training section: state 'epoch' is 3 but the history has 0 entries"),
    (_section(params="best"), "training section: params are 'best' but no 'last.*' tensors"),
    (_section(**{"rng.bit_generator": "MT19937"}),
     "training section: state 'rng.bit_generator' must be 'PCG64', got 'MT19937'"),
    (_section(**{"rng.state": "zz"}), "training section: bad RNG state (ValueError"),
    (_section(**{"history.loss": ["a"]}),
     "training section: state 'history.loss' must be a list of numbers, got ['a']"),
    (Training(spec={"epochs": 0}), "training section: spec 'epochs' must be an integer >= 1, got 0"),
    (Training(spec={"optimizer": 3}), "training section: spec 'optimizer' must be a string, got 3"),
])
def test_bad_sections_are_refused_with_a_clear_message(section, message):
    with pytest.raises(GraphFileError) as e:
        read_spec(section)
        read_state(section)
    assert str(e.value).startswith(message)


def test_the_shipped_spiral_model_carries_a_spec_and_no_state():
    t = gx.load(MODELS / "spiral_mlp.gx").training
    spec = read_spec(t)
    assert (spec.optimizer, spec.epochs, spec.batch_size, spec.seed) == ("adam", 100, 32, 0)
    assert spec.hyperparams["lr"] == 1e-2 and spec.extra["reg"] == 1e-3
    assert read_state(t) is None


def test_the_shipped_digits_model_carries_its_run():
    t = gx.load(MODELS / "digits_mlp.gx").training
    state = read_state(t)
    assert state.epoch == 50 and state.history.epochs == 50
    assert state.history.best_val_acc == max(state.history.val_acc)
