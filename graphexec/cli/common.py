"""Helpers shared by the CLI commands: input parsing and printing."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import numpy as np

from graphexec.errors import GraphexecError


class UsageError(GraphexecError):
    """A command-line mistake (bad -i value, missing file): exit 2 with one line."""


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``NAME=VALUE`` pairs; VALUE is a JSON number or nested list, or ``@path.npy``."""
    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise UsageError(f"-i expects NAME=VALUE, got {item!r}")
        if text.startswith("@"):
            try:
                out[name] = np.load(text[1:], allow_pickle=False)
            except (OSError, ValueError) as e:
                raise UsageError(f"-i {name}: cannot read {text[1:]!r} as .npy: {e}") from e
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise UsageError(f"-i {name}: {text!r} is not a JSON number or list") from None
        if isinstance(value, (dict, str)) or value is None:
            raise UsageError(f"-i {name}: {text!r} is not a JSON number or list")
        out[name] = value
    return out


def to_json(a: np.ndarray) -> Any:
    """An array as JSON numbers / nested lists (NaN and infinities as strings)."""
    def fix(v: Any) -> Any:
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        return v
    return fix(np.asarray(a).tolist())


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")


def fmt(a: np.ndarray) -> str:
    a = np.asarray(a)
    return repr(a.item()) if a.ndim == 0 else np.array2string(a, precision=6, separator=", ")
