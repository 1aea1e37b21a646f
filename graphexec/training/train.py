"""The trainer: minibatch gradient descent on any graph with inputs ``x``, ``y`` and a scalar
``loss`` output (the CS231n ``Solver``).

One step per minibatch, no per-sample Python loop::

    out = ex.forward({"x": X[idx], "y": y[idx]}, outputs=["loss"])
    grads = ex.backward({"loss": 1.0}, wrt=list(g.params))     # never the data's gradient
    optimizer.step(g.params, grads)                             # in place

The trainer owns batching (seeded shuffling), epochs, the learning-rate schedule, history,
the best parameters and checkpoints; it never prints (a tqdm bar on stderr and callbacks
report progress).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphexec import inference
from graphexec.api import save
from graphexec.errors import GraphError, TrainingError
from graphexec.executor import Executor, check_input
from graphexec.graph import Graph
from graphexec.training.checkpoint import (
    History,
    TrainSpec,
    TrainState,
    read_spec,
    read_state,
    to_training,
)
from graphexec.training.checks import count
from graphexec.training.nn import get_reg
from graphexec.training.optim import Optimizer, make_optimizer
from graphexec.training.progress import has_tqdm, progress_bar, summary
from graphexec.training.schedules import Schedule, make_schedule

__all__ = ["DEFAULTS", "EpochEnd", "History", "TrainingError", "accuracy", "confusion_matrix", "fit",
           "has_tqdm", "predict", "predict_labels"]

EVAL_CHUNK = 4096  # rows per forward pass when measuring accuracy (bounds the memory)
#: What fit (and ``graphexec train``) use for a setting that neither the call nor the graph's
#: training spec gives.
DEFAULTS: dict[str, Any] = {"epochs": 10, "batch_size": 64, "optimizer": "adam", "lr": 1e-3,
                            "seed": 0}
Split = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class EpochEnd:
    """What a callback receives after each epoch (``epoch`` counts from 1)."""

    epoch: int
    epochs: int
    loss: float
    train_acc: float | None
    val_acc: float | None
    lr: float
    graph: Graph
    history: History


Callback = Callable[[EpochEnd], Any]


@dataclass
class _Run:
    """The resolved settings of one call to :func:`fit`."""

    spec: TrainSpec
    optimizer: Optimizer
    schedule: Schedule | None
    base_lr: float
    checkpoint: str | None
    callbacks: Sequence[Callback]


# ---------------------------------------------------------------------------- inference
def predict(g: Graph, X: np.ndarray, batch_size: int | None = None,
            output: str = "scores") -> np.ndarray:
    """Class scores (N, C) for ``X`` (N, D), in chunks: see :func:`graphexec.inference.predict`."""
    return inference.predict(g, X, batch_size=batch_size, output=output)


def predict_labels(g: Graph, X: np.ndarray) -> np.ndarray:
    """The class with the highest score for each row (N,), in chunks of 4096 rows."""
    parts = [predict(g, X[i:i + EVAL_CHUNK]).argmax(axis=1) for i in range(0, len(X), EVAL_CHUNK)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def accuracy(g: Graph, X: np.ndarray, y: np.ndarray) -> float:
    """Share of rows whose highest score is the label."""
    if len(y) == 0:
        raise TrainingError("accuracy needs at least one example, got none")
    return int((predict_labels(g, X) == y).sum()) / len(y)


def confusion_matrix(g: Graph, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Counts (C, C) int64: row = true class, column = predicted class (C = number of scores)."""
    pred = predict_labels(g, X)
    n = predict(g, X[:1]).shape[-1] if len(X) else 0
    if len(y) and (y.min() < 0 or y.max() >= n):
        raise TrainingError(f"labels must lie in 0..{n - 1} (the graph has {n} scores), "
                            f"found {y.min()}..{y.max()}")
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    return cm


# ---------------------------------------------------------------------------- settings
def _count(name: str, value: Any, low: int) -> int:
    return count(name, value, low, TrainingError)


