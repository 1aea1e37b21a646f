"""``graphexec info``, ``run`` and ``check``: what a graph file holds, what it computes, whether
it is valid (and its gradients right)."""

from __future__ import annotations

import argparse
import io
import os
from collections import Counter
from typing import TYPE_CHECKING, Any

import graphexec as gx
from graphexec.cli.common import (
    UsageError,
    check_feed,
    emit_json,
    fmt,
    parse_assignments,
    to_json,
    user_data,
)
from graphexec.errors import GraphexecError, UnknownOpError

if TYPE_CHECKING:  # the file format and numpy load when a verb runs, not for --help
    import numpy as np

    from graphexec.fileformat.schema import Header

__all__ = ["cmd_check", "cmd_info", "cmd_run", "register"]


def _node_ops(h: Header) -> list[dict[str, Any]]:
    """Each (op, version) the nodes use, resolved in the registry: a file's ``ops`` list is only
    a claim (a file may list ops its nodes do not use, or leave out ones they do)."""
    from graphexec.registry import registry

    listed = {(o.op, o.version): o for o in h.ops}
    reg = registry()
    rows = []
    for op, version in sorted({(n.op, n.version) for n in h.nodes}):
        o = listed.get((op, version))
        dist, dist_version = (o.dist, o.dist_version) if o is not None else ("", "")
        try:
            reg.resolve(op, version, dist, dist_version)
            status = "ok"
        except UnknownOpError as e:
            status = f"unresolved: {e}"
        rows.append({"op": op, "version": version, "dist": dist, "dist_version": dist_version,
                     "listed": o is not None, "status": status})
    return rows


def _refuse_empty(path: str) -> None:
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise UsageError(f"{path}: the file is empty (0 bytes); expected a .gx graph file "
                         "(was it written completely?)")


