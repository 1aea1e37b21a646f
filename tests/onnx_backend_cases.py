"""The ONNX backend node tests of the ops graphexec claims to import, and one verdict per test.

onnx >= 1.19 ships the node tests only as generators (``onnx/backend/test/case/node/<op>.py``);
importing one such module builds its op's cases in memory. Only the modules of the claimed ops
are imported, so the suite costs a few seconds of CPU, not the ~13 s of ``load_model_tests``.
Older wheels ship ``onnx/backend/test/data/node/*``: those folders are read instead.

Run ``python tests/onnx_backend_cases.py`` for the per-op table that ``docs/onnx.md`` quotes.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import graphexec as gx
from graphexec.onnx_io import SUPPORTED_OPS, OnnxImportError

#: ONNX op -> the generator module of its node tests (where it is not the op's lower-cased name).
MODULES = {"BatchNormalization": "batch_normalization",
           "SoftmaxCrossEntropyLoss": "softmax_cross_entropy_loss", "Max": "max",
           "GreaterOrEqual": "greater_or_equal", "LessOrEqual": "less_or_equal",
           "InstanceNormalization": "instance_normalization"}
RTOL, ATOL = 1e-4, 1e-5
#: Tests whose expected outputs onnx types as 4-decimal literals: atol half a unit of the 4th.
ROUNDED = {"test_averagepool_2d_ceil_last_window_starts_on_pad": 5e-5 + 1e-6}


@dataclass
class Case:
    name: str
    op: str
    model: Any
    inputs: list[np.ndarray]
    outputs: list[np.ndarray]


@dataclass
class Verdict:
    case: Case
    kind: str  # "pass", "refused", "wrong", "crash"
    detail: str = ""
    grad: str = ""  # "", "ok", "no float leaf", or a gradcheck failure
    extra: dict[str, Any] = field(default_factory=dict)


def _from_generators(ops: set[str]) -> list[Case]:
    import onnx.backend.test.case.node as node_pkg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            for op in sorted(ops):
                mod = MODULES.get(op, op.lower())
                if Path(node_pkg.__file__).with_name(mod + ".py").exists():
                    importlib.import_module(f"onnx.backend.test.case.node.{mod}")
    return [Case(tc.name, tc.model.graph.node[0].op_type, tc.model,
                 [_array(a) for a in tc.data_sets[0][0]], [_array(a) for a in tc.data_sets[0][1]])
            for tc in node_pkg._NodeTestCases  # (other modules may have been imported too)
            if len(tc.model.graph.node) == 1 and tc.model.graph.node[0].op_type in ops]


def _from_folder(root: Path, ops: set[str]) -> list[Case]:
    import onnx
    from onnx import numpy_helper

    cases = []
    for d in sorted(root.iterdir()):
        model = onnx.load(str(d / "model.onnx"))
        ds = d / "test_data_set_0"
        if len(model.graph.node) != 1 or model.graph.node[0].op_type not in ops or not ds.is_dir():
            continue

        def read(prefix: str) -> list[np.ndarray]:
            out = []
            for p in sorted(ds.glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.split("_")[1])):
                t = onnx.TensorProto()
                t.ParseFromString(p.read_bytes())
                out.append(numpy_helper.to_array(t))
            return out
        cases.append(Case(d.name, model.graph.node[0].op_type, model, read("input"), read("output")))
    return cases


def _array(a: Any) -> np.ndarray:
    from onnx import TensorProto, numpy_helper

    return numpy_helper.to_array(a) if isinstance(a, TensorProto) else np.asarray(a)


def load_cases(ops: set[str] | None = None) -> list[Case]:
    """The single-node tests of ``ops`` (default: every op graphexec claims)."""
    import onnx

    ops = set(SUPPORTED_OPS) if ops is None else ops
    folder = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"
    cases = _from_folder(folder, ops) if folder.is_dir() else _from_generators(ops)
    return sorted((c for c in cases if c.op in ops), key=lambda c: c.name)


def close(got: np.ndarray, want: np.ndarray, atol: float = ATOL) -> str:
    """'' if ``got`` is ``want`` (float: rtol 1e-4 / atol 1e-5; ints and bools: exactly)."""
    got = np.asarray(got)
    if got.shape != want.shape:
        return f"shape {got.shape}, expected {want.shape}"
    if got.dtype != want.dtype:
        return f"dtype {got.dtype}, expected {want.dtype}"
    if want.dtype.kind == "f":
        ok = np.allclose(got, want, rtol=RTOL, atol=atol, equal_nan=True)
    else:
        ok = np.array_equal(got, want)
    return "" if ok else f"values differ by up to {np.max(np.abs(got.astype(float) - want)):.3g}"


def judge(case: Case, *, grad: bool = True) -> Verdict:
    """Prepare and run through graphexec's ONNX backend, compare; on a passing float test also
    backward + gradcheck on the graph the backend ran."""
    from graphexec.onnx_io.backend import prepare

    try:
        rep = prepare(case.model)
        with np.errstate(all="ignore"):
            got = rep.run(case.inputs)
        g, names = rep.graph_for(dict(zip(rep.input_names, case.inputs)))
    except OnnxImportError as e:
        return Verdict(case, "refused", str(e))
    except Exception as e:  # a crash at import or run
        return Verdict(case, "crash", f"{type(e).__name__}: {e}")
    if len(got) != len(case.outputs):
        return Verdict(case, "wrong", f"{len(got)} outputs, expected {len(case.outputs)}")
    for k, (value, want) in enumerate(zip(got, case.outputs)):
        bad = close(value, want, ROUNDED.get(case.name, ATOL))
        if bad:
            return Verdict(case, "wrong", f"output #{k + 1} {rep.output_names[k]!r}: {bad}")
    v = Verdict(case, "pass", extra={"imports": rep.imports, "bound": rep.value_inputs})
    if grad:
        feed = dict(zip(rep.input_names, case.inputs))
        v.grad = _grad(g, {d.name: feed[k] for d, k in zip(g.input_decls, names)})
    return v


def _grad(g: gx.Graph, feed: dict[str, np.ndarray]) -> str:
    """Backward runs, and gradcheck agrees, wherever a float value flows to a float output.

    A test whose inputs hold NaN or Inf (Cast's) is gradchecked with those entries replaced by
    finite values: no gradient is defined there. Empty float tensors hold nothing to check."""
    floats = [k for k, v in feed.items() if v.dtype.kind == "f" and v.size] + [
        k for k, v in g.params.items() if v.dtype.kind == "f" and k not in g.buffers and v.size]
    feed = {k: np.where(np.isfinite(v), v, 0.5).astype(v.dtype) if v.dtype.kind == "f" else v
            for k, v in feed.items()}
    out_float = [k for k, v in gx.run(g, feed).items() if np.asarray(v).dtype.kind == "f"]
    if not floats or not out_float:
        return "no float leaf"
    try:
        ex = gx.Executor(g)
        ex.forward(feed)
        ex.backward()
        rep = gx.gradcheck(g, feed, max_coords=8)
    except Exception as e:
        return f"backward: {type(e).__name__}: {e}"
    return "ok" if rep.ok else f"gradcheck: {str(rep).splitlines()[0]}"


def table(verdicts: list[Verdict]) -> str:
    per: dict[str, Counter[str]] = {}
    for v in verdicts:
        per.setdefault(v.case.op, Counter())[v.kind] += 1
    lines = ["| ONNX op | tests | pass | refused | wrong | crash |", "|---|---|---|---|---|---|"]
    for op, c in sorted(per.items()):
        lines.append(f"| `{op}` | {sum(c.values())} | {c['pass']} | {c['refused']} | "
                     f"{c['wrong']} | {c['crash']} |")
    tot = Counter(v.kind for v in verdicts)
    lines.append(f"| **all** | {len(verdicts)} | {tot['pass']} | {tot['refused']} | "
                 f"{tot['wrong']} | {tot['crash']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    t0 = time.process_time()
    cases = load_cases()
    t1 = time.process_time()
    verdicts = [judge(c) for c in cases]
    t2 = time.process_time()
    for v in verdicts:
        if v.kind != "pass" or (v.grad not in ("ok", "no float leaf")) or "-v" in sys.argv:
            print(f"{v.kind:8} {v.case.name}: {(v.detail or v.grad)[:300]}")
    print(table(verdicts))
    print(f"CPU: load {t1 - t0:.1f} s, judge {t2 - t1:.1f} s ({os.cpu_count()} cpus)")