def _pick(given: Any, stored: Any, what: str) -> Any:
    """The argument, else the graph's spec, else :data:`DEFAULTS`."""
    if given is not None:
        return given
    return stored if stored is not None else DEFAULTS[what]


def _resolve_optimizer(stored: TrainSpec, optimizer: Optimizer | None,
                       lr_schedule: Schedule | None) -> tuple[Optimizer, Schedule | None]:
    """The optimiser and schedule: the arguments, else rebuilt from the stored spec."""
    if optimizer is None:
        optimizer = (make_optimizer(stored.optimizer, **stored.hyperparams)
                     if stored.optimizer is not None
                     else make_optimizer(DEFAULTS["optimizer"], lr=DEFAULTS["lr"]))
    if not isinstance(optimizer, Optimizer):
        raise TrainingError(f"optimizer must be a graphexec.optim optimiser such as "
                            f"gx.optim.Adam(lr=1e-3), got {type(optimizer).__name__}")
    if lr_schedule is None and stored.schedule is not None:
        lr_schedule = make_schedule(stored.schedule)
    if lr_schedule is not None and not isinstance(lr_schedule, Schedule):
        raise TrainingError(f"lr_schedule must be a graphexec.optim schedule such as "
                            f"StepDecay(every=10, gamma=0.5), got {type(lr_schedule).__name__}")
    return optimizer, lr_schedule


def _resolve(g: Graph, epochs: int | None, batch_size: int | None, optimizer: Optimizer | None,
             seed: int | None, lr_schedule: Schedule | None, early_stopping: int | None,
             resume: bool) -> tuple[TrainSpec, Optimizer, Schedule | None]:
    """Each setting from the argument, else from the graph's training spec."""
    stored = read_spec(g.training)
    optimizer, lr_schedule = _resolve_optimizer(stored, optimizer, lr_schedule)
    patience = early_stopping if early_stopping is not None else stored.early_stopping
    if resume and stored.seed is not None:
        seed = stored.seed  # the stored generator state continues; keep its seed on record
    elif seed is None:
        seed = _pick(None, stored.seed, "seed")
    extra = dict(stored.extra)
    reg = get_reg(g)
    if reg is not None:
        extra["reg"] = reg  # on record only: the graph itself holds the strength
    spec = TrainSpec(
        optimizer=optimizer.name, hyperparams=optimizer.hyperparams(),
        epochs=_count("epochs", _pick(epochs, stored.epochs, "epochs"), 1),
        batch_size=_count("batch_size", _pick(batch_size, stored.batch_size, "batch_size"), 1),
        seed=_count("seed", seed, 0),
        schedule=None if lr_schedule is None else lr_schedule.to_config(),
        early_stopping=None if patience is None else _count("early_stopping", patience, 1),
        extra=extra)
    return spec, optimizer, lr_schedule


# ---------------------------------------------------------------------------- data
def _check_graph(g: Graph) -> None:
    missing = [n for n in ("x", "y") if n not in g.inputs]
    if missing or "loss" not in g.outputs or "scores" not in g.outputs:
        raise TrainingError(
            f"fit needs a graph with inputs 'x' and 'y' and outputs 'loss' and 'scores' "
            f"(build one with gx.nn.mlp); graph {g.name!r} has inputs {g.inputs} and outputs "
            f"{g.outputs}")


def _check_split(g: Graph, X: Any, y: Any, what: str) -> Split:
    decls = {d.name: d for d in g.input_decls}
    try:
        X, y = check_input(decls["x"], X), check_input(decls["y"], y)
    except GraphError as e:
        raise TrainingError(f"{what} does not fit graph {g.name!r}: {e}") from e
    if y.ndim != 1 or X.ndim < 1 or len(X) != len(y) or len(y) == 0:
        raise TrainingError(f"{what}: need X with N >= 1 rows and y of shape (N,), got X "
                            f"{X.shape} and y {y.shape}")
    _check_finite(X, what)
    n_classes = predict(g, X[:1]).shape[-1]
    bad = (y < 0) | (y >= n_classes)
    if bad.any():
        row = int(np.argmax(bad))
        raise TrainingError(f"{what}: labels must lie in 0..{n_classes - 1} (the graph has "
                            f"{n_classes} scores), found {y.min()}..{y.max()}; the first bad "
                            f"label is y[{row}] = {y[row]}")
    return X, y


