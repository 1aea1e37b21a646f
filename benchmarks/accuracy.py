"""Accuracy of the training stack on the lecture's problems (issue 4, "Done when").

Run from the repository root::

    python benchmarks/accuracy.py            # every row, 5 digits splits (about 2 minutes)
    python benchmarks/accuracy.py --splits 2 # quicker

Each digits row trains on the training part of a stratified 80/20 split and measures the
held-out 20%, which the run never sees (no early stopping or best-epoch choice on it); the
row gives the mean and the worst of the splits (seeds 0, 1, ...). The spiral rows train the
shipped ``models/spiral_mlp.gx`` with its own training spec, exactly as
``graphexec train models/spiral_mlp.gx --data spiral`` does, and measure a third, freshly
drawn spiral that played no part in training or in choosing the best epoch.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import graphexec as gx
from graphexec.data import digits, spiral
from graphexec.optim import Optimizer
from graphexec.train import accuracy

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: The digits recipe (chosen on validation splits inside the training part, never on held-out).
DIGITS = {"epochs": 50, "batch_size": 32, "reg": 1e-4}
#: tanh and sigmoid learn slower (the lecture's vanishing gradients): a larger learning rate.
SATURATING = ("tanh", "sigmoid")


def adam(activation: str = "relu") -> Optimizer:
    return gx.optim.Adam(lr=3e-3 if activation in SATURATING else 1e-3)


def sgd_momentum(activation: str = "relu") -> Optimizer:
    return gx.optim.SGD(lr=0.05, momentum=0.9)


def digits_row(label: str, splits: int, *, activation: str = "relu", loss: str = "softmax",
               make_opt: Callable[[str], Optimizer] = adam, dtype: str = "float64") -> dict[str, Any]:
    """Train on each split's training part; return held-out accuracies and the time taken."""
    accs, dtypes, start = [], set(), time.perf_counter()
    for s in range(splits):
        Xtr, ytr, Xv, yv = digits(0.2, seed=s)
        g = gx.nn.mlp([64, 100, 10], activation=activation, loss=loss, reg=DIGITS["reg"],
                      seed=s, dtype=dtype)
        gx.fit(g, Xtr.astype(dtype), ytr, epochs=DIGITS["epochs"],
               batch_size=DIGITS["batch_size"], optimizer=make_opt(activation), seed=s)
        accs.append(accuracy(g, Xv.astype(dtype), yv))
        dtypes |= {str(p.dtype) for p in g.params.values()}
        dtypes.add(str(gx.predict(g, Xv[:2].astype(dtype)).dtype))
    return {"row": label, "accs": accs, "dtypes": sorted(dtypes),
            "seconds": time.perf_counter() - start}


def spiral_rows() -> list[dict[str, Any]]:
    """The shipped spiral model and a linear classifier, trained with the model's spec."""
    X, y = spiral(seed=0)
    Xval, yval = spiral(seed=1)
    Xnew, ynew = spiral(seed=2)
    rows = []
    for label, sizes in (("spiral 2-layer ReLU 2-100-3, reg 1e-3", None),
                         ("spiral linear classifier 2-3, reg 1e-3", [2, 3])):
        g = gx.load(ROOT / "models" / "spiral_mlp.gx")
        if sizes is not None:
            lin = gx.nn.mlp(sizes, reg=1e-3, seed=0)
            lin.training = g.training
            g = lin
        start = time.perf_counter()
        gx.fit(g, X, y, val=(Xval, yval))
        rows.append({"row": label, "train": accuracy(g, X, y), "fresh": accuracy(g, Xnew, ynew),
                     "seconds": time.perf_counter() - start})
    return rows


def resume_row() -> dict[str, Any]:
    """10 epochs + resume to 20 against 20 unbroken epochs: every bit equal?"""
    Xtr, ytr, Xv, yv = digits(0.2, seed=0)
    kw: dict[str, Any] = {"batch_size": 32, "val": (Xv, yv), "seed": 3}
    a = gx.nn.mlp([64, 100, 10], reg=1e-4, seed=0)
    ha = gx.fit(a, Xtr, ytr, epochs=20, optimizer=adam(), **kw)
    b = gx.nn.mlp([64, 100, 10], reg=1e-4, seed=0)
    gx.fit(b, Xtr, ytr, epochs=10, optimizer=adam(), **kw)
    b = gx.loads(gx.dumps(b))
    hb = gx.fit(b, Xtr, ytr, epochs=20, resume=True, **kw)
    same = all(np.array_equal(a.params[k], b.params[k]) for k in a.params) and ha == hb
    return {"row": "digits checkpoint at epoch 10 + resume to 20 vs 20 unbroken", "same": same}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--splits", type=int, default=5, help="digits splits per row (default 5)")
    args = p.parse_args(argv)
    print("| run | result | time |\n|---|---|---|")
    for r in spiral_rows():
        print(f"| {r['row']} | train {r['train']:.2%}, fresh spiral {r['fresh']:.2%} "
              f"| {r['seconds']:.1f} s |")
    rows = [digits_row(f"digits {a}", args.splits, activation=a)
            for a in ("relu", "leaky_relu", "prelu", "elu", "tanh", "sigmoid", "maxout")]
    rows.append(digits_row("digits relu, SVM loss, SGD momentum 0.9", args.splits, loss="svm",
                           make_opt=sgd_momentum))
    rows.append(digits_row("digits relu float32", args.splits, dtype="float32"))
    for r in rows:
        accs = " ".join(f"{a:.2%}" for a in r["accs"])
        print(f"| {r['row']} | held-out mean {np.mean(r['accs']):.2%}, worst {min(r['accs']):.2%}"
              f" ({accs}); dtypes {', '.join(r['dtypes'])} | {r['seconds']:.1f} s |")
    r = resume_row()
    print(f"| {r['row']} | {'bit-identical' if r['same'] else 'DIFFERENT'} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
