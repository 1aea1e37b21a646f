"""``graphexec train --resume`` and Ctrl-C: the checks before a resumed run, and the one line
that says where an interrupted run stopped and which command goes on."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass

from graphexec.checkpoint import TrainSpec, read_state
from graphexec.cli.common import UsageError, emit_json
from graphexec.errors import GraphexecError
from graphexec.fileformat import read_header
from graphexec.graph import Graph
from graphexec.optim import Optimizer
from graphexec.train import DEFAULTS, EpochEnd

__all__ = ["Tracker", "check_resume", "interrupted", "total_epochs"]


@dataclass
class Tracker:
    """The last epoch whose checkpoint this run has written (a callback keeps it)."""

    epoch: int | None = None

    def __call__(self, info: EpochEnd) -> None:
        self.epoch = info.epoch


def total_epochs(args: argparse.Namespace, stored: TrainSpec) -> int:
    return int(args.epochs or stored.epochs or DEFAULTS["epochs"])


def check_resume(args: argparse.Namespace, g: Graph, stored: TrainSpec,
                 opt: Optimizer | None) -> int:
    """Before a resumed run: refuse other data settings or nothing left to do, warn about
    changed optimiser settings (``opt``: the one the flags ask for), and say where the run goes
    on. Returns the stored epoch."""
    state = read_state(g.training)
    if state is None:
        return 0  # fit refuses it, saying why
    total = total_epochs(args, stored)
    for key, flag in (("val_split", "--val-split"), ("data_seed", "--data-seed")):
        given, was = getattr(args, key), stored.extra.get(key)
        if given is not None and was is not None and given != was:
            raise UsageError(f"cannot resume with {flag} {given}: the checkpoint's run used "
                             f"{flag} {was}, so it would go on with other data; drop {flag} "
                             "to continue it, or leave out --resume to start a new run")
    if state.history.stopped_early:
        raise UsageError(f"{args.file}: the run stopped early at epoch {state.epoch} (no better "
                         "validation accuracy); nothing to resume; leave out --resume to "
                         "fine-tune it in a new run")
    if state.epoch >= total:
        raise UsageError(f"{args.file} already holds epoch {state.epoch} of {total}: nothing to "
                         f"resume; pass --epochs N with N > {state.epoch} (the total) to train "
                         "further")
    _warn_changed(args, stored, opt)
    print(f"resuming at epoch {state.epoch + 1} of {total}", file=sys.stderr)
    return state.epoch


def _warn_changed(args: argparse.Namespace, stored: TrainSpec, opt: Optimizer | None) -> None:
    """Changed optimiser settings are allowed on resume, but the run is no longer one run."""
    changes = []
    if opt is not None and opt.name == stored.optimizer:
        hyper = opt.hyperparams()
        changes += [f"{k} {stored.hyperparams.get(k)!r} -> {v!r}" for k, v in sorted(
            hyper.items()) if stored.hyperparams.get(k) != v]
    if args.batch_size is not None and stored.batch_size not in (None, args.batch_size):
        changes.append(f"batch size {stored.batch_size} -> {args.batch_size}")
    if args.seed is not None and stored.seed not in (None, args.seed):
        changes.append(f"--seed {args.seed} ignored (the stored shuffling continues)")
    if changes:
        print(f"warning: resuming with other settings than the checkpoint's run: "
              f"{'; '.join(changes)}; the result will differ from one unbroken run",
              file=sys.stderr)


def _stored_epoch(path: str) -> int | None:
    """The epoch a checkpoint file holds, from its header (None if it cannot be read)."""
    try:
        t = read_header(path).training
    except (GraphexecError, OSError):
        return None
    epoch = None if t is None else t.state.get("epoch")
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None


def interrupted(args: argparse.Namespace, out: str, start: int, tracker: Tracker,
                 total: int) -> int:
    """Ctrl-C: one line saying where the run stopped and the command that goes on."""
    source = out if tracker.epoch is not None else (args.file if args.resume else None)
    held = None if source is None else _stored_epoch(source)
    running = (tracker.epoch if tracker.epoch is not None else start) + 1
    cmd = None
    if source is not None and held is not None:
        cmd = shlex.join(["graphexec", "train", source, "--data", args.data, "--resume",
                          "--epochs", str(total), "-o", out,
                          *(["--plot", args.plot] if args.plot else []),
                          *(["--no-progress"] if args.no_progress else [])])
    if args.json:
        emit_json({"interrupted": True, "epoch": running, "epochs": total,
                   "checkpoint": source if held is not None else None,
                   "checkpoint_epoch": held, "resume": cmd})
    elif cmd is not None:
        print(f"interrupted during epoch {running} of {total}; {source} holds epoch {held}; "
              f"resume with: {cmd}", file=sys.stderr)
    else:
        print(f"interrupted during epoch {running} of {total}, before the first checkpoint: "
              "nothing was saved; run the same command again to start over", file=sys.stderr)
    return 130