def _check_finite(X: np.ndarray, what: str) -> None:
    """NaN or infinity in X would only show up as a NaN loss epochs later: name the row now."""
    if X.dtype.kind != "f" or X.size == 0:
        return
    first, count = None, 0
    for start in range(0, len(X), EVAL_CHUNK):  # bounded temporary memory
        chunk = X[start:start + EVAL_CHUNK]
        bad = ~np.isfinite(chunk.reshape(len(chunk), -1)).all(axis=1)
        count += int(bad.sum())
        if first is None and bad.any():
            first = start + int(np.argmax(bad))
    if first is not None:
        raise TrainingError(f"{what}: X must be finite, found NaN or infinity in {count} of "
                            f"{len(X)} rows, the first at row {first}; drop or impute those "
                            "rows before training")


def _check_val(g: Graph, val: Any) -> Split | None:
    if val is None:
        return None
    if not isinstance(val, (tuple, list)) or len(val) != 2:
        raise TrainingError(f"val must be a pair (X_val, y_val), got {type(val).__name__}")
    return _check_split(g, val[0], val[1], "val")


def _check_run(g: Graph, X: Any, y: Any, val: Any, spec: TrainSpec,
               checkpoint: str | os.PathLike[str] | None,
               callbacks: Sequence[Callback]) -> tuple[Split, Split | None]:
    """Everything fit can check before the first step; returns the checked data."""
    _check_graph(g)
    if checkpoint is not None and not os.path.isdir(os.path.dirname(os.path.abspath(checkpoint))):
        raise TrainingError(f"checkpoint {os.fspath(checkpoint)!r}: its folder does not exist")
    data, val_ = _check_split(g, X, y, "X, y"), _check_val(g, val)
    if spec.early_stopping is not None and val_ is None:
        raise TrainingError("early_stopping watches the validation accuracy: pass val=(X, y)")
    if any(not callable(cb) for cb in callbacks):
        raise TrainingError("callbacks must be a sequence of callables taking an EpochEnd")
    return data, val_


# ---------------------------------------------------------------------------- state
def _start(g: Graph, spec: TrainSpec, optimizer: Optimizer, resume: bool) -> TrainState:
    """A fresh run, or the stored one with its optimiser state and parameters restored."""
    if not resume:
        optimizer.load_state_arrays({})
        return TrainState(rng=np.random.default_rng(spec.seed))
    state = read_state(g.training)
    if state is None:
        raise TrainingError(f"resume=True, but graph {g.name!r} has no training state (it was "
                            "never trained by fit); pass resume=False to start a new run")
    stored = read_spec(g.training).optimizer
    if stored is not None and stored != optimizer.name:
        raise TrainingError(f"cannot resume: the checkpoint was trained with {stored!r}, not "
                            f"{optimizer.name!r}; pass optimizer=None to use the stored one")
    optimizer.load_state_arrays(state.optim_state)
    if state.last_params is not None:  # the graph holds the best parameters: go on from the last
        _assign(g, state.last_params)
        state.last_params = None
    return state


def _snapshot(g: Graph) -> dict[str, np.ndarray]:
    """Copies of the parameters and buffers (names are unique across both)."""
    return {k: v.copy() for k, v in (*g.params.items(), *g.buffers.items())}


def _own_trainable(g: Graph) -> None:
    """Copy on first write: each read-only trainable parameter (a view of a file loaded with
    ``mmap=True``) becomes a writable copy before the optimiser first updates it in place.
    Frozen parameters stay shared with the map; so do buffers (a training-mode run replaces
    them rather than writing into them)."""
    for name in g.trainable:
        if not g.params[name].flags.writeable:
            g.params[name] = g.params[name].copy()


