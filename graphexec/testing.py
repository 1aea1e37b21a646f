"""The plugin author's kit: one call checks a gate class against the whole gate contract.

>>> from graphexec.testing import check_gate
>>> check_gate(Softplus, (4, 3))                       # in your plugin's pytest
>>> check_gate(MyLoss, (5, 3), (5,), dtypes=("float64", "int64"))   # int labels in [0, 3)

``check_gate`` raises ``AssertionError`` with a message that says what is wrong and how to fix it
when the gate:

* is not a valid gate class (name, version, Attrs, forward/backward signature);
* writes into its inputs, the upstream gradient, or (in backward) its own output;
* keeps per-run state on ``self`` or on its class (it must go on ``ctx``);
* is not deterministic (two runs on the same inputs differ);
* returns a gradient of the wrong shape or dtype, or ``None`` where one is needed, or ignores
  ``ctx.needs_grad`` in a way that changes the gradients it does return;
* turns float32 inputs into a float64 output or gradient;
* has a backward that disagrees with central differences of its forward (kink-aware, float64);
* declares ``fresh_grads = True`` but returns a gradient that is not a new, writeable array of
  its own (``dout``, an input, its output, something kept on ``ctx``, or one array twice);
* has attributes that do not survive a save/load round trip of a one-node graph.

``check_distribution("my-dist")`` checks every ``graphexec.gates`` entry point of an installed
distribution: each entry-point name matches its gate's ``name``, each class loads and validates,
and each gate passes ``check_gate`` (at input shapes (4, 3) unless ``cases`` says otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphexec.gatecheck import check_gate

__all__ = ["DistributionReport", "EntryCheck", "check_distribution", "check_gate"]


# ---------------------------------------------------------------------------- a whole distribution
@dataclass(frozen=True)
class EntryCheck:
    """The verdict on one entry point: ``message`` says what failed, or the gradient error."""

    entry: str
    ok: bool
    message: str


@dataclass(frozen=True)
class DistributionReport:
    """What :func:`check_distribution` found, one line per entry point."""

    dist: str
    version: str
    checks: tuple[EntryCheck, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def __str__(self) -> str:
        bad = sum(not c.ok for c in self.checks)
        head = (f"{self.dist} {self.version}: {len(self.checks)} gate entry points, "
                f"{'all pass' if not bad else f'{bad} fail'}")
        return "\n".join([head] + [f"  {'ok  ' if c.ok else 'FAIL'} {c.entry}: {c.message}"
                                   for c in self.checks])


def _canonical(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def check_distribution(dist: str, *, cases: Mapping[str, Mapping[str, Any]] | None = None
                       ) -> DistributionReport:
    """Check every ``graphexec.gates`` entry point of the installed distribution ``dist``.

    Each entry point must load and validate (its name equal to its gate's ``name``), and each
    gate must pass :func:`check_gate`. Nothing is added to the process's registry.

    Args:
        dist: the distribution's name, as in its ``pyproject.toml`` (``-``/``_`` alike).
        cases: per op name, keyword arguments for ``check_gate``; ``"shapes"`` gives the input
            shapes (default ``(4, 3)`` for each input), e.g.
            ``{"matmul": {"shapes": [(4, 3), (3, 2)]}, "loss": {"dtypes": ["float64", "int64"]}}``.

    Returns:
        The report, if every entry point passes.

    Raises:
        AssertionError: with the whole report, if any entry point fails or ``dist`` offers none.
    """
    from graphexec.registry import GROUP, installed_entries

    entries = sorted((e for e in installed_entries() if _canonical(e.dist) == _canonical(dist)),
                     key=lambda e: e.name)
    if not entries:
        offering = sorted({e.dist for e in installed_entries()})
        raise AssertionError(f"check_distribution({dist!r}): no {GROUP!r} entry points belong to "
                             f"{dist!r}; is it installed (pip install -e .)? distributions with "
                             f"gates: {', '.join(offering) or 'none'}")
    cases = dict(cases or {})
    unknown = sorted(set(cases) - {e.name for e in entries})
    if unknown:
        raise ValueError(f"check_distribution({dist!r}): cases names ops that {dist!r} does not "
                         f"offer: {unknown}; it offers {sorted(e.name for e in entries)}")
    checks = tuple(_check_entry(e, cases.get(e.name, {})) for e in entries)
    report = DistributionReport(entries[0].dist, entries[0].dist_version, checks)
    if not report.ok:
        raise AssertionError(str(report))
    return report


def _check_entry(entry: Any, case: Mapping[str, Any]) -> EntryCheck:
    from graphexec.errors import PluginError
    from graphexec.registry import describe_exception, load_entry

    try:
        info = load_entry(entry)
    except PluginError as e:
        return EntryCheck(entry.name, False, f"does not load: {e.args[0]}")
    options = dict(case)
    shapes = options.pop("shapes", [(4, 3)] * (2 if info.n_inputs < 0 else info.n_inputs))
    try:
        err = check_gate(info.cls, *map(tuple, shapes), **options)
    except AssertionError as e:
        return EntryCheck(entry.name, False, str(e))
    except Exception as e:  # noqa: BLE001  (say which gate broke and how to tell the kit more)
        return EntryCheck(entry.name, False,
                          f"check_gate raised {describe_exception(e)} at input shapes "
                          f"{[tuple(s) for s in shapes]}; pass cases={{{entry.name!r}: "
                          "{'shapes': [...], ...}} with inputs this gate accepts")
    return EntryCheck(entry.name, True, f"passes check_gate (max relative error {err:.1e})")
