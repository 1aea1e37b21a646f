"""``graphexec`` entry point: one subcommand per public function, one error line, exit codes
0 (success), 1 (a check failed), 2 (bad usage or bad input)."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import io
import os
import sys
from collections import Counter
from typing import Any, NoReturn

import numpy as np

import graphexec as gx
from graphexec.cli.common import (
    HelpFormatter,
    UsageError,
    check_feed,
    emit_json,
    fmt,
    parse_assignments,
    to_json,
    user_data,
)
from graphexec.errors import GraphexecError, UnknownOpError, printable
from graphexec.fileformat import read_header
from graphexec.fileformat.atomic import atomic_write
from graphexec.fileformat.schema import Header
from graphexec.registry import registry

__all__ = ["entry", "main"]

#: Modules that add subcommands: each has ``register(subparsers)`` setting ``func`` on its parsers.
EXTRA_COMMANDS = ("graphexec.cli.gates", "graphexec.cli.train", "graphexec.cli.draw",
                  "graphexec.cli.onnx", "graphexec.cli.view")


def _node_ops(h: Header) -> list[dict[str, Any]]:
    """Each (op, version) the nodes use, resolved in the registry: a file's ``ops`` list is only
    a claim (a file may list ops its nodes do not use, or leave out ones they do)."""
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
    _refuse_empty(args.file)
    try:
        h = read_header(args.file)
    except GraphexecError as e:
        raise type(e)(f"{args.file}: {e}") from e
    ops = _node_ops(h)
    missing = [f"{r['op']} v{r['version']}" for r in ops if r["status"] != "ok"]
    info = {
        "name": h.name,
        "inputs": [{"name": i.name, "dtype": i.dtype, "shape": i.shape} for i in h.inputs],
        "outputs": [o.name for o in h.outputs],
        "nodes": len(h.nodes),
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
    return 0


def _save_npz(path: str, outs: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
    """Outputs under their names, gradients as ``grad/NAME`` (one archive, written atomically)."""
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


class ArgError(Exception):
    """argparse found a usage mistake (raised instead of argparse's own exit)."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class Parser(argparse.ArgumentParser):
    """Every (sub)parser: help lines with defaults; usage mistakes go through :func:`main`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise ArgError(self, message)


def _version() -> str:
    try:
        return importlib.metadata.version("graphexec")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return gx.__version__


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="graphexec", description="Run computational graphs stored in files.")
    p.add_argument("--version", action="version", version=f"graphexec {_version()}",
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True)
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
    """Run one command; returns the exit code. A user's mistake prints one line, no traceback
    (with ``--json``, one JSON object ``{"error": ..., "exit_code": 2}`` on stdout)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version
        return int(e.code or 0)
    except ArgError as e:
        if "--json" in argv:
            return _fail(str(e), as_json=True)
        e.parser.print_usage(sys.stderr)
        print(f"{e.parser.prog}: error: {e}", file=sys.stderr)
        return 2
    as_json = bool(getattr(args, "json", False))
    try:
        return int(args.func(args))
    except BrokenPipeError:
        return _closed_pipe()
    except KeyboardInterrupt:  # train reports its own; any other verb just stops
        print("interrupted", file=sys.stderr)
        return 130
    except (GraphexecError, OSError) as e:
        return _fail(str(e), as_json)
    except MemoryError as e:
        return _fail(f"not enough memory ({e or 'MemoryError'}); the input or file asks for "
                     "more than this machine has", as_json)


def _fail(message: str, as_json: bool) -> int:
    """Report a user's mistake: one line on stderr, or one JSON object on stdout. Exit 2."""
    text = _one_line(message)
    try:
        if as_json:
            emit_json({"error": text, "exit_code": 2})
        else:
            print(f"error: {text}", file=sys.stderr)
    except BrokenPipeError:
        _closed_pipe()
    return 2


def _closed_pipe() -> int:
    """The reader went away (``graphexec info X | head -1``): stop quietly, exit 0. Later
    writes (and the flush at exit) go to /dev/null instead of raising again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (captured in tests)
        pass
    finally:
        os.close(devnull)
    return 0


def _one_line(text: str) -> str:
    return printable(" ".join(text.split()))  # defence in depth: no control characters


def entry() -> None:
    code = main()
    try:
        sys.stdout.flush()  # a closed pipe shows up here when the output fits in the buffer
    except BrokenPipeError:
        code = _closed_pipe() if code == 0 else code
    sys.exit(code)
