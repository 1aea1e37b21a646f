"""The parsers of ``graphexec train``, ``evaluate`` and ``sweep``; the verbs are in
:mod:`graphexec.cli.train`.

This module stays light so that ``graphexec --help`` lists these verbs without importing numpy
or the training stack. The options whose help quotes the training stack (the optimisers, the
activations, fit's defaults) are added when their parser is first used, and the verbs' module
is imported when one of them runs.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

from graphexec.cli.predict import add_cluster_flags

__all__ = ["register"]

DATA_HELP = "spiral, digits, a .npz file with arrays x and y, or CIFAR-10 binary .bin file(s)"


def _verb(name: str) -> Callable[[argparse.Namespace], int]:
    """``graphexec.cli.train.<name>``, imported when the verb runs."""
    def run(args: argparse.Namespace) -> int:
        return int(getattr(importlib.import_module("graphexec.cli.train"), name)(args))
    return run


def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--val-split", type=float, help="share held out for validation "
                   "(default: the file's spec, else 0.2; spiral draws a fresh spiral instead)")
    p.add_argument("--data-seed", type=int, help="seed of the split / of the spiral "
                   "(default: the file's spec, else 0)")


def _train_options(p: argparse.ArgumentParser) -> None:
    from graphexec.training.optim import OPTIMIZERS
    from graphexec.training.train import DEFAULTS

    p.add_argument("file", help="a .gx graph with inputs x, y and outputs loss, scores")
    _data_flags(p)
    p.add_argument("-o", "--output", help="trained graph, also checkpointed after each epoch "
                   "(default: FILE's name + _trained.gx, in the current folder)")
    p.add_argument("--epochs", type=int, help="total number of epochs, on --resume too "
                   f"(default: the file's spec, else {DEFAULTS['epochs']})")
    p.add_argument("--batch-size", type=int, help="examples per step (default: the file's "
                   f"spec, else {DEFAULTS['batch_size']})")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), help="update rule (default: "
                   f"the file's spec, else {DEFAULTS['optimizer']})")
    p.add_argument("--lr", type=float, help="base learning rate (default: the file's spec, "
                   f"else {', '.join(f'{k} {c.default_lr:g}' for k, c in sorted(OPTIMIZERS.items()))})")
    p.add_argument("--momentum", type=float, help="momentum of --optimizer sgd (default: the "
                   "file's spec, else 0)")
    p.add_argument("--reg", type=float, help="L2 strength (graphs built by graphexec.nn; "
                   "default: the graph's own)")
    p.add_argument("--seed", type=int, help="seed of the shuffling (default: the file's "
                   f"spec, else {DEFAULTS['seed']})")
    p.add_argument("--resume", action="store_true", help="continue the run stored in FILE "
                   "(same data settings; up to --epochs in total)")
    p.add_argument("--plot", metavar="PNG", help="draw loss and accuracy per epoch "
                   "(needs matplotlib; checked before training)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    p.add_argument("--json", action="store_true", help="print one JSON object: the result "
                   "and the history")


def _sweep_options(p: argparse.ArgumentParser) -> None:
    from graphexec.training import nn
    from graphexec.training.optim import OPTIMIZERS

    p.add_argument("--data", required=True, help="2-D data: spiral or a .npz file")
    p.add_argument("--hidden", default="3,6,20", help="hidden sizes, comma-separated")
    p.add_argument("--reg", default="0.001,0.01,0.1", help="L2 strengths, comma-separated")
    p.add_argument("-o", "--output", required=True, help="figure file (.png, .svg, .pdf); "
                   "matplotlib and its folder are checked before training")
    p.add_argument("--activation", default="relu", choices=sorted(nn.ACTIVATIONS),
                   help="hidden-layer activation")
    p.add_argument("--epochs", type=int, default=100, help="epochs per net")
    p.add_argument("--batch-size", type=int, default=32, help="examples per step")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam",
                   help="update rule")
    p.add_argument("--lr", type=float, default=1e-2, help="learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and shuffling")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="dtype of the nets and the data")
    p.add_argument("--val-split", type=float, default=0.2, help="share held out for "
                   "validation (spiral draws a fresh spiral instead)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the split / the spiral")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_cluster_flags(p)


def register(sub: Any) -> None:
    """Add ``train``, ``evaluate`` and ``sweep`` to the ``graphexec`` subcommands (their
    parsers are :class:`graphexec.cli.main.Parser`, which adds deferred options on first use)."""
    p = sub.add_parser("train", help="train a graph on a dataset and save it",
                       description="Train FILE (for example an untrained graph from models/). "
                       "Options left out come from the file's training spec, else from the "
                       "defaults shown. Ctrl-C stops after saying how to resume (exit 130).")
    p.defer(_train_options)
    p.set_defaults(func=_verb("cmd_train"))
    p = sub.add_parser("evaluate", help="accuracy and confusion matrix of a trained graph")
    p.add_argument("file", help="a trained .gx classifier")
    _data_flags(p)
    p.add_argument("--split", choices=("val", "train", "all"), default="val",
                   help="which part of the data (default: val, the held-out part)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_verb("cmd_evaluate"))
    p = sub.add_parser("sweep", help="train 2-layer nets over hidden sizes and L2 strengths and "
                       "draw their decision boundaries")
    p.defer(_sweep_options)
    p.set_defaults(func=_verb("cmd_sweep"))
