"""``graphexec`` entry point: one subcommand per public function, one error line, exit codes
0 (success), 1 (a check failed), 2 (bad usage or bad input)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections import Counter
from typing import Any

import numpy as np

import graphexec as gx
from graphexec.cli.common import UsageError, emit_json, fmt, parse_assignments, to_json
from graphexec.errors import GraphexecError, UnknownOpError, printable
from graphexec.fileformat import read_header
from graphexec.registry import registry

__all__ = ["main", "entry"]

#: Modules that add subcommands: each has ``register(subparsers)`` setting ``func`` on its parsers.
EXTRA_COMMANDS = ("graphexec.cli.train", "graphexec.cli.draw", "graphexec.cli.onnx", "graphexec.cli.predict")


def cmd_info(args: argparse.Namespace) -> int:
    """Header only: the tensor bytes are never read."""
    try:
        h = read_header(args.file)
    except GraphexecError as e:
        raise type(e)(f"{args.file}: {e}") from e
    reg = registry()
    ops = []
    for o in h.ops:
        try:
            reg.resolve(o.op, o.version, o.dist, o.dist_version)
            status = "ok"
        except UnknownOpError as e:
            status = f"unresolved: {e}"
        ops.append({"op": o.op, "version": o.version, "dist": o.dist,
                    "dist_version": o.dist_version, "status": status})
    info = {
        "name": h.name,
        "inputs": [{"name": i.name, "dtype": i.dtype, "shape": i.shape} for i in h.inputs],
        "outputs": [o.name for o in h.outputs],
        "nodes": len(h.nodes),
        "nodes_by_op": dict(sorted(Counter(n.op for n in h.nodes).items())),
        "parameters": sum(int(np.prod(p.shape)) for p in h.params),
        "param_tensors": len(h.params),
        "ops": ops,
        "metadata": h.metadata,
        "training": h.training is not None,
    }
    if args.json:
        emit_json(info)
        return 0
    print(f"graph {h.name!r}")
    for i in h.inputs:
        print(f"  input  {i.name}: {i.dtype} {i.shape if i.shape is not None else 'any shape'}")
    print(f"  outputs: {', '.join(o.name for o in h.outputs)}")
    by_op = ", ".join(f"{k} x{v}" for k, v in sorted(Counter(n.op for n in h.nodes).items()))
    print(f"  nodes: {len(h.nodes)} ({by_op})")
    print(f"  parameters: {info['parameters']} in {len(h.params)} tensors")
    for row in ops:
        mark = "" if row["status"] == "ok" else "  [UNRESOLVED]"
        print(f"  op {row['op']} v{row['version']} from {row['dist']} {row['dist_version']}{mark}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    g = _load(args.file)
    feed = parse_assignments(args.input)
    ex = gx.Executor(g)
    outs = ex.forward(feed, outputs=args.output or None)
    grads = ex.backward() if args.grad else {}
    if args.json:
        emit_json({"outputs": {k: to_json(v) for k, v in outs.items()},
                   **({"grads": {k: to_json(v) for k, v in grads.items()}} if args.grad else {})})
        return 0
    for k, v in outs.items():
        print(f"{k} = {fmt(v)}")
    for k, v in grads.items():
        print(f"grad {k} = {fmt(v)}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    g = _load(args.file)
    result: dict[str, Any] = {"file": args.file, "valid": True, "nodes": len(g.nodes)}
    nonfinite = [k for k, v in g.params.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
    result["nonfinite_params"] = nonfinite
    ok = True
    if args.grad:
        from graphexec.gradcheck import gradcheck, random_inputs

        feed = parse_assignments(args.input)
        report = gradcheck(g, random_inputs(g, feed, seed=args.seed))
        ok = report.ok
        result["gradcheck"] = report.to_dict()
        text = str(report)
    if args.json:
        emit_json({**result, "ok": ok})
    else:
        print(f"{args.file}: valid graph, {len(g.nodes)} nodes")
        if nonfinite:
            print(f"warning: parameters with NaN or Inf: {', '.join(nonfinite)}")
        if args.grad:
            print(text)
    return 0 if ok else 1


def cmd_gates(args: argparse.Namespace) -> int:
    reg = registry()
    rows = [{"op": i.name, "version": i.version, "dist": i.dist, "dist_version": i.dist_version,
             "module": i.module} for i in sorted(reg.gates.values(), key=lambda i: i.name)]
    broken = [{"entry": b.entry, "dist": b.dist, "error": b.error} for b in reg.broken]
    if args.json:
        emit_json({"gates": rows, "broken": broken, "conflicts": reg.conflicts})
        return 0
    for r in rows:
        print(f"{r['op']:<24} v{r['version']:<3} {r['dist']} {r['dist_version']}  ({r['module']})")
    for b in broken:
        print(f"BROKEN {b['dist']}:{b['entry']}: {b['error']}")
    for c in reg.conflicts:
        print(f"CONFLICT {c}")
    return 0


def _load(path: str) -> gx.Graph:
    return gx.load(path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphexec", description="Run computational graphs stored in files.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("info", help="inputs, outputs, nodes, parameters, ops needed (header only)")
    s.add_argument("file")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_info)
    s = sub.add_parser("run", help="run forward (and backward with --grad)")
    s.add_argument("file")
    s.add_argument("-i", "--input", action="append", metavar="NAME=VALUE",
                   help="a JSON number or nested list, or @path.npy")
    s.add_argument("-o", "--output", action="append", metavar="NAME", help="only these outputs")
    s.add_argument("--grad", action="store_true", help="also run backward, seeded with ones")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_run)
    s = sub.add_parser("check", help="validate; with --grad, a numerical gradient check")
    s.add_argument("file")
    s.add_argument("-i", "--input", action="append", metavar="NAME=VALUE")
    s.add_argument("--grad", action="store_true")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_check)
    s = sub.add_parser("gates", help="every registered op, its version and distribution")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_gates)
    for module in EXTRA_COMMANDS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code. A user's mistake prints one line, no traceback."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        return int(args.func(args))
    except (GraphexecError, UsageError) as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {_one_line(str(e))}", file=sys.stderr)
        return 2


def _one_line(text: str) -> str:
    return printable(" ".join(text.split()))  # defence in depth: no control characters


def entry() -> None:
    sys.exit(main())
