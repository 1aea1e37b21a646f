"""``graphexec train``, ``graphexec evaluate`` and ``graphexec sweep``: training from the shell.

Every option left out comes from the graph file's training spec (see ``docs/training.md``),
so ``graphexec train models/spiral_mlp.gx --data spiral`` needs no other flag. The parsers are
in :mod:`graphexec.cli.train_parsers`, which imports this module (and the training stack) only
when one of these verbs runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
from typing import Any

import numpy as np

import graphexec as gx
from graphexec.cli.common import UsageError, emit_json
from graphexec.cli.predict import sweep_graphs
from graphexec.cli.resume import Tracker, check_resume, interrupted, total_epochs
from graphexec.graph import Graph
from graphexec.header import Training
from graphexec.plots import check_target
from graphexec.training import nn
from graphexec.training.checkpoint import History, TrainSpec, read_spec
from graphexec.training.data import load_dataset
from graphexec.training.optim import OPTIMIZERS, Optimizer, make_optimizer
from graphexec.training.train import DEFAULTS as FIT_DEFAULTS
from graphexec.training.train import EpochEnd, accuracy, confusion_matrix, fit, has_tqdm

__all__ = ["DEFAULTS", "cmd_evaluate", "cmd_sweep", "cmd_train"]

DEFAULTS = {**FIT_DEFAULTS, "val_split": 0.2, "data_seed": 0}


# ---------------------------------------------------------------------------- shared
def _data(spec: str, seed: int, val_split: float, g: Graph) -> tuple[np.ndarray, ...]:
    """The dataset's (Xtr, ytr, Xval, yval), X converted to the graph's input dtype, and its flat
    rows given the graph's example shape when ``x`` declares one of the same size (the digits'
    64 pixels as a (1, 8, 8) image for a convnet, CIFAR-10's 3072 as (3, 32, 32))."""
    Xtr, ytr, Xv, yv = load_dataset(spec, seed=seed, val_fraction=val_split)
    decl = next((d for d in g.input_decls if d.name == "x"), None)
    if decl is None:
        raise UsageError(f"graph {g.name!r} has no input 'x' (its inputs: {g.inputs}); train "
                         "and evaluate need inputs 'x' and 'y' and an output 'scores'")
    Xtr, Xv = _shaped(Xtr, decl.shape), _shaped(Xv, decl.shape)
    return Xtr.astype(decl.dtype), ytr, Xv.astype(decl.dtype), yv


def _shaped(X: np.ndarray, shape: tuple[int | None, ...] | None) -> np.ndarray:
    example = None if shape is None else shape[1:]
    if X.ndim != 2 or not example or len(example) < 2 or any(d is None for d in example):
        return X
    size = int(np.prod(example))  # type: ignore[arg-type]
    return X.reshape(len(X), *example) if X.shape[1] == size else X


def _extra(g: Graph, key: str, given: Any, kind: type) -> Any:
    """A data setting: the flag, else the file's spec, else the default."""
    if given is not None:
        return given
    stored = read_spec(g.training).extra.get(key)
    return stored if isinstance(stored, kind) and not isinstance(stored, bool) else DEFAULTS[key]


def _csv(text: str, kind: type, flag: str) -> list[Any]:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values):
        raise UsageError(f"{flag} expects comma-separated positive numbers such as "
                         f"{'3,6,20' if kind is int else '0.001,0.01,0.1'}, got {text!r}")
    return values


# ---------------------------------------------------------------------------- train
def _optimizer(args: argparse.Namespace, stored: TrainSpec) -> Optimizer | None:
    """The optimiser the flags ask for, or None to let fit use the file's spec (or Adam)."""
    if args.optimizer is None and args.lr is None and args.momentum is None:
        return None if stored.optimizer is not None else make_optimizer(
            FIT_DEFAULTS["optimizer"], lr=FIT_DEFAULTS["lr"])
    name = args.optimizer or stored.optimizer or FIT_DEFAULTS["optimizer"]
    if name not in OPTIMIZERS:
        raise UsageError(f"the file's spec names optimiser {name!r}, which is not installed; "
                         f"expected one of {sorted(OPTIMIZERS)}: pass --optimizer")
    hyper = dict(stored.hyperparams) if name == stored.optimizer else {
        "lr": OPTIMIZERS[name].default_lr}
    if args.lr is not None:
        hyper["lr"] = args.lr
    if args.momentum is not None:
        if name != "sgd":
            raise UsageError(f"--momentum is a setting of --optimizer sgd, not of {name!r}")
        hyper["momentum"] = args.momentum
    return make_optimizer(name, **hyper)


