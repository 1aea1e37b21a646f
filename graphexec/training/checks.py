"""Hyperparameter checks, declared once as pydantic types: "a number, not a bool, in range".

Each kind of setting is an ``Annotated`` type (``Field(gt=0, allow_inf_nan=False)`` and the like);
:func:`checked` validates one value against it and turns pydantic's error into one line::

    lr=0 is out of range: must be in (0, inf)
    lr must be a number in (0, inf), got 'fast'
    epochs must be an integer >= 1, got 1.5

Booleans, strings and other objects are refused before pydantic's lax conversions could turn
``True`` into ``1.0`` or ``"0.1"`` into ``0.1``.
"""

from __future__ import annotations

import inspect
import math
from typing import Annotated, Any

import numpy as np
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BeforeValidator, Field, TypeAdapter, ValidationError

from graphexec.errors import GraphexecError

__all__ = ["Count", "NonNegative", "Positive", "Shrink", "Unit", "check_kwargs", "checked", "count"]


def _real(value: Any) -> Any:
    """Only real numbers go on to pydantic (never a bool, a string or None)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise ValueError("not a number")
    return value


def _integer(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError("not an integer")
    return int(value)


#: A finite number > 0: learning rates, ``eps``.
Positive = Annotated[float, BeforeValidator(_real), Field(gt=0, allow_inf_nan=False)]
#: A finite number >= 0: regularisation strengths.
NonNegative = Annotated[float, BeforeValidator(_real), Field(ge=0, allow_inf_nan=False)]
#: A decay or momentum coefficient in [0, 1).
Unit = Annotated[float, BeforeValidator(_real), Field(ge=0, lt=1, allow_inf_nan=False)]
#: A decay factor in (0, 1]; 1 means no decay.
Shrink = Annotated[float, BeforeValidator(_real), Field(gt=0, le=1, allow_inf_nan=False)]
#: An integer >= 0 (use :func:`count` for another lower bound).
Count = Annotated[int, BeforeValidator(_integer), Field(ge=0)]

_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(kind: Any) -> TypeAdapter[Any]:
    if kind not in _ADAPTERS:
        _ADAPTERS[kind] = TypeAdapter(kind)
    return _ADAPTERS[kind]


def _interval(kind: Any) -> str:
    """``[0, 1)``-style text of the bounds declared on ``kind``."""
    low, high, left, right = -math.inf, math.inf, "(", ")"
    for m in getattr(kind, "__metadata__", ()):
        for c in getattr(m, "metadata", [m]):
            if isinstance(c, Gt):
                low, left = float(c.gt), "("  # type: ignore[arg-type]
            elif isinstance(c, Ge):
                low, left = float(c.ge), "["  # type: ignore[arg-type]
            elif isinstance(c, Lt):
                high, right = float(c.lt), ")"  # type: ignore[arg-type]
            elif isinstance(c, Le):
                high, right = float(c.le), "]"  # type: ignore[arg-type]
    return f"{left}{low:g}, {high:g}{right}"


def checked(name: str, value: Any, kind: Any, error: type[GraphexecError]) -> float:
    """``value`` as a Python float if it is a number of ``kind``'s interval, else ``error``."""
    try:
        return float(_adapter(kind).validate_python(value))
    except ValidationError as e:
        valid = _interval(kind)
        if e.errors()[0]["type"] == "value_error":
            raise error(f"{name} must be a number in {valid}, got {value!r}") from None
        raise error(f"{name}={value!r} is out of range: must be in {valid}") from None


def count(name: str, value: Any, low: int, error: type[GraphexecError]) -> int:
    """``value`` as a Python int if it is an integer >= ``low`` (never a bool), else ``error``."""
    try:
        n = int(_adapter(Count).validate_python(value))
    except ValidationError:
        n = -1
    if n < low:
        raise error(f"{name} must be an integer >= {low}, got {value!r}")
    return n


def check_kwargs(what: str, signature: inspect.Signature, kwargs: dict[str, Any],
                 error: type[GraphexecError]) -> None:
    """Refuse keyword arguments the signature does not take, or required ones left out."""
    params = signature.parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise error(f"{what} has no hyperparameter(s) {unknown}; it takes {list(params)}")
    missing = [p for p, spec in params.items() if spec.default is spec.empty and p not in kwargs]
    if missing:
        raise error(f"{what} needs hyperparameter(s) {missing}")
