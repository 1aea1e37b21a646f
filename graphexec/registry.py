"""Gate plugins: discover → load → validate → freeze.

Every op, built-in ones included, is a gate class published under the entry-point group
``graphexec.gates`` (entry-point name = op name). Discovery lists entry points without importing
anything; loading imports each one in isolation, so one broken plugin is reported as a
``PluginError`` and the others still load; validation checks the class once, at load time.

Policy when two distributions offer the same op name: graphexec's own gate wins; otherwise the
distribution whose name sorts first wins. The loser is listed in ``Registry.conflicts``.

Set ``GRAPHEXEC_DISABLE_PLUGINS=1`` to load only graphexec's own gates (third-party autoload off).
"""

from __future__ import annotations

import inspect
import os
import re
import threading
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

from pydantic import BaseModel

from graphexec.errors import PluginError, UnknownOpError
from graphexec.gate import Gate

__all__ = ["GateInfo", "BrokenPlugin", "Registry", "registry", "register_gate", "reset_registry"]

GROUP = "graphexec.gates"
OWN_DIST = "graphexec"
IN_PROCESS = "<in-process>"
DISABLE_ENV = "GRAPHEXEC_DISABLE_PLUGINS"
#: A distribution name as PyPI accepts it; only such a name is suggested in a ``pip install``
#: hint (a file may record ``<in-process>`` or worse, which must not become a shell command).
_PYPI_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?")


def _installable(dist: str) -> bool:
    return dist != OWN_DIST and _PYPI_NAME.fullmatch(dist) is not None


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
    """An entry point that could not be loaded, and why."""

    entry: str
    dist: str
    error: str


@dataclass
class Registry:
    """The frozen table of gates found at discovery, plus in-process registrations."""

    gates: dict[str, GateInfo] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def resolve(self, op: str, version: int, dist: str = "", dist_version: str = "") -> GateInfo:
        """The gate for ``op`` at file version ``version``; UnknownOpError if none can serve it."""
        info = self.gates.get(op)
        wanted = f" (the file says it comes from {dist!r} {dist_version})" if dist else ""
        if info is None:
            hint = f"; install it with: pip install {dist}" if _installable(dist) else ""
            raise UnknownOpError(
                f"op {op!r} version {version}{wanted} is not provided by any installed plugin"
                f"{hint}; installed gates: {', '.join(sorted(self.gates)) or 'none'}"
            )
        if version > info.version:
            source = dist if _installable(dist) else info.dist
            hint = (f"; upgrade it: pip install -U {source}" if _installable(source)
                    or source == OWN_DIST else "")
            raise UnknownOpError(
                f"op {op!r}: the graph needs version {version}{wanted}, but the installed gate is "
                f"version {info.version} (from {info.dist!r} {info.dist_version}){hint}"
            )
        return info


def gate_input_count(cls: type[Gate]) -> int:
    """Number of inputs ``cls.forward(self, ctx, *inputs)`` takes; -1 if variadic."""
    params = list(inspect.signature(cls.forward).parameters.values())[2:]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return -1
    return len(params)


def validate_gate_class(obj: object, entry: str) -> type[Gate]:
    """Check the gate contract once, at load time; PluginError names the entry and the fault."""
    if not (isinstance(obj, type) and issubclass(obj, Gate)):
        raise PluginError(f"entry point {entry!r} is {obj!r}, not a graphexec.Gate subclass")
    if not isinstance(obj.name, str) or not obj.name:
        raise PluginError(f"gate {obj.__qualname__} of {entry!r} has no op name (set name = ...)")
    if type(obj.version) is not int or obj.version < 1:
        raise PluginError(f"gate {obj.name!r}: version must be an int >= 1, got {obj.version!r}")
    if not (isinstance(obj.Attrs, type) and issubclass(obj.Attrs, BaseModel)):
        raise PluginError(f"gate {obj.name!r}: Attrs must be a pydantic BaseModel subclass")
    for meth in ("forward", "backward"):
        if getattr(obj, meth) is getattr(Gate, meth):
            raise PluginError(f"gate {obj.name!r} does not define {meth}(self, ctx, ...)")
    if gate_input_count(obj) == 0:
        raise PluginError(f"gate {obj.name!r}: forward(self, ctx, *inputs) takes no inputs")
    try:
        obj.Attrs()
    except Exception as e:  # attributes must all have defaults so a bare gate can be made
        raise PluginError(f"gate {obj.name!r}: every attribute needs a default ({e})") from e
    return obj


def _dist_of(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "<unknown>", ""
    return str(dist.metadata["Name"]), str(dist.version)


def load_entry_point(ep: EntryPoint) -> GateInfo:
    """Import one entry point and validate it; any failure becomes a PluginError."""
    dist, ver = _dist_of(ep)
    try:
        obj = ep.load()
    except Exception as e:
        raise PluginError(f"{dist}: cannot import gate {ep.name!r} ({ep.value}): {e!r}") from e
    cls = validate_gate_class(obj, f"{dist}:{ep.name}")
    if cls.name != ep.name:
        raise PluginError(
            f"{dist}: entry point {ep.name!r} points at gate {cls.name!r}; the names must match"
        )
    return GateInfo(cls.name, cls.version, cls, gate_input_count(cls), dist, ver, cls.__module__)


def _rank(info: GateInfo) -> tuple[int, str]:
    return (0 if info.dist == OWN_DIST else 1, info.dist)


def build_registry(eps: list[EntryPoint] | None = None) -> Registry:
    """Discover (or take) entry points, load each in isolation, keep the winner per op name."""
    if eps is None:
        eps = list(entry_points(group=GROUP))
        if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
            eps = [ep for ep in eps if _dist_of(ep)[0] == OWN_DIST]
    reg = Registry()
    for ep in sorted(eps, key=lambda e: (_dist_of(e), e.name)):
        try:
            info = load_entry_point(ep)
        except PluginError as e:
            reg.broken.append(BrokenPlugin(ep.name, _dist_of(ep)[0], str(e)))
            continue
        old = reg.gates.get(info.name)
        if old is not None:
            keep, lose = (old, info) if _rank(old) <= _rank(info) else (info, old)
            reg.conflicts.append(
                f"op {info.name!r} is offered by {keep.dist!r} and {lose.dist!r}; using {keep.dist!r}"
            )
            info = keep
        reg.gates[info.name] = info
    return reg


_lock = threading.Lock()
_registry: Registry | None = None


def registry() -> Registry:
    """The process-wide registry, discovered on first use."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = build_registry()
        return _registry


def reset_registry(reg: Registry | None = None) -> None:
    """Forget the registry (or install ``reg``); the next use discovers again. For tests."""
    global _registry
    with _lock:
        _registry = reg


def register_gate(cls: type[Gate], *, replace: bool = False) -> type[Gate]:
    """Register a gate in this process only (notebooks, tests). Usable as a class decorator."""
    cls = validate_gate_class(cls, f"{IN_PROCESS}:{getattr(cls, 'name', '?')}")
    reg = registry()
    if cls.name in reg.gates and not replace and reg.gates[cls.name].cls is not cls:
        raise PluginError(
            f"op {cls.name!r} is already provided by {reg.gates[cls.name].dist!r}; "
            "pass replace=True to override it in this process"
        )
    reg.gates[cls.name] = GateInfo(
        cls.name, cls.version, cls, gate_input_count(cls), IN_PROCESS, "", cls.__module__
    )
    return cls