def _setting(given: int | None, stored: int | None, key: str) -> int | None:
    """The flag, else None when the file's spec sets it (fit reads it there), else the default."""
    if given is not None:
        return given
    return None if stored is not None else int(DEFAULTS[key])


def _record_data_settings(g: Graph, val_split: float, data_seed: int) -> None:
    """Keep the data settings in the spec, so that a later run (or evaluate) uses the same."""
    t = g.training or Training()
    g.training = dataclasses.replace(t, spec={**t.spec, "val_split": val_split,
                                              "data_seed": data_seed})


def _epoch_line(info: EpochEnd) -> None:
    """Progress without a terminal (logs): the first and last epoch and about ten between."""
    every = -(-info.epochs // 10)
    if info.epoch not in (1, info.epochs) and info.epoch % every:
        return
    val = "" if info.val_acc is None else f", val {info.val_acc:.2%}"
    print(f"epoch {info.epoch}/{info.epochs}: loss {info.loss:.4f}, train {info.train_acc:.2%}"
          f"{val}", file=sys.stderr)


def _default_output(path: str) -> str:
    return f"{pathlib.Path(path).stem}_trained.gx"


def _train_result(args: argparse.Namespace, g: Graph, hist: History, out: str,
                  train_acc: float | None) -> dict[str, Any]:
    return {"file": args.file, "data": args.data, "output": out, "epochs": hist.epochs,
            "loss": hist.loss[-1] if hist.loss else None,
            "train_acc": hist.train_acc[-1] if hist.train_acc else None,
            "val_acc": hist.val_acc[-1] if hist.val_acc else None,
            "best_epoch": hist.best_epoch, "best_val_acc": hist.best_val_acc,
            "kept_train_acc": train_acc, "stopped_early": hist.stopped_early,
            "history": {"loss": hist.loss, "train_acc": hist.train_acc,
                        "val_acc": hist.val_acc, "lr": hist.lr},
            "plot": args.plot}


def _report(args: argparse.Namespace, g: Graph, hist: History, out: str,
            train_acc: float | None) -> None:
    if args.json:
        emit_json(_train_result(args, g, hist, out, train_acc))
        return
    val = "" if not hist.val_acc else f", validation accuracy {hist.val_acc[-1]:.2%}"
    print(f"trained {hist.epochs} epochs: loss {hist.loss[-1]:.4f}, "
          f"train accuracy {hist.train_acc[-1]:.2%}{val}")
    if hist.best_epoch is not None:
        print(f"kept the parameters of epoch {hist.best_epoch} (best validation accuracy "
              f"{hist.best_val_acc:.2%}): train accuracy {train_acc:.2%}")
    if hist.stopped_early:
        print(f"stopped early: no better validation accuracy for "
              f"{read_spec(g.training).early_stopping} epochs")
    print(f"saved {out}")
    if args.plot:
        print(f"saved {args.plot}")


def cmd_train(args: argparse.Namespace) -> int:
    if args.plot:
        check_target(args.plot)  # before training, not after an hour of it
    g = gx.load(args.file)
    if args.reg is not None:
        g = nn.set_reg(g, args.reg)
    stored = read_spec(g.training)
    start = check_resume(args, g, stored, _optimizer(args, stored)) if args.resume else 0
    val_split = _extra(g, "val_split", args.val_split, float)
    data_seed = _extra(g, "data_seed", args.data_seed, int)
    Xtr, ytr, Xv, yv = _data(args.data, data_seed, val_split, g)
    _record_data_settings(g, val_split, data_seed)
    out = args.output or _default_output(args.file)
    bar = not args.no_progress and sys.stderr.isatty() and has_tqdm()
    tracker = Tracker()
    callbacks = [tracker] + ([] if args.no_progress or bar else [_epoch_line])
    try:
        hist = fit(g, Xtr, ytr, epochs=_setting(args.epochs, stored.epochs, "epochs"),
                   batch_size=_setting(args.batch_size, stored.batch_size, "batch_size"),
                   optimizer=_optimizer(args, stored), val=(Xv, yv) if len(yv) else None,
                   progress=bar, seed=args.seed, checkpoint=out, resume=args.resume,
                   callbacks=callbacks)
    except KeyboardInterrupt:
        return interrupted(args, out, start, tracker, total_epochs(args, stored))
    train_acc = accuracy(g, Xtr, ytr) if hist.best_epoch is not None else None
    if args.plot:
        from graphexec.plots import training_curves

        training_curves(hist, args.plot, title=f"{g.name} on {args.data}")
    _report(args, g, hist, out, train_acc)
    return 0


# ---------------------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    g = gx.load(args.file)
    val_split = _extra(g, "val_split", args.val_split, float)
    data_seed = _extra(g, "data_seed", args.data_seed, int)
    Xtr, ytr, Xv, yv = _data(args.data, data_seed, val_split, g)
    X, y = {"train": (Xtr, ytr), "val": (Xv, yv),
            "all": (np.concatenate([Xtr, Xv]), np.concatenate([ytr, yv]))}[args.split]
    if len(y) == 0:
        raise UsageError(f"the {args.split!r} split of {args.data!r} is empty (val split "
                         f"{val_split}); use --split train or a --val-split above 0")
    cm = confusion_matrix(g, X, y)
    correct = int(np.trace(cm))
    if args.json:
        emit_json({"file": args.file, "data": args.data, "split": args.split,
                   "examples": len(y), "correct": correct, "accuracy": correct / len(y),
                   "confusion": cm.tolist()})
        return 0
    print(f"{args.data} ({args.split}, {len(y)} examples): accuracy {correct / len(y):.2%} "
          f"({correct}/{len(y)})")
    print("confusion matrix (rows: true class, columns: predicted class):")
    width = max(3, len(str(cm.max())) + 1)
    print("     " + "".join(f"{j:>{width}}" for j in range(cm.shape[1])))
    for i, row in enumerate(cm):
        print(f"{i:>4} " + "".join(f"{v:>{width}}" for v in row))
    return 0


# ---------------------------------------------------------------------------- sweep
def cmd_sweep(args: argparse.Namespace) -> int:
    from graphexec.plots import Panel, decision_boundaries

    check_target(args.output)  # before training every net, not after
    hidden, regs = _csv(args.hidden, int, "--hidden"), _csv(args.reg, float, "--reg")
    probe = nn.mlp([2, 2], dtype=args.dtype)
    Xtr, ytr, Xv, yv = _data(args.data, args.data_seed, args.val_split, probe)
    if Xtr.shape[1] != 2:
        raise UsageError(f"sweep draws decision boundaries in the plane: it needs 2-D data "
                         f"such as --data spiral, but {args.data!r} has {Xtr.shape[1]} features")
    n_classes = int(max(ytr.max(), yv.max() if len(yv) else 0)) + 1
    panels, rows = [], []
    trained = sweep_graphs(args, hidden, regs, Xtr, ytr, n_classes)  # None: no --workers
    for h in hidden:
        for r in regs:
            if trained is not None:
                g = trained.pop(0)
            else:
                g = nn.mlp([2, h, n_classes], activation=args.activation, reg=r, seed=args.seed,
                           dtype=args.dtype)
                fit(g, Xtr, ytr, epochs=args.epochs, batch_size=args.batch_size,
                    optimizer=make_optimizer(args.optimizer, lr=args.lr), seed=args.seed)
            row = {"hidden": h, "reg": r, "train_acc": accuracy(g, Xtr, ytr),
                   "val_acc": accuracy(g, Xv, yv) if len(yv) else None}
            rows.append(row)
            panels.append(Panel(g, f"{h} hidden, reg {r:g}\ntrain accuracy "
                                   f"{row['train_acc']:.0%}"))
            if not args.json:
                val = "" if row["val_acc"] is None else f", validation {row['val_acc']:.2%}"
                print(f"hidden {h:>4}, reg {r:<8g}: train {row['train_acc']:.2%}{val}")
    decision_boundaries(panels, Xtr, ytr, args.output, ncols=len(regs),
                        title=f"2-layer {args.activation} nets on {args.data}: "
                              "hidden size (rows) and L2 strength (columns)")
    if args.json:
        emit_json({"data": args.data, "output": args.output, "runs": rows})
    else:
        print(f"saved {args.output}")
    return 0
