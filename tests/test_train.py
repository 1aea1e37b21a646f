"""gx.fit / gx.predict: accuracy on the lecture's problems, resume bit for bit, errors."""

import numpy as np
import pytest
from conftest import MODELS

import graphexec as gx
from graphexec.cli.main import main
from graphexec.data import digits, spiral
from graphexec.examples import digits_mlp
from graphexec.optim import SGD, Adam, StepDecay
from graphexec.train import EpochEnd, TrainingError, accuracy, confusion_matrix


@pytest.fixture(scope="module")
def small_spiral():
    X, y = spiral(n_per_class=50, seed=0)
    Xv, yv = spiral(n_per_class=50, seed=1)
    return X, y, Xv, yv


@pytest.fixture(scope="module")
def digits_split():
    return digits(0.2, seed=0)


def _net(**kw):
    return gx.nn.mlp([2, 16, 3], reg=1e-3, seed=0, **kw)


def _fit(g, data, **kw):
    X, y, Xv, yv = data
    args = {"epochs": 8, "batch_size": 16, "optimizer": Adam(lr=3e-2), "val": (Xv, yv), "seed": 1}
    return gx.fit(g, X, y, **{**args, **kw})


# ---------------------------------------------------------------------------- accuracy
def test_spiral_two_layer_net_fits_and_generalises_linear_does_not():
    """The CS231n case study: >= 98 % train and >= 95 % on a freshly drawn spiral; ~50 % linear."""
    X, y = spiral(seed=0)
    Xval, yval = spiral(seed=1)
    Xnew, ynew = spiral(seed=2)  # never seen in training nor in choosing the best epoch
    g = gx.load(MODELS / "spiral_mlp.gx")
    hist = gx.fit(g, X, y, val=(Xval, yval))  # everything else from the file's training spec
    assert hist.epochs == 100 and g.training.spec["optimizer"] == "adam"
    assert accuracy(g, X, y) >= 0.98
    assert accuracy(g, Xnew, ynew) >= 0.95
    linear = gx.nn.mlp([2, 3], reg=1e-3, seed=0)
    linear.training = gx.load(MODELS / "spiral_mlp.gx").training
    gx.fit(linear, X, y)
    assert 0.45 <= accuracy(linear, X, y) <= 0.60
    assert 0.45 <= accuracy(linear, Xnew, ynew) <= 0.60


def test_digits_relu_reaches_97_percent_held_out():
    """Mean over three 80/20 splits; the held-out part is never used during training."""
    accs = []
    for s in range(3):
        Xtr, ytr, Xv, yv = digits(0.2, seed=s)
        g = gx.nn.mlp([64, 100, 10], reg=1e-4, seed=s)
        gx.fit(g, Xtr, ytr, epochs=50, batch_size=32, optimizer=Adam(lr=1e-3), seed=s)
        accs.append(accuracy(g, Xv, yv))
    assert np.mean(accs) >= 0.97 and min(accs) >= 0.96


@pytest.mark.parametrize("activation, loss, opt", [
    ("leaky_relu", "softmax", "adam"), ("prelu", "softmax", "adam"), ("elu", "softmax", "adam"),
    ("tanh", "softmax", "adam"), ("sigmoid", "softmax", "adam"), ("maxout", "softmax", "adam"),
    ("relu", "svm", "sgd_momentum"),
])
def test_digits_every_activation_and_the_svm_reach_95_percent(digits_split, activation, loss, opt):
    Xtr, ytr, Xv, yv = digits_split
    g = gx.nn.mlp([64, 100, 10], activation=activation, loss=loss, reg=1e-4, seed=0)
    lr = 3e-3 if activation in ("tanh", "sigmoid") else 1e-3  # they learn slower (saturation)
    optimizer = Adam(lr=lr) if opt == "adam" else SGD(lr=0.05, momentum=0.9)
    gx.fit(g, Xtr, ytr, epochs=30, batch_size=32, optimizer=optimizer, seed=0)
    assert accuracy(g, Xv, yv) >= 0.95