def _assign(g: Graph, values: dict[str, np.ndarray]) -> None:
    """Copy ``values`` into the graph's parameter arrays (in place; a read-only one, a frozen
    parameter still mapped from its file, is kept if equal, else replaced) and buffers."""
    for name, w in (*g.params.items(), *g.buffers.items()):
        if name not in values or values[name].shape != w.shape or values[name].dtype != w.dtype:
            raise TrainingError(f"stored parameters do not match the graph at {name!r}")
        if name not in g.params:
            g.buffers[name] = values[name].copy()
        elif w.flags.writeable:
            w[...] = values[name]
        elif not np.array_equal(w, values[name]):
            g.params[name] = values[name].copy()


def _checkpoint(g: Graph, run_: _Run, state: TrainState) -> None:
    state.optim_state = run_.optimizer.state_arrays()
    g.training = to_training(run_.spec, state)
    if run_.checkpoint is not None:
        save(g, run_.checkpoint)


# ---------------------------------------------------------------------------- the loop
def _train_epoch(ex: Executor, g: Graph, run_: _Run, data: Split, state: TrainState,
                 bar: Any) -> tuple[float, float]:
    """One pass over the shuffled data; returns (learning rate, mean minibatch loss)."""
    X, y = data
    lr = run_.base_lr if run_.schedule is None else run_.schedule.lr_at(run_.base_lr, state.epoch)
    run_.optimizer.lr = lr
    bs = run_.spec.batch_size or 1
    perm = state.rng.permutation(len(y))
    wrt, steps, losses = g.trainable, -(-len(y) // bs), []
    params = {k: g.params[k] for k in wrt}  # frozen parameters never reach the optimizer
    seed = run_.spec.seed or 0
    for k, start in enumerate(range(0, len(y), bs)):
        idx = perm[start:start + bs]
        # Training mode: dropout masks are a pure function of (seed, global step, node).
        out = ex.forward({"x": X[idx], "y": y[idx]}, outputs=["loss"], training=True,
                         seed=seed, step=state.step)
        loss = float(out["loss"])
        if not math.isfinite(loss):
            raise TrainingError(
                f"the loss became {loss} at epoch {state.epoch + 1}, step {k + 1} of {steps} "
                f"(lr {lr:g}); lower the learning rate or the initial weights. The last "
                f"checkpoint (end of epoch {state.epoch}) is intact")
        run_.optimizer.step(params, ex.backward({"loss": 1.0}, wrt=wrt))
        losses.append(loss)
        state.step += 1
        bar.update(1)
    return lr, float(np.mean(losses))


def _end_epoch(g: Graph, run_: _Run, data: Split, val: Split | None, state: TrainState,
               lr: float, loss: float) -> EpochEnd:
    """Measure, keep the best parameters, decide on early stopping, checkpoint, call back."""
    h = state.history
    train_acc = accuracy(g, *data)
    val_acc = None if val is None else accuracy(g, *val)
    state.epoch += 1
    h.loss.append(loss)
    h.train_acc.append(train_acc)
    h.lr.append(lr)
    if val_acc is not None:
        h.val_acc.append(val_acc)
        if h.best_val_acc is None or val_acc > h.best_val_acc:
            h.best_epoch, h.best_val_acc = state.epoch, val_acc
            state.best_params = _snapshot(g)
        patience = run_.spec.early_stopping
        if patience is not None and state.epoch - (h.best_epoch or 0) >= patience:
            h.stopped_early = True
    _checkpoint(g, run_, state)
    info = EpochEnd(state.epoch, run_.spec.epochs or 0, loss, train_acc, val_acc, lr, g, h)
    for cb in run_.callbacks:
        cb(info)
    return info


def _finish(g: Graph, run_: _Run, state: TrainState) -> None:
    """Restore the best validation parameters (keeping the last ones to resume from)."""
    h = state.history
    if state.best_params is not None and h.best_epoch != state.epoch:
        state.last_params = _snapshot(g)
        _assign(g, state.best_params)
    _checkpoint(g, run_, state)
    run_.optimizer.lr = run_.base_lr


def fit(g: Graph, X: np.ndarray, y: np.ndarray, *, epochs: int | None = None,
        batch_size: int | None = None, optimizer: Optimizer | None = None,
        val: tuple[np.ndarray, np.ndarray] | None = None, progress: bool | None = False,
        seed: int | None = None, checkpoint: str | os.PathLike[str] | None = None,
        resume: bool = False, lr_schedule: Schedule | None = None,
        early_stopping: int | None = None, callbacks: Sequence[Callback] = ()) -> History:
    """Train ``g`` in place by minibatch gradient descent on its ``loss`` output.

    Every setting left as None is taken from the graph's training spec (see
    ``docs/training.md``), so a graph file can say how it is trained.

    Args:
        g: A graph with inputs ``x`` (N, ...) and ``y`` (N,) int and outputs ``loss`` (scalar)
            and ``scores`` (N, C), e.g. from :func:`graphexec.nn.mlp`. Its parameters are
            updated in place (a read-only one, from ``gx.load(path, mmap=True)``, is first
            replaced by a copy); at the end ``g.training`` holds the run (a checkpoint).
        X: Training examples, dtype of the graph's ``x`` (no silent casts).
        y: Integer labels in 0..C-1, shape (N,).
        epochs: Total number of epochs (on resume: including those already done). Every
            setting left as None and not in the graph's spec takes :data:`DEFAULTS`: 10
            epochs, batch 64, Adam lr 1e-3, seed 0 (the defaults of ``graphexec train``).
        batch_size: Examples per step; the last batch of an epoch may be smaller.
        optimizer: A :mod:`graphexec.optim` optimiser; its ``lr`` is the base learning rate.
            Its state is reset on a fresh run and loaded from the checkpoint on resume.
        val: ``(X_val, y_val)``: accuracy after each epoch; the parameters of the epoch with
            the best validation accuracy are restored at the end (as CS231n's Solver does),
            and early stopping watches it. Without ``val`` the last parameters are kept.
        progress: True: a tqdm bar on stderr; False: none; None: only if stderr is a terminal.
        seed: Seed of the generator that shuffles the data each epoch (default 0). On resume
            the stored generator state continues instead.
        checkpoint: Path of a ``.gx`` file written atomically after each epoch and at the end.
        resume: Continue the run stored in ``g.training`` up to ``epochs`` in total: the result
            is bit-identical to one unbroken run.
        lr_schedule: Learning rate per epoch, e.g. ``StepDecay(every=10, gamma=0.5)``.
        early_stopping: Stop after this many epochs without a better validation accuracy.
        callbacks: Called with an :class:`EpochEnd` after each epoch (and its checkpoint).

    Returns:
        The :class:`History` (loss, train_acc, val_acc, lr per epoch; best epoch).

    Raises:
        TrainingError: Bad settings or data, nothing to resume, or a loss that is not finite
            (naming the epoch and step; the last checkpoint stays intact).
    """
    spec, opt, sched = _resolve(g, epochs, batch_size, optimizer, seed, lr_schedule,
                                early_stopping, resume)
    data, val_ = _check_run(g, X, y, val, spec, checkpoint, callbacks)
    _own_trainable(g)
    state = _start(g, spec, opt, resume)
    run_ = _Run(spec, opt, sched, opt.lr, None if checkpoint is None else os.fspath(checkpoint),
                list(callbacks))
    ex = Executor(g)
    total = spec.epochs or 0
    steps = -(-len(data[1]) // (spec.batch_size or 1))
    with progress_bar(progress, total * steps, min(state.epoch, total) * steps) as bar:
        while state.epoch < total and not state.history.stopped_early:
            bar.set_description(f"epoch {state.epoch + 1}/{total}")
            lr, loss = _train_epoch(ex, g, run_, data, state, bar)
            info = _end_epoch(g, run_, data, val_, state, lr, loss)
            bar.set_postfix_str(summary(info))
    _finish(g, run_, state)
    return state.history
