"""Write every shipped model to models/.

The seed models are byte for byte reproducible (tests/test_models.py checks); the trained ones
come out of a training run (tests/test_train.py checks them with a tolerance).
"""

from __future__ import annotations

import pathlib
import sys

import graphexec as gx
from graphexec.examples import seed_models, trained_models


def main(out: str = "models") -> int:
    folder = pathlib.Path(out)
    folder.mkdir(exist_ok=True)
    for name, graph in {**seed_models(), **trained_models()}.items():
        gx.save(graph, folder / name)
        print(f"wrote {folder / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
