"""The training section of a ``.gx`` file: how to train (spec) and where a run stopped (state).

A checkpoint is an ordinary graph file whose :class:`~graphexec.graph.Training` section holds
plain values (the file format allows scalars and lists, no nested maps, so keys are flat and
dotted) and arrays::

    spec    optimizer, optimizer.<hyperparameter>..., epochs, batch_size, seed,
            schedule, schedule.<key>..., early_stopping, plus keys fit does not own
            (reg, val_split, data_seed), kept as they are
    state   epoch, step, params ("last" or "best"), stopped_early,
            history.loss / .train_acc / .val_acc / .lr (one entry per epoch),
            best.epoch, best.val_acc,
            rng.bit_generator, rng.state, rng.inc (PCG64's 128-bit integers as hex strings),
            rng.has_uint32, rng.uinteger
    tensors optim.<state>:<param>   the optimiser's state arrays (velocity, m, v, t, cache)
            best.<param>            the parameters of the best validation epoch
            last.<param>            the parameters to continue from, when the graph's own
                                    parameters are the best ones (params == "best")

Nothing is pickled: every value is a number, a string, a list or a raw tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from graphexec.errors import GraphFileError
from graphexec.header import Training

__all__ = ["History", "TrainSpec", "TrainState", "read_spec", "read_state", "to_training"]

T = TypeVar("T")
OWNED_SPEC_KEYS = ("optimizer", "epochs", "batch_size", "seed", "schedule", "early_stopping")


@dataclass
class History:
    """What ``fit`` measured, one entry per epoch.

    Attributes:
        loss: Mean training loss over the epoch's minibatches.
        train_acc: Accuracy on the training set after the epoch.
        val_acc: Accuracy on the validation set after the epoch (empty without ``val``).
        lr: Learning rate used during the epoch.
        best_epoch: The epoch (1-based) whose parameters were kept (None without ``val``).
        best_val_acc: Its validation accuracy.
        stopped_early: True if early stopping ended the run.
    """

    loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_acc: float | None = None
    stopped_early: bool = False

    @property
    def epochs(self) -> int:
        """Number of epochs trained so far."""
        return len(self.loss)


@dataclass(frozen=True)
class TrainSpec:
    """How to train; every field may be unset (None) and is then chosen by the caller."""

    optimizer: str | None = None
    hyperparams: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    batch_size: int | None = None
    seed: int | None = None
    schedule: dict[str, Any] | None = None
    early_stopping: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_attrs(self) -> dict[str, Any]:
        """The flat ``spec`` dict of a file's training section."""
        out: dict[str, Any] = dict(self.extra)
        if self.optimizer is not None:
            out["optimizer"] = self.optimizer
            out.update({f"optimizer.{k}": _plain(v) for k, v in self.hyperparams.items()})
        for key in ("epochs", "batch_size", "seed", "early_stopping"):
            if getattr(self, key) is not None:
                out[key] = int(getattr(self, key))
        if self.schedule is not None:
            out["schedule"] = self.schedule["name"]
            out.update({f"schedule.{k}": _plain(v) for k, v in self.schedule.items()
                        if k != "name"})
        return out


@dataclass
class TrainState:
    """Where a run stopped: enough to continue it bit for bit."""

    rng: np.random.Generator
    epoch: int = 0
    step: int = 0
    history: History = field(default_factory=History)
    optim_state: dict[str, np.ndarray] = field(default_factory=dict)
    best_params: dict[str, np.ndarray] | None = None
    last_params: dict[str, np.ndarray] | None = None  # set when the graph holds the best ones


# ---------------------------------------------------------------------------- writing
def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _rng_attrs(rng: np.random.Generator) -> dict[str, Any]:
    st = rng.bit_generator.state
    if st["bit_generator"] != "PCG64":
        raise GraphFileError(f"cannot checkpoint a {st['bit_generator']} generator; use "
                             "np.random.default_rng (PCG64)")
    return {"rng.bit_generator": "PCG64", "rng.state": hex(st["state"]["state"]),
            "rng.inc": hex(st["state"]["inc"]), "rng.has_uint32": int(st["has_uint32"]),
            "rng.uinteger": int(st["uinteger"])}


def _history_attrs(h: History) -> dict[str, Any]:
    return {"history.loss": [float(v) for v in h.loss],
            "history.train_acc": [float(v) for v in h.train_acc],
            "history.val_acc": [float(v) for v in h.val_acc],
            "history.lr": [float(v) for v in h.lr],
            "best.epoch": h.best_epoch, "best.val_acc": h.best_val_acc,
            "stopped_early": bool(h.stopped_early)}


def to_training(spec: TrainSpec, state: TrainState) -> Training:
    """The training section for a graph file (arrays are copied)."""
    attrs = {"epoch": int(state.epoch), "step": int(state.step),
             "params": "best" if state.last_params is not None else "last",
             **_history_attrs(state.history), **_rng_attrs(state.rng)}
    tensors = {f"optim.{k}": np.array(v) for k, v in sorted(state.optim_state.items())}
    for prefix, group in (("best", state.best_params), ("last", state.last_params)):
        tensors.update({f"{prefix}.{k}": np.array(v) for k, v in (group or {}).items()})
    return Training(spec=spec.to_attrs(), state=attrs, tensors=tensors)


