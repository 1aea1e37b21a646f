"""What a gradient check found: per-tensor counts, failing nodes, and the report's text/JSON.

:mod:`graphexec.gradcheck` computes; this module holds and formats the results.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Failure", "GradcheckReport", "Index", "TensorCheck"]

Index = tuple[int, ...]


# ---------------------------------------------------------------------------- results
@dataclass
class TensorCheck:
    """The comparison for one tensor: counts, and the worst coordinate that failed (or not)."""

    name: str
    shape: Index
    n_checked: int = 0
    n_kinks: int = 0
    n_failed: int = 0
    max_rel_error: float = 0.0
    worst: Index | None = None
    analytic: float = 0.0
    numerical: float = 0.0

    def note(self, idx: Index, a: float, n: float, err: float, verdict: str) -> None:
        """Count one coordinate; kinks are counted apart and do not enter the error."""
        self.n_checked += 1
        if verdict == "kink":
            self.n_kinks += 1
            return
        self.n_failed += verdict == "fail"
        err = math.inf if math.isnan(err) else err
        if err > self.max_rel_error or self.worst is None:  # failures (> rtol) top every pass
            self.max_rel_error, self.worst, self.analytic, self.numerical = err, idx, a, n


@dataclass(frozen=True)
class Failure:
    """One disagreement. ``kind``: ``"graph"`` (the gradient of a graph input or parameter),
    ``"node"`` (one gate checked alone on the inputs it saw) or ``"error"`` (no check possible)."""

    kind: str
    value: str
    message: str
    rel_error: float = math.inf
    index: Index | None = None
    analytic: float = math.nan
    numerical: float = math.nan
    node: str = ""
    op: str = ""
    version: int = 0
    dist: str = ""
    dist_version: str = ""
    input: int = -1


@dataclass
class GradcheckReport:
    """What ``gradcheck`` found. ``ok``; ``max_rel_error``; ``failures`` (graph-level ones
    first, then every failing node in execution order); ``str()`` is the readable summary."""

    graph: str
    eps: float
    rtol: float
    tensors: list[TensorCheck] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    localised: bool = False  # were the nodes checked one by one?

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def max_rel_error(self) -> float:
        if any(f.kind == "error" for f in self.failures):
            return math.inf
        return max((t.max_rel_error for t in self.tensors), default=0.0)

    @property
    def n_checked(self) -> int:
        return sum(t.n_checked for t in self.tensors)

    @property
    def n_kinks(self) -> int:
        return sum(t.n_kinks for t in self.tensors)

    @property
    def failing_nodes(self) -> list[Failure]:
        return [f for f in self.failures if f.kind == "node"]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (non-finite numbers become strings, indices lists)."""
        return _jsonable({
            "ok": self.ok, "max_rel_error": self.max_rel_error, "eps": self.eps,
            "rtol": self.rtol, "n_checked": self.n_checked, "n_kinks": self.n_kinks,
            "tensors": [asdict(t) for t in self.tensors],
            "failures": [asdict(f) for f in self.failures],
        })

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        head = (f"gradcheck {self.graph!r}: {verdict}: max relative error "
                f"{self.max_rel_error:.2e} (rtol {self.rtol:.0e}), {self.n_checked} coordinates "
                f"checked, {self.n_kinks} at kinks (passed between the one-sided slopes)")
        lines = [head]
        lines += [f"  {_tensor_line(t)}" for t in self.tensors]
        nodes = self.failing_nodes
        lines += [f"  {f.message}" for f in self.failures if f.kind == "error"]
        if nodes:
            lines.append(f"  first failing node: {nodes[0].message}")
            lines += [f"  also failing: {f.message}" for f in nodes[1:]]
        elif self.localised and all(f.kind == "graph" for f in self.failures):
            lines.append("  every gate passes alone on the inputs it saw, so the disagreement "
                         "comes from how they combine: where several kinks meet (e.g. many relu "
                         "inputs exactly 0) the chain rule's subgradient need not lie between "
                         "the one-sided slopes; try other inputs (-i, --seed)")
        return "\n".join(lines)


def _tensor_line(t: TensorCheck) -> str:
    head = f"{t.name} {t.shape}: {t.n_checked} checked"
    if not t.n_failed:
        return f"{head}, max rel error {t.max_rel_error:.2e}"
    return (f"{head}, {t.n_failed} FAIL; worst at {t.worst}: analytic {t.analytic:.6g}, "
            f"numerical {t.numerical:.6g}, rel error {t.max_rel_error:.2e}")


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v
