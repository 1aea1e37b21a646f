"""Helpers shared by the CLI commands: input parsing, printing, and help with defaults."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from graphexec.errors import UsageError as UsageError  # re-exported: the verbs import it from here

if TYPE_CHECKING:  # numpy and the graph stage load when a command runs, not for --help
    import numpy as np

    from graphexec.graph import Graph

NPY_MAGIC = b"\x93NUMPY"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds ``(default: X)`` to an option's help, unless the help already states its default
    or there is none to state (a flag that is off, a value read from the file's spec)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        unset = action.default is None or action.default is False \
            or action.default == argparse.SUPPRESS
        if "default" in text or unset or action.required:
            return text
        return super()._get_help_string(action)


def _read_npy(name: str, path: str) -> np.ndarray:
    """A .npy file, refusing anything else by its magic bytes (never unpickled)."""
    import numpy as np

    try:
        with open(path, "rb") as f:
            head = f.read(len(NPY_MAGIC))
    except OSError as e:
        raise UsageError(f"-i {name}: cannot read {path!r} as .npy: {e.strerror}") from e
    if head != NPY_MAGIC:
        raise UsageError(f"-i {name}=@{path}: expected a .npy file (written by numpy.save), "
                         f"found {'an empty file' if not head else f'bytes {head!r}'}; save "
                         "the array with numpy.save, or give a JSON number or list")
    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except (OSError, ValueError, MemoryError) as e:
        raise UsageError(f"-i {name}=@{path}: cannot read it as .npy: {e}") from e


def _has_bool(value: Any) -> bool:
    if isinstance(value, list):
        return any(_has_bool(v) for v in value)
    return isinstance(value, bool)


def _parse_json(name: str, text: str) -> Any:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise UsageError(f"-i {name}: {text!r} is not a JSON number or list") from None
    if isinstance(value, (dict, str)) or value is None:
        raise UsageError(f"-i {name}: {text!r} is not a JSON number or list")
    if _has_bool(value):
        raise UsageError(f"-i {name}: expected numbers, found a JSON boolean in {text!r}; "
                         "write 1 or 0 (or 1.0 / 0.0)")
    return value


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``NAME=VALUE`` pairs; VALUE is a JSON number or nested list, or ``@path.npy``.

    Raises:
        UsageError: A malformed pair, a repeated NAME, a boolean, or a file that is not .npy.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise UsageError(f"-i expects NAME=VALUE, got {item!r}")
        if name in out:
            raise UsageError(f"-i {name} is given twice; expected each input once, drop one")
        out[name] = _read_npy(name, text[1:]) if text.startswith("@") else _parse_json(name, text)
    return out


def check_feed(g: Graph, feed: dict[str, Any]) -> None:
    """Refuse a boolean array for a float input (numpy would silently make it 0.0 / 1.0)."""
    import numpy as np

    decls = {d.name: d for d in g.input_decls}
    for name, value in feed.items():
        d = decls.get(name)
        if d is not None and d.dtype.kind == "f" and np.asarray(value).dtype.kind == "b":
            raise UsageError(f"-i {name}: input {name!r} expects {d.dtype} numbers, found a "
                             "boolean array; convert it with .astype(float) before saving")


@contextlib.contextmanager
def user_data(what: str) -> Iterator[None]:
    """Turn numpy's failures on a user's file or values (absurd shapes, no memory) into one
    line: exit 2, never a traceback, never exit 1 (which means "a check failed")."""
    try:
        yield
    except MemoryError as e:
        raise UsageError(f"{what}: not enough memory for the sizes it declares "
                         f"(MemoryError: {e}); check the shapes of its inputs and "
                         "parameters") from e
    except (ValueError, TypeError, IndexError, ArithmeticError, RecursionError) as e:
        raise UsageError(f"{what}: cannot compute with these sizes or values "
                         f"({type(e).__name__}: {e}); check the shapes of its inputs and "
                         "parameters") from e


def to_json(a: np.ndarray) -> Any:
    """An array as JSON numbers / nested lists (NaN and infinities as strings)."""
    import numpy as np

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
    import numpy as np

    a = np.asarray(a)
    return repr(a.item()) if a.ndim == 0 else np.array2string(a, precision=6, separator=", ")