def test_float32_training_stays_float32(small_spiral):
    X, y, Xv, yv = small_spiral
    g = _net(dtype="float32")
    hist = _fit(g, (X.astype("float32"), y, Xv.astype("float32"), yv), epochs=3)
    assert {p.dtype for p in g.params.values()} == {np.dtype("float32")}
    assert {a.dtype for k, a in g.training.tensors.items() if k.startswith(("optim.m", "optim.v",
                                                                            "best."))} \
        == {np.dtype("float32")}
    assert gx.predict(g, X[:4].astype("float32")).dtype == np.float32
    assert all(isinstance(v, float) for v in hist.loss)


@pytest.fixture(scope="module")
def rebuilt_digits():
    return digits_mlp()


def test_shipped_digits_model_is_reproduced_within_tolerance(digits_split, rebuilt_digits):
    """Training results may differ in the last bits across BLAS builds: compare with a tolerance."""
    shipped, rebuilt = gx.load(MODELS / "digits_mlp.gx"), rebuilt_digits
    _, _, Xv, yv = digits_split
    assert shipped.training.spec == rebuilt.training.spec
    assert {k: v.shape for k, v in shipped.params.items()} == \
        {k: v.shape for k, v in rebuilt.params.items()}
    assert abs(accuracy(shipped, Xv, yv) - accuracy(rebuilt, Xv, yv)) <= 0.01
    np.testing.assert_allclose(shipped.training.state["history.loss"],
                               rebuilt.training.state["history.loss"], rtol=1e-3)
    assert accuracy(shipped, Xv, yv) >= 0.96


def test_shipped_untrained_digits_net_is_reproduced_byte_for_byte():
    assert (MODELS / "digits_mlp_untrained.gx").read_bytes() == gx.dumps(digits_mlp(train=False))


def test_graphexec_train_on_the_untrained_digits_net_gives_the_digits_model(tmp_path,
                                                                           rebuilt_digits):
    """docs/training.md: the CLI with no flag but --data retrains models/digits_mlp.gx (byte for
    byte on one BLAS build: here against the same run in process)."""
    out = tmp_path / "digits_mlp.gx"
    assert main(["train", str(MODELS / "digits_mlp_untrained.gx"), "--data", "digits",
                 "-o", str(out), "--no-progress"]) == 0
    assert out.read_bytes() == gx.dumps(rebuilt_digits)


# ---------------------------------------------------------------------------- resume
def _same_run(a, b):
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert a.training.state == b.training.state
    assert a.training.tensors.keys() == b.training.tensors.keys()
    assert all(np.array_equal(a.training.tensors[k], b.training.tensors[k])
               for k in a.training.tensors)


@pytest.mark.parametrize("stop_at", [2, 6])  # at 2 the graph holds the best (epoch 1) params
@pytest.mark.parametrize("make_opt", [lambda: Adam(lr=3e-2),
                                      lambda: SGD(lr=0.1, momentum=0.9, nesterov=True)])
