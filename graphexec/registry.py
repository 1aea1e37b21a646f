"""Gate plugins: discover → load → validate; an in-process overlay on top.

Every op, built-in ones included, is a gate class published under the entry-point group
``graphexec.gates`` (entry-point name = op name).

This module discovers and resolves; importing and checking one entry point is
:mod:`graphexec.plugin_load`'s job.

* **Discover** lists the entry points and imports nothing: the result is a read-only table of
  who offers which op name.
* **Load** imports one entry point the first time its op is needed (by a graph being loaded or
  built), or every entry point of a distribution when all are asked for (``graphexec gates``,
  ``Registry.broken``), each entry point in isolation: any failure
  short of ``KeyboardInterrupt`` (an ``ImportError``, ``SystemExit`` at import, a class that
  cannot be inspected, an exception whose ``repr`` raises) becomes a reported ``PluginError``
  and the other gates still load. A plugin whose import hangs blocks only the graphs that use it.
* **Validate** checks each class once, at load time.
* **Overlay**: a distribution's loaded gates are not changed afterwards, but the registry as a
  whole is mutable: ``register_gate`` puts a gate in a separate in-process overlay, consulted
  first.

Policy when two distributions offer the same op name: graphexec's own gate wins; otherwise the
distribution whose name sorts first wins. The loser is listed in ``Registry.conflicts``.

Set ``GRAPHEXEC_DISABLE_PLUGINS=1`` to load only graphexec's own gates (third-party autoload off).
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

from graphexec.errors import InProcessGateWarning, PluginError, UnknownOpError
from graphexec.gate import Gate
from graphexec.plugin_load import (
    BrokenPlugin,
    DistLoad,
    Entry,
    GateInfo,
    bound,
    describe_exception,
    dist_load,
    entries_of,
    gate_input_count,
    load_entry,
    load_one,
    validate_gate_class,
)

__all__ = [
    "BrokenPlugin",
    "describe_exception",
    "gate_input_count",
    "load_entry",
    "validate_gate_class",
    "Entry",
    "GateInfo",
    "InProcessGateWarning",
    "Registry",
    "build_registry",
    "discover",
    "installed_entries",
    "register_gate",
    "registry",
    "reset_registry",
    "restore",
    "snapshot",
    "warn_in_process",
]

GROUP = "graphexec.gates"
OWN_DIST = "graphexec"
IN_PROCESS = "<in-process>"
DISABLE_ENV = "GRAPHEXEC_DISABLE_PLUGINS"
#: A distribution name as PyPI accepts it; only such a name is suggested in a ``pip install``
#: hint (a file may record ``<in-process>`` or worse, which must not become a shell command).
_PYPI_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?")


def _installable(dist: str) -> bool:
    return dist != OWN_DIST and _PYPI_NAME.fullmatch(dist) is not None


def _rank(dist: str) -> tuple[int, str]:
    return (0 if dist == OWN_DIST else 1, dist)


class _Table:
    """What discovery found (read-only: op name → entries offering it, in policy order), plus
    each entry point's gate (or failure), loaded on first need and not changed after."""

    def __init__(self, entries: Iterable[Entry], disabled: Iterable[Entry], off: bool):
        offers: dict[str, list[Entry]] = {}
        dists: dict[str, list[Entry]] = {}
        for e in sorted(entries, key=lambda e: (_rank(e.dist), e.name)):
            offers.setdefault(e.name, []).append(e)
            dists.setdefault(e.dist, []).append(e)
        self.offers: Mapping[str, tuple[Entry, ...]] = MappingProxyType(
            {k: tuple(v) for k, v in offers.items()})
        self.dists: Mapping[str, tuple[Entry, ...]] = MappingProxyType(
            {k: tuple(v) for k, v in dists.items()})
        skipped: dict[str, Entry] = {}
        for e in sorted(disabled, key=lambda e: (_rank(e.dist), e.name)):
            skipped.setdefault(e.name, e)
        self.disabled: Mapping[str, Entry] = MappingProxyType(skipped)
        self.off = off
        # by id(): the table holds every Entry for its lifetime (a test's stand-in for an
        # importlib EntryPoint need not be hashable)
        self._done: dict[int, GateInfo | BrokenPlugin] = {}
        self._loaded: dict[str, DistLoad] = {}
        # One lock per distribution: a plugin whose import hangs blocks only its own ops.
        self._locks = {d: threading.RLock() for d in dists}

    def entry(self, e: Entry) -> GateInfo | BrokenPlugin:
        """``e`` imported and validated, once. Only the gates a graph uses are imported:
        importing all of graphexec's own gate modules cost ~40 ms of every start-up."""
        done = self._done.get(id(e))
        if done is None:
            with self._locks[e.dist]:
                done = self._done.get(id(e))
                if done is None:
                    done = self._done[id(e)] = load_one(e)
        return done

    def load(self, dist: str) -> DistLoad:
        """Every entry point of ``dist``."""
        done = self._loaded.get(dist)
        if done is None:
            entries = self.dists[dist]
            done = self._loaded[dist] = dist_load(entries, [self.entry(e) for e in entries])
        return done

    def installed(self, op: str) -> GateInfo | None:
        """The winning gate for ``op``: the first offer, in policy order, that loads."""
        for e in self.offers.get(op, ()):
            info = self.entry(e)
            if isinstance(info, GateInfo):
                return info
        return None

    def broken_offer(self, op: str) -> BrokenPlugin | None:
        for e in self.offers.get(op, ()):
            b = self.entry(e)
            if isinstance(b, BrokenPlugin):
                return b
        return None