def cmd_info(args: argparse.Namespace) -> int:
    """Header only: the tensor bytes are never read."""
    import numpy as np

    from graphexec.fileformat import read_header
    from graphexec.fileformat.schema import version_of
    from graphexec.summary import format_table, summarize

    _refuse_empty(args.file)
    try:
        h = read_header(args.file)
    except GraphexecError as e:
        raise type(e)(f"{args.file}: {e}") from e
    ops = _node_ops(h)
    missing = [f"{r['op']} v{r['version']}" for r in ops if r["status"] != "ok"]
    summary = summarize(h)
    info = {
        "name": h.name,
        "inputs": [{"name": i.name, "dtype": i.dtype, "shape": i.shape} for i in h.inputs],
        "outputs": [o.name for o in h.outputs],
        "format_version": version_of(h),
        "nodes": summary["nodes"],
        "node_count": len(h.nodes),
        "totals": summary["totals"],
        "training_state": summary["training_state"],
        "nodes_by_op": dict(sorted(Counter(n.op for n in h.nodes).items())),
        "parameters": sum(int(np.prod(p.shape, dtype=object)) for p in h.params),
        "param_tensors": len(h.params),
        "ops": ops,
        "missing_ops": missing,
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
        source = f"from {row['dist']} {row['dist_version']}" if row["listed"] else \
            "(not in the file's ops list)"
        print(f"  op {row['op']} v{row['version']} {source}{mark}")
    if missing:
        print(f"  missing ops: {', '.join(missing)}: this file cannot be loaded here")
    for line in format_table(summary):
        print(line)
    return 0


def _save_npz(path: str, outs: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
    """Outputs under their names, gradients as ``grad/NAME`` (one archive, written atomically)."""
    import numpy as np

    from graphexec.atomic import atomic_write

    if not path.endswith(".npz"):
        raise UsageError(f"--save expects a file name ending in .npz, got {path!r}")
    arrays = {**{k: np.asarray(v) for k, v in outs.items()},
              **{f"grad/{k}": np.asarray(v) for k, v in grads.items()}}
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"--save {path}: the folder {folder!r} does not exist; create it first")
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    atomic_write(path, [buf.getbuffer()])


def _seeds(g: gx.Graph, outs: dict[str, np.ndarray], grad_of: list[str] | None) -> Any:
    """``--grad-of``: a seed of ones for only these outputs (None: every float output)."""
    import numpy as np

    if not grad_of:
        return None
    for name in grad_of:
        if name not in g.outputs:
            raise UsageError(f"--grad-of {name!r}: expected one of the graph's outputs "
                             f"{g.outputs}, found no output of that name")
        if name not in outs:
            raise UsageError(f"--grad-of {name!r}: that output is not computed; add "
                             f"-o {name} or drop -o")
        if np.asarray(outs[name]).dtype.kind != "f":
            raise UsageError(f"--grad-of {name!r}: expected a float output, found "
                             f"{np.asarray(outs[name]).dtype}; no gradient flows from it")
    return {name: np.ones_like(outs[name]) for name in grad_of}


def cmd_run(args: argparse.Namespace) -> int:
    g = _load(args.file)
    feed = parse_assignments(args.input)
    check_feed(g, feed)
    grad = bool(args.grad or args.grad_of)
    with user_data(args.file):
        ex = gx.Executor(g)
        outs = ex.forward(feed, outputs=args.output or None)
        grads = ex.backward(_seeds(g, outs, args.grad_of)) if grad else {}
    if args.save:
        _save_npz(args.save, outs, grads)
        if not args.json:
            print(f"saved {len(outs)} outputs and {len(grads)} gradients to {args.save}")
    if args.json:
        emit_json({"outputs": {k: to_json(v) for k, v in outs.items()},
                   **({"grads": {k: to_json(v) for k, v in grads.items()}} if grad else {}),
                   **({"saved": args.save} if args.save else {})})
        return 0
    if args.save:
        return 0
    for k, v in outs.items():
        print(f"{k} = {fmt(v)}")
    for k, v in grads.items():
        print(f"grad {k} = {fmt(v)}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import numpy as np

    g = _load(args.file)
    result: dict[str, Any] = {"file": args.file, "valid": True, "nodes": len(g.nodes)}
    with user_data(args.file):
        nonfinite = [k for k, v in g.params.items()
                     if v.dtype.kind == "f" and not np.isfinite(v).all()]
    result["nonfinite_params"] = nonfinite
    ok = True
    if args.grad:
        from graphexec.gradcheck import gradcheck, random_inputs

        feed = parse_assignments(args.input)
        check_feed(g, feed)
        with user_data(args.file):
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


def _load(path: str) -> gx.Graph:
    """The graph in ``path``; numpy's failures on a hostile file become one line (exit 2)."""
    _refuse_empty(path)
    with user_data(path):
        return gx.load(path)


def register(sub: Any) -> None:
    """Add ``info``, ``run`` and ``check`` to the ``graphexec`` subcommands."""
    s = sub.add_parser("info", help="inputs, outputs, nodes, parameters, ops needed (header only)")
    s.add_argument("file", help="a .gx graph file")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_info)
    s = sub.add_parser("run", help="run forward (and backward with --grad or --grad-of)")
    s.add_argument("file", help="a .gx graph file")
    s.add_argument("-i", "--input", action="append", metavar="NAME=VALUE",
                   help="an input's value, once per input: a JSON number or nested list, "
                        "or @path.npy")
    s.add_argument("-o", "--output", action="append", metavar="NAME",
                   help="only these outputs (repeatable; default: every output)")
    s.add_argument("--grad", action="store_true",
                   help="also run backward, seeded with ones at every float output")
    s.add_argument("--grad-of", action="append", metavar="NAME",
                   help="also run backward, seeded with ones at only this output, e.g. loss "
                        "(repeatable; implies --grad)")
    s.add_argument("--save", metavar="OUT.npz",
                   help="write outputs (and gradients as grad/NAME) to OUT.npz instead of "
                        "printing them")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_run)
    s = sub.add_parser("check", help="validate; with --grad, a numerical gradient check "
                                     "(exit 1 if it fails)")
    s.add_argument("file", help="a .gx graph file")
    s.add_argument("-i", "--input", action="append", metavar="NAME=VALUE",
                   help="with --grad: fix an input's value (default: random from its "
                        "declaration)")
    s.add_argument("--grad", action="store_true",
                   help="compare analytic and numerical gradients on random inputs")
    s.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_check)