def test_checkpoint_and_resume_is_bit_identical(small_spiral, tmp_path, stop_at, make_opt):
    sched = StepDecay(every=3, gamma=0.5)
    whole = _net()
    h_whole = _fit(whole, small_spiral, optimizer=make_opt(), lr_schedule=sched,
                   checkpoint=tmp_path / "whole.gx")
    part = _net()
    _fit(part, small_spiral, epochs=stop_at, optimizer=make_opt(), lr_schedule=sched,
         checkpoint=tmp_path / "part.gx")
    if stop_at == 2 and isinstance(make_opt(), Adam):
        assert part.training.state["params"] == "best"  # the case that keeps 'last.*' tensors
    resumed = gx.load(tmp_path / "part.gx")
    h_resumed = gx.fit(resumed, *small_spiral[:2], epochs=8, val=small_spiral[2:], resume=True,
                       checkpoint=tmp_path / "part.gx")
    _same_run(whole, resumed)
    assert h_whole == h_resumed
    assert h_whole.lr == [3e-2 * 0.5 ** (e // 3) for e in range(8)] or \
        h_whole.lr == [0.1 * 0.5 ** (e // 3) for e in range(8)]
    assert (tmp_path / "whole.gx").read_bytes() == (tmp_path / "part.gx").read_bytes()


def test_a_run_killed_mid_way_resumes_from_its_last_checkpoint(small_spiral, tmp_path):
    whole = _net()
    _fit(whole, small_spiral)

    def crash(info: EpochEnd):
        if info.epoch == 5:
            raise KeyboardInterrupt  # after the checkpoint of epoch 5 was written

    with pytest.raises(KeyboardInterrupt):
        _fit(_net(), small_spiral, checkpoint=tmp_path / "ck.gx", callbacks=[crash])
    ck = gx.load(tmp_path / "ck.gx")
    assert ck.training.state["epoch"] == 5
    gx.fit(ck, *small_spiral[:2], epochs=8, val=small_spiral[2:], resume=True)
    _same_run(whole, ck)


def test_non_finite_loss_names_epoch_and_step_and_keeps_the_checkpoint(small_spiral, tmp_path):
    ck = tmp_path / "ck.gx"
    saved = {}

    def corrupt(info: EpochEnd):  # runs after the epoch's checkpoint is written
        if info.epoch == 2:
            saved["bytes"] = ck.read_bytes()
            info.graph.params["W2"][0, 0] = np.inf

    with pytest.raises(TrainingError) as e, np.errstate(invalid="ignore"):
        _fit(_net(), small_spiral, epochs=4, checkpoint=ck, callbacks=[corrupt])
    assert str(e.value).startswith("the loss became nan at epoch 3, step 1 of 10 (lr 0.03)")
    assert "end of epoch 2) is intact" in str(e.value)
    assert ck.read_bytes() == saved["bytes"]
    assert gx.load(ck).training.state["epoch"] == 2


# ---------------------------------------------------------------------------- behaviour
def test_best_validation_parameters_are_restored(small_spiral):
    snapshots = {}
    g = _net()
    hist = _fit(g, small_spiral, epochs=6, callbacks=[
        lambda info: snapshots.update({info.epoch: {k: v.copy() for k, v in info.graph.params.items()}})])
    assert hist.best_epoch == 5 and hist.best_val_acc == max(hist.val_acc)
    assert all(np.array_equal(g.params[k], snapshots[5][k]) for k in g.params)
    assert accuracy(g, *small_spiral[2:]) == hist.val_acc[4]


def test_without_validation_the_last_parameters_are_kept(small_spiral):
    snapshots = {}
    g = _net()
    hist = _fit(g, small_spiral, epochs=3, val=None, callbacks=[
        lambda info: snapshots.update({info.epoch: g.params["W1"].copy()})])
    assert hist.val_acc == [] and hist.best_epoch is None
    assert np.array_equal(g.params["W1"], snapshots[3])


def test_history_callbacks_and_one_step_per_batch(small_spiral):
    seen = []
    g = _net()
    hist = _fit(g, small_spiral, epochs=3, batch_size=32, callbacks=[seen.append])
    assert [i.epoch for i in seen] == [1, 2, 3] and {i.epochs for i in seen} == {3}
    assert [i.loss for i in seen] == hist.loss and [i.val_acc for i in seen] == hist.val_acc
    assert g.training.state["step"] == 3 * 5  # ceil(150 / 32) = 5 steps per epoch
    assert hist.loss[-1] < hist.loss[0]
    assert len(hist.train_acc) == len(hist.val_acc) == len(hist.lr) == 3


def test_early_stopping_stops_and_a_resume_honours_it(small_spiral):
    g = _net()
    hist = _fit(g, small_spiral, epochs=40, optimizer=Adam(lr=0.3), early_stopping=2)
    assert hist.stopped_early and hist.epochs < 40
    assert hist.epochs - hist.best_epoch == 2
    again = gx.fit(gx.loads(gx.dumps(g)), *small_spiral[:2], epochs=40, val=small_spiral[2:],
                   resume=True)
    assert again.epochs == hist.epochs


def test_same_seed_same_run_other_seed_other_run(small_spiral):
    a, b, c = _net(), _net(), _net()
    _fit(a, small_spiral, epochs=2)
    _fit(b, small_spiral, epochs=2)
    _fit(c, small_spiral, epochs=2, seed=2)
    assert np.array_equal(a.params["W1"], b.params["W1"])
    assert not np.array_equal(a.params["W1"], c.params["W1"])


def test_predict_needs_no_labels_and_confusion_matrix_counts(small_spiral):
    X, y, _, _ = small_spiral
    g = _net()
    scores = gx.predict(g, X)
    assert scores.shape == (150, 3)
    np.testing.assert_array_equal(scores, gx.run(g, {"x": X, "y": y})["scores"])
    cm = confusion_matrix(g, X, y)
    assert cm.sum() == 150 and cm.sum(axis=1).tolist() == [50, 50, 50]
    assert np.trace(cm) / 150 == accuracy(g, X, y)


def test_progress_bar_goes_to_stderr_only_when_asked(small_spiral, capsys):
    _fit(_net(), small_spiral, epochs=2, progress=False)
    assert capsys.readouterr() == ("", "")
    _fit(_net(), small_spiral, epochs=2, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "epoch 2/2" in err and "20/20" in err


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"optimizer": "adam"}, "optimizer must be a graphexec.optim optimiser"),
    ({"early_stopping": 3, "val": None}, "early_stopping watches the validation accuracy"),
    ({"resume": True}, "resume=True, but graph 'mlp_2_16_3' has no training state"),
    ({"val": (np.zeros((4, 3)), np.zeros(4, int))},
     "val does not fit graph 'mlp_2_16_3': input 'x' expects shape (None, 2)"),
])
def test_bad_settings_are_refused(small_spiral, kwargs, message):
    with pytest.raises(TrainingError) as e:
        _fit(_net(), small_spiral, **kwargs)
    assert str(e.value).startswith(message)


def test_bad_data_is_refused(small_spiral):
    X, y, _, _ = small_spiral
    opt = {"epochs": 1, "batch_size": 8, "optimizer": Adam()}
    with pytest.raises(TrainingError, match=r"need X with N >= 1 rows and y of shape \(N,\)"):
        gx.fit(_net(), X, y[:-1], **opt)
    with pytest.raises(TrainingError, match=r"labels must lie in 0..2 \(the graph has 3 scores\)"):
        gx.fit(_net(), X, y + 1, **opt)
    with pytest.raises(TrainingError, match=r"expects float32, got a float64 array; convert it"):
        gx.fit(_net(dtype="float32"), X, y, **opt)
    with pytest.raises(TrainingError, match="outputs 'loss' and 'scores'"):
        gx.fit(gx.load(MODELS / "add_mul.gx"), X, y, **opt)


def test_resume_with_another_optimizer_is_refused(small_spiral):
    g = _net()
    _fit(g, small_spiral, epochs=1)
    with pytest.raises(TrainingError, match="trained with 'adam', not 'sgd'"):
        _fit(g, small_spiral, optimizer=SGD(lr=0.1), resume=True)


def test_checkpoint_folder_must_exist(small_spiral, tmp_path):
    with pytest.raises(TrainingError, match="its folder does not exist"):
        _fit(_net(), small_spiral, checkpoint=tmp_path / "nope" / "ck.gx")


def test_fit_defaults_are_the_cli_defaults(small_spiral):
    """Nothing but the data: Adam lr 1e-3, batch 64, 10 epochs, seed 0 (as graphexec train)."""
    X, y, _, _ = small_spiral
    g = _net()
    hist = gx.fit(g, X, y)
    spec = g.training.spec
    assert (spec["optimizer"], spec["optimizer.lr"], spec["batch_size"], spec["epochs"],
            spec["seed"]) == ("adam", 1e-3, 64, 10, 0)
    assert hist.epochs == 10 and g.training.state["step"] == 10 * 3  # 150 rows / 64
    h2 = _net()
    gx.fit(h2, X, y, epochs=10, batch_size=64, optimizer=Adam(lr=1e-3), seed=0)
    assert gx.dumps(g) == gx.dumps(h2)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_x_is_reported_before_training_with_the_first_bad_row(small_spiral, bad):
    X, y, _, _ = small_spiral
    X = X.copy()
    X[37, 1] = bad
    X[90, 0] = bad
    g = _net()
    before = gx.dumps(g)
    with pytest.raises(TrainingError) as e:
        gx.fit(g, X, y, epochs=1)
    assert str(e.value) == ("X, y: X must be finite, found NaN or infinity in 2 of 150 rows, the "
                            "first at row 37; drop or impute those rows before training")
    assert gx.dumps(g) == before  # not one step was taken


def test_labels_out_of_range_name_the_first_bad_row(small_spiral):
    X, y, _, _ = small_spiral
    y = y.copy()
    y[12] = 7
    with pytest.raises(TrainingError, match=r"found 0..7; the first bad label is y\[12\] = 7$"):
        gx.fit(_net(), X, y, epochs=1)