Wanted = tuple[str, int, str, str]  # op, version, dist and dist version the file names


class Registry:
    """The read-only table of discovered gates, plus an in-process overlay (``register_gate``).

    ``gates``, ``broken`` and ``conflicts`` load every distribution; ``resolve`` and ``require``
    load only the distributions that offer the ops asked for.
    """

    def __init__(self, table: _Table, overlay: Mapping[str, GateInfo] | None = None):
        self._table = table
        self._overlay: dict[str, GateInfo] = dict(overlay or {})

    # -- views ---------------------------------------------------------------------------
    @property
    def overlay(self) -> Mapping[str, GateInfo]:
        """Gates registered in this process only (read-only view)."""
        return MappingProxyType(self._overlay)

    @property
    def gates(self) -> Mapping[str, GateInfo]:
        """Every usable gate by op name (read-only); imports every distribution."""
        table = {op: info for op in self._table.offers
                 if (info := self._table.installed(op)) is not None}
        table.update(self._overlay)
        return MappingProxyType(dict(sorted(table.items())))

    @property
    def broken(self) -> list[BrokenPlugin]:
        """Entry points that failed to load; imports every distribution."""
        return [b for d in self._table.dists for b in self._table.load(d).broken]

    @property
    def conflicts(self) -> list[str]:
        """One line per op offered by two distributions that both load; imports every one."""
        out = []
        for op, offers in self._table.offers.items():
            ok = [e.dist for e in offers if op in self._table.load(e.dist).gates]
            out += [f"op {op!r} is offered by {ok[0]!r} and {lose!r}; using {ok[0]!r}"
                    for lose in ok[1:]]
        return out

    def names(self) -> list[str]:
        """Every op name on offer, without importing anything."""
        return sorted(set(self._table.offers) | set(self._overlay))

    def find(self, op: str) -> GateInfo | None:
        """The gate for ``op`` (the overlay first), importing only its distribution."""
        return self._overlay.get(op) or self._table.installed(op)

    # -- resolving -----------------------------------------------------------------------
    def resolve(self, op: str, version: int, dist: str = "", dist_version: str = "") -> GateInfo:
        """The gate for ``op`` at file version ``version``; UnknownOpError if none can serve it."""
        info = self.find(op)
        if info is None or version > info.version:
            self.require([(op, version, dist, dist_version)])  # raises, saying why
            raise AssertionError("unreachable: require() accepted what find() refused")
        return info

    def require(self, wanted: Iterable[Wanted]) -> None:
        """Check that every op can be served; one UnknownOpError lists all that cannot."""
        best: dict[str, Wanted] = {}
        for w in wanted:
            seen = best.get(w[0])
            if seen is None or w[1] > seen[1]:
                best[w[0]] = w
        problems = [p for w in best.values() if (p := self._problem(*w)) is not None]
        if problems:
            raise UnknownOpError(self._message(problems))

    def _problem(self, op: str, version: int, dist: str, dver: str) -> tuple[str, str] | None:
        """None if ``op`` can be served; else (phrase, a dist to pip install or "")."""
        info = self.find(op)
        wanted = f" (the file says it comes from {dist!r} {dver})" if dist else ""
        head = f"op {op!r} version {version}{wanted}" if version >= 1 else f"op {op!r}"
        if info is not None:
            if version <= info.version:
                return None
            source = dist if _installable(dist) else info.dist
            hint = (f"; upgrade it: pip install -U {source}" if _installable(source)
                    or source == OWN_DIST else "")
            return ((f"op {op!r}: the graph needs version {version}{wanted}, but the installed "
                    f"gate is version {info.version} (from {info.dist!r} {info.dist_version}){hint}"),
                    "")
        broken = self._table.broken_offer(op)
        if broken is not None:
            return ((f"op {op!r} is provided by {broken.dist} {broken.dist_version}, but "
                    f"{broken.reason}; fix or reinstall {broken.dist}"), "")
        off = f"third-party plugins are disabled ({DISABLE_ENV}={os.environ.get(DISABLE_ENV, '1')})"
        skipped = self._table.disabled.get(op)
        if skipped is not None:
            return ((f"{head} is provided by {skipped.dist} {skipped.dist_version}, but {off}; "
                    f"unset {DISABLE_ENV} to use it"), "")
        if self._table.off:
            return ((f"{head} is not one of graphexec's own gates, and {off}; unset "
                    f"{DISABLE_ENV} to look for it in installed plugins"), "")
        return (f"{head} is not provided by any installed plugin",
                dist if _installable(dist) else "")

    def _message(self, problems: list[tuple[str, str]]) -> str:
        dists = sorted({d for _, d in problems if d})
        parts = [p for p, _ in problems]
        if len(problems) > 1:
            parts[0] = f"{len(problems)} ops of this graph cannot be served: {parts[0]}"
        if dists:
            parts.append(f"install {'it' if len(dists) == 1 else 'them'} with: "
                         f"pip install {' '.join(dists)}")
        if any("not provided" in p or "not one of" in p for p in parts):
            parts.append(f"installed gates: {', '.join(self.names()) or 'none'}")
        return bound("; ".join(parts))

    # -- the overlay ---------------------------------------------------------------------
    def add(self, info: GateInfo, *, replace: bool = False) -> None:
        """Put ``info`` in this process's overlay; PluginError if it would silently shadow
        another gate of that name (``replace=True`` overrides)."""
        current = self.find(info.name)
        if current is not None and not replace and current.cls is not info.cls:
            raise PluginError(f"op {info.name!r} is already provided by {current.dist!r}; "
                              "pass replace=True to override it in this process")
        self._overlay[info.name] = info

    def with_gates(self, *classes: type[Gate]) -> Registry:
        """A new registry: this one's table and overlay, plus ``classes`` (this one unchanged)."""
        reg = Registry(self._table, self._overlay)
        for cls in classes:
            reg._overlay[cls.name] = _in_process_info(cls)
        return reg


