"""Gate plugins, one entry point at a time: import it, check the class, describe a failure.

:mod:`graphexec.registry` discovers entry points and decides who serves an op; this module
turns one discovered entry point into a validated :class:`GateInfo`, or a :class:`PluginError`
(any failure short of ``KeyboardInterrupt``) that the registry reports as a
:class:`BrokenPlugin` while the other gates still load.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

from graphexec.errors import PluginError, printable
from graphexec.gate import Gate

__all__ = ["BrokenPlugin", "DistLoad", "Entry", "GateInfo", "bound", "describe_exception",
           "dist_load", "entries_of", "entry_of", "gate_input_count", "load_entry",
           "load_one", "validate_gate_class"]

MAX_MESSAGE = 2000  # characters of one error message; the rest is cut and counted


def bound(text: str, limit: int = MAX_MESSAGE) -> str:
    text = printable(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters cut)"


def describe_exception(e: BaseException) -> str:
    """``repr(e)``, bounded; a repr that itself raises does not escape."""
    try:
        text = repr(e)
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001  (a plugin's exception may break anything)
        text = f"{type(e).__name__}(<repr() raised>)"
    return bound(text, 300)


@dataclass(frozen=True)
class GateInfo:
    """A validated gate class and where it came from."""

    name: str
    version: int
    cls: type[Gate]
    n_inputs: int
    dist: str
    dist_version: str
    module: str


@dataclass(frozen=True)
class BrokenPlugin:
    """An entry point that could not be loaded, and why (``reason``: the short form)."""

    entry: str
    dist: str
    error: str
    dist_version: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Entry:
    """A discovered entry point: an op name on offer, not imported yet."""

    name: str
    dist: str
    dist_version: str
    value: str
    ep: Any  # an importlib.metadata.EntryPoint (or a test's stand-in with .load())


def _dist_of(ep: Any) -> tuple[str, str]:
    try:
        dist = getattr(ep, "dist", None)
        if dist is None:
            return "<unknown>", ""
        return str(dist.metadata["Name"]), str(dist.version)
    except Exception:  # noqa: BLE001  (broken metadata must not stop discovery)
        return "<unknown>", ""


def entry_of(ep: Any) -> Entry:
    dist, ver = _dist_of(ep)
    return Entry(str(ep.name), dist, ver, str(getattr(ep, "value", "?")), ep)


def entries_of(eps: Iterable[Any]) -> list[Entry]:
    """:func:`entry_of` for each entry point, reading each distribution's metadata once
    (its entry points share one ``dist`` object; parsing METADATA per entry point cost about
    0.3 ms per op at every start-up)."""
    known: dict[int, tuple[Any, tuple[str, str]]] = {}
    out = []
    for ep in eps:
        dist = getattr(ep, "dist", None)
        hit = known.get(id(dist))
        if hit is None or hit[0] is not dist:
            hit = known[id(dist)] = (dist, _dist_of(ep))
        out.append(Entry(str(ep.name), *hit[1], str(getattr(ep, "value", "?")), ep))
    return out


# ---------------------------------------------------------------------------- validate
def gate_input_count(cls: type[Gate]) -> int:
    """Number of inputs ``cls.forward(self, ctx, *inputs)`` takes; -1 if variadic."""
    try:
        params = list(inspect.signature(cls.forward).parameters.values())[2:]
    except (ValueError, TypeError) as e:
        raise PluginError(f"gate {cls.name!r}: forward has no inspectable signature "
                          f"({describe_exception(e)}); define it as def forward(self, ctx, x, ...)"
                          ) from e
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return -1
    return len(params)


def _check_attrs(obj: type[Gate]) -> None:
    if not (isinstance(obj.Attrs, type) and issubclass(obj.Attrs, BaseModel)):
        raise PluginError(f"gate {obj.name!r}: Attrs must be a pydantic BaseModel subclass; "
                          "inherit graphexec.Attrs")
    extra = obj.Attrs.model_config.get("extra")
    if extra != "forbid":
        raise PluginError(
            f"gate {obj.name!r}: its Attrs allows extra keys (extra={extra!r}), so a misspelled "
            "attribute would be dropped silently; inherit graphexec.Attrs (class Attrs(gx.Attrs): "
            "...) or set model_config = ConfigDict(extra='forbid', frozen=True)")
    try:
        obj.Attrs()
    except Exception as e:  # attributes must all have defaults so a bare gate can be made
        raise PluginError(f"gate {obj.name!r}: every attribute needs a default "
                          f"({describe_exception(e)})") from e


def validate_gate_class(obj: object, entry: str) -> type[Gate]:
    """Check the gate contract once, at load time; PluginError names the entry and the fault."""
    if not (isinstance(obj, type) and issubclass(obj, Gate)):
        raise PluginError(f"entry point {entry!r} is {_safe_repr(obj)}, not a graphexec.Gate "
                          "subclass")
    if not isinstance(obj.name, str) or not obj.name:
        raise PluginError(f"gate {obj.__qualname__} of {entry!r} has no op name (set name = ...)")
    if type(obj.version) is not int or obj.version < 1:
        raise PluginError(f"gate {obj.name!r}: version must be an int >= 1, got "
                          f"{_safe_repr(obj.version)}")
    _check_attrs(obj)
    for meth in ("forward", "backward"):
        if getattr(obj, meth) is getattr(Gate, meth):
            raise PluginError(f"gate {obj.name!r} does not define {meth}(self, ctx, ...)")
    if gate_input_count(obj) == 0:
        raise PluginError(f"gate {obj.name!r}: forward(self, ctx, *inputs) takes no inputs")
    return obj


def _safe_repr(obj: object) -> str:
    try:
        return bound(repr(obj), 120)
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001
        return f"<{type(obj).__name__} whose repr() raises>"


# ---------------------------------------------------------------------------- load
def load_entry(entry: Entry) -> GateInfo:
    """Import one entry point and validate it; every failure short of KeyboardInterrupt
    becomes a PluginError (whose ``args[1]`` is the short reason)."""
    where = f"{entry.dist}:{entry.name}"
    try:
        obj = entry.ep.load()
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        why = describe_exception(e)
        raise PluginError(f"{entry.dist}: cannot import gate {entry.name!r} ({entry.value}): "
                          f"{why}", f"it failed to import: {why}") from e
    try:
        cls = validate_gate_class(obj, where)
        if cls.name != entry.name:
            raise PluginError(f"{entry.dist}: entry point {entry.name!r} points at gate "
                              f"{cls.name!r}; the names must match")
        return GateInfo(cls.name, cls.version, cls, gate_input_count(cls), entry.dist,
                        entry.dist_version, str(cls.__module__))
    except KeyboardInterrupt:
        raise
    except PluginError as e:
        raise PluginError(str(e), f"its gate class is invalid: {e}") from e
    except BaseException as e:
        why = describe_exception(e)
        raise PluginError(f"{where}: the gate class cannot be checked: {why}",
                          f"its gate class cannot be checked: {why}") from e


@dataclass(frozen=True)
class DistLoad:
    """One distribution's gates after loading (a read-only mapping, never changed)."""

    gates: Mapping[str, GateInfo]
    broken: tuple[BrokenPlugin, ...]


def load_one(entry: Entry) -> GateInfo | BrokenPlugin:
    """:func:`load_entry`, with a failure returned as the :class:`BrokenPlugin` to report."""
    try:
        return load_entry(entry)
    except PluginError as err:
        reason = err.args[1] if len(err.args) > 1 else str(err)
        return BrokenPlugin(entry.name, entry.dist, str(err.args[0]), entry.dist_version, reason)


def dist_load(entries: Sequence[Entry], results: Sequence[GateInfo | BrokenPlugin]) -> DistLoad:
    """One distribution's gates and failures from its entry points' results (in order)."""
    gates = {e.name: r for e, r in zip(entries, results, strict=True) if isinstance(r, GateInfo)}
    broken = tuple(r for r in results if isinstance(r, BrokenPlugin))
    return DistLoad(MappingProxyType(gates), broken)