# ---------------------------------------------------------------------------- reading
def _get(d: Mapping[str, Any], key: str, check: Callable[[Any], bool], want: str,
         default: Any = None, *, section: str) -> Any:
    v = d.get(key)
    if v is None:  # absent, or written as None (nil): unset
        return default
    if not check(v):
        raise GraphFileError(f"training section: {section} {key!r} must be {want}, got {v!r}")
    return v


def _is_int(lo: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= lo


def read_spec(t: Training | None) -> TrainSpec:
    """The spec stored in a training section (an empty spec for a graph without one).

    Raises:
        GraphFileError: If a key the trainer owns has the wrong type.
    """
    if t is None:
        return TrainSpec()
    s = t.spec
    opt = _get(s, "optimizer", lambda v: isinstance(v, str), "a string", section="spec")
    sched = _get(s, "schedule", lambda v: isinstance(v, str), "a string", section="spec")
    owned = set(OWNED_SPEC_KEYS) | {k for k in s if k.startswith(("optimizer.", "schedule."))}
    return TrainSpec(
        optimizer=opt,
        hyperparams={k[10:]: v for k, v in s.items() if k.startswith("optimizer.")},
        epochs=_get(s, "epochs", _is_int(1), "an integer >= 1", section="spec"),
        batch_size=_get(s, "batch_size", _is_int(1), "an integer >= 1", section="spec"),
        seed=_get(s, "seed", _is_int(0), "an integer >= 0", section="spec"),
        schedule=None if sched is None else {"name": sched, **{
            k[9:]: v for k, v in s.items() if k.startswith("schedule.")}},
        early_stopping=_get(s, "early_stopping", _is_int(1), "an integer >= 1", section="spec"),
        extra={k: v for k, v in s.items() if k not in owned},
    )


def _read_rng(s: Mapping[str, Any]) -> np.random.Generator:
    if s.get("rng.bit_generator") != "PCG64":
        raise GraphFileError(f"training section: state 'rng.bit_generator' must be 'PCG64', "
                             f"got {s.get('rng.bit_generator')!r}")
    try:
        inner = {"state": int(s["rng.state"], 16), "inc": int(s["rng.inc"], 16)}
        bg = np.random.PCG64()
        bg.state = {"bit_generator": "PCG64", "state": inner,  # type: ignore[typeddict-item]
                    "has_uint32": int(s["rng.has_uint32"]), "uinteger": int(s["rng.uinteger"])}
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise GraphFileError(f"training section: bad RNG state ({type(e).__name__}: {e}); "
                             "expected hex strings rng.state and rng.inc") from e
    return np.random.Generator(bg)


def _floats(s: Mapping[str, Any], key: str) -> list[float]:
    def ok(v: Any) -> bool:
        return isinstance(v, list) and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)

    return [float(x) for x in _get(s, key, ok, "a list of numbers", [], section="state")]


def _read_history(s: Mapping[str, Any]) -> History:
    h = History(loss=_floats(s, "history.loss"), train_acc=_floats(s, "history.train_acc"),
                val_acc=_floats(s, "history.val_acc"), lr=_floats(s, "history.lr"),
                best_epoch=_get(s, "best.epoch", _is_int(1), "an integer >= 1", section="state"),
                best_val_acc=_get(s, "best.val_acc", lambda v: isinstance(v, float),
                                  "a float", section="state"),
                stopped_early=_get(s, "stopped_early", lambda v: isinstance(v, bool),
                                   "true or false", False, section="state"))
    return h


def _prefixed(tensors: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray] | None:
    found = {k[len(prefix):]: np.array(v) for k, v in tensors.items() if k.startswith(prefix)}
    return found or None


def read_state(t: Training | None) -> TrainState | None:
    """The run state stored in a training section, or None if the graph was never trained.

    Raises:
        GraphFileError: If the state is malformed (wrong types, epoch and history disagree).
    """
    if t is None or not t.state:
        return None
    s = t.state
    epoch = _get(s, "epoch", _is_int(0), "an integer >= 0", section="state")
    if epoch is None:
        raise GraphFileError("training section: state has no 'epoch'")
    history = _read_history(s)
    if history.epochs != epoch:
        raise GraphFileError(f"training section: state 'epoch' is {epoch} but the history has "
                             f"{history.epochs} entries")
    which = _get(s, "params", lambda v: v in ("best", "last"), "'best' or 'last'", "last",
                 section="state")
    last = _prefixed(t.tensors, "last.")
    if which == "best" and last is None:
        raise GraphFileError("training section: params are 'best' but no 'last.*' tensors "
                             "to continue from")
    return TrainState(
        rng=_read_rng(s), epoch=epoch,
        step=_get(s, "step", _is_int(0), "an integer >= 0", 0, section="state"),
        history=history,
        optim_state=_prefixed(t.tensors, "optim.") or {},
        best_params=_prefixed(t.tensors, "best."),
        last_params=last if which == "best" else None,
    )