def _in_process_info(cls: type[Gate]) -> GateInfo:
    cls = validate_gate_class(cls, f"{IN_PROCESS}:{getattr(cls, 'name', '?')}")
    return GateInfo(cls.name, cls.version, cls, gate_input_count(cls), IN_PROCESS, "",
                    cls.__module__)


# ---------------------------------------------------------------------------- the process-wide one
def _plugins_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "") not in ("", "0")


def build_registry(eps: Iterable[Any] | None = None) -> Registry:
    """Discover (or take) entry points; nothing is imported until a gate is needed.

    ``GRAPHEXEC_DISABLE_PLUGINS`` applies to discovered entry points, not to ``eps`` given.
    """
    off = eps is None and _plugins_disabled()
    entries = installed_entries() if eps is None else entries_of(eps)
    kept = [e for e in entries if not off or e.dist == OWN_DIST]
    skipped = [e for e in entries if off and e.dist != OWN_DIST]
    return Registry(_Table(kept, skipped, off))


def installed_entries() -> list[Entry]:
    """Every installed ``graphexec.gates`` entry point (imports nothing; ignores DISABLE_ENV)."""
    return entries_of(entry_points(group=GROUP))


def discover() -> Registry:
    """A new registry from the installed entry points (imports nothing)."""
    return build_registry()


_lock = threading.Lock()
_registry: Registry | None = None


def registry() -> Registry:
    """The process-wide registry, discovered on first use."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = discover()
        return _registry


def reset_registry(reg: Registry | None = None) -> None:
    """Forget the registry (or install ``reg``); the next use discovers again. For tests."""
    global _registry
    with _lock:
        _registry = reg


Snapshot = tuple[Registry, dict[str, GateInfo]]


def snapshot() -> Snapshot:
    """The process-wide registry and its overlay, for :func:`restore` (test fixtures)."""
    reg = registry()
    return reg, dict(reg._overlay)


def restore(snap: Snapshot) -> None:
    """Put back the registry and overlay that :func:`snapshot` saw."""
    reg, overlay = snap
    reg._overlay.clear()
    reg._overlay.update(overlay)
    reset_registry(reg)


def warn_in_process(graph: str, nodes: Iterable[Any]) -> None:
    """Warn (InProcessGateWarning) if any node's gate was registered only in this process."""
    local = sorted({n.op for n in nodes if n.info.dist == IN_PROCESS})
    if local:
        warnings.warn(InProcessGateWarning(
            f"graph {graph!r} uses ops registered only in this process ({', '.join(local)}, via "
            "graphexec.register_gate): other processes cannot load the saved file unless they "
            "register the same gates or install a plugin that provides them"), stacklevel=3)


def register_gate(cls: type[Gate], *, replace: bool = False) -> type[Gate]:
    """Register a gate in this process only (notebooks, tests). Usable as a class decorator.

    Files saved with it warn (InProcessGateWarning): other processes cannot load them unless
    they register the same gate or install a plugin that provides it.
    """
    registry().add(_in_process_info(cls), replace=replace)
    return cls
