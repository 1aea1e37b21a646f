"""Write every shipped model to models/.

The seed models and the untrained digits net are byte for byte reproducible
(tests/test_models.py and tests/test_train.py check); the trained ones come out of a training
run (tests/test_train.py checks them with a tolerance). ``graphexec train
models/digits_mlp_untrained.gx --data digits -o digits_mlp.gx`` retrains the shipped digits net.
"""

from __future__ import annotations

import pathlib
import sys

import graphexec as gx
from graphexec.examples import digits_mlp, seed_models, trained_models


def main(out: str = "models") -> int:
    folder = pathlib.Path(out)
    folder.mkdir(exist_ok=True)
    untrained = {"digits_mlp_untrained.gx": digits_mlp(train=False)}
    for name, graph in {**seed_models(), **untrained, **trained_models()}.items():
        gx.save(graph, folder / name)
        print(f"wrote {folder / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
