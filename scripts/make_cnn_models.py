"""Write the shipped convolutional models to models/, or measure the digits CNN against the MLP.

    python scripts/make_cnn_models.py [OUT]        # writes OUT/digits_cnn.gx, OUT/cifar10_convnet.gx
    python scripts/make_cnn_models.py --measure    # held-out accuracy over 5 splits, CNN and MLP

* ``digits_cnn.gx``: :func:`digits_cnn`, trained by its own spec on the training part (80 %) of
  the seed-0 stratified split of the bundled 8×8 digits (as (1, 8, 8) images); the other 20 %
  is never seen in training (no best-epoch selection on it), so ``graphexec evaluate ... --data
  digits`` on it measures held-out accuracy.
* ``cifar10_convnet.gx``: :func:`cifar10_convnet`, the CS231n three-layer convnet, untrained, with
  the spec that trains it on the CIFAR-10 binary batches.

Every seed is fixed and numpy's BLAS runs on one thread, so a re-run on the same machine writes
the same bytes (the untrained file is the same on any machine; the trained one's last bits may
depend on the BLAS build).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # before numpy loads: one BLAS thread, the same sums every run
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"

import pathlib  # noqa: E402
import statistics  # noqa: E402

import numpy as np  # noqa: E402

import graphexec as gx  # noqa: E402
from graphexec.checkpoint import TrainSpec  # noqa: E402
from graphexec.graph import Graph  # noqa: E402
from graphexec.header import Training  # noqa: E402
from graphexec.nn import convnet  # noqa: E402
from graphexec.optim import Adam  # noqa: E402

#: The digits CNN: conv 32 3×3 - batchnorm - relu - 2×2 max pool - 128 relu - dropout - 10.
DIGITS_NET = {"input_shape": (1, 8, 8), "conv": [32], "kernel": 3, "pool": 2, "hidden": [128],
              "classes": 10, "batchnorm": True, "dropout": 0.25, "reg": 1e-4}
DIGITS_FIT = {"lr": 2e-3, "epochs": 30, "batch_size": 32}
#: The MLP it is compared with: models/digits_mlp.gx's recipe.
MLP_FIT = {"lr": 1e-3, "epochs": 50, "batch_size": 32, "reg": 1e-4}
SPLITS = 5


def images(X: np.ndarray) -> np.ndarray:
    """Flat digits rows (N, 64) as NCHW images (N, 1, 8, 8)."""
    return X.reshape(len(X), 1, 8, 8)


def _digits_spec(seed: int) -> TrainSpec:
    return TrainSpec(optimizer="adam", hyperparams=Adam(lr=DIGITS_FIT["lr"]).hyperparams(),
                     epochs=DIGITS_FIT["epochs"], batch_size=DIGITS_FIT["batch_size"], seed=seed,
                     extra={"reg": DIGITS_NET["reg"], "data_seed": 0, "val_split": 0.2})


def digits_cnn(*, train: bool = True, split_seed: int = 0, seed: int = 0) -> Graph:
    """The digits CNN, trained (unless ``train`` is false) by its spec on the training part of
    the ``split_seed`` 80/20 split; the last epoch's parameters are kept."""
    from graphexec.data import digits

    g = convnet(**DIGITS_NET, seed=seed, name="digits_cnn")  # type: ignore[arg-type]
    g.training = Training(spec=_digits_spec(seed).to_attrs())
    if train:
        Xtr, ytr, _, _ = digits(val_fraction=0.2, seed=split_seed)
        gx.fit(g, images(Xtr), ytr)
    return g


def cifar10_convnet() -> Graph:
    """CS231n's ThreeLayerConvNet for 3×32×32 (conv 32 7×7 - relu - 2×2 max pool - affine 100 -
    relu - affine 10 - softmax, reg 1e-3), float32, untrained; spec: Adam lr 1e-3, batch 50,
    10 epochs, seed 0, 2 % of the images held out for validation (CS231n's 49,000 / 1,000)."""
    g = convnet(input_shape=(3, 32, 32), conv=[32], kernel=7, pool=2, hidden=[100], classes=10,
                reg=1e-3, seed=0, dtype="float32", name="cifar10_convnet")
    spec = TrainSpec(optimizer="adam", hyperparams=Adam(lr=1e-3).hyperparams(), epochs=10,
                     batch_size=50, seed=0,
                     extra={"reg": 1e-3, "data_seed": 0, "val_split": 0.02})
    g.training = Training(spec=spec.to_attrs())
    return g


def write(out: str = "models") -> int:
    folder = pathlib.Path(out)
    folder.mkdir(exist_ok=True)
    for name, graph in (("cifar10_convnet.gx", cifar10_convnet()), ("digits_cnn.gx", digits_cnn())):
        gx.save(graph, folder / name)
        print(f"wrote {folder / name}")
    return 0


# ---------------------------------------------------------------------------- --measure
def _accuracy(g: Graph, X: np.ndarray, y: np.ndarray) -> float:
    """Share of rows whose highest score (evaluation mode) is the label."""
    return float((gx.predict(g, X).argmax(axis=1) == y).mean())


def _held_out(kind: str, s: int) -> float:
    """Train one net on split ``s``'s training part (weights and shuffling seeded by ``s``, as
    benchmarks/accuracy.py does); its accuracy on the held-out 20 %."""
    from graphexec.data import digits

    Xtr, ytr, Xv, yv = digits(0.2, seed=s)
    if kind == "cnn":
        g = digits_cnn(train=False, seed=s)
        gx.fit(g, images(Xtr), ytr, seed=s)
        return _accuracy(g, images(Xv), yv)
    g = gx.nn.mlp([64, 100, 10], reg=MLP_FIT["reg"], seed=s)
    gx.fit(g, Xtr, ytr, epochs=MLP_FIT["epochs"], batch_size=MLP_FIT["batch_size"],
           optimizer=Adam(lr=MLP_FIT["lr"]), seed=s)
    return _accuracy(g, Xv, yv)


def measure() -> int:
    for kind, label in (("mlp", "MLP 64-100-10"), ("cnn", "CNN c32-bn-pool2-128-drop0.25-10")):
        accs = [_held_out(kind, s) for s in range(SPLITS)]
        print(f"{label}: held-out mean {statistics.mean(accs):.2%} ± "
              f"{statistics.pstdev(accs):.2%} (splits: "
              f"{', '.join(f'{a:.2%}' for a in accs)})", flush=True)
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(measure() if args == ["--measure"] else write(*args))
