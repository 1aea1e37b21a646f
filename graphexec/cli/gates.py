"""``graphexec gates [NAME] [--strict] [--json]``: the installed ops, or one op in detail.

Listing imports every plugin (that is what it is asked for); ``--strict`` exits 1 if any entry
point is BROKEN or any op name is offered twice (CONFLICT), for plugin authors' CI. Output cut
short by a closed pipe (``graphexec gates | head -1``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from graphexec.cli.common import emit_json

if TYPE_CHECKING:  # the registry (and the gates' pydantic models) load when the verb runs
    from graphexec.registry import GateInfo, Registry

__all__ = ["cmd_gates", "describe_gate", "register"]


def _listing(reg: Registry) -> dict[str, Any]:
    rows = [{"op": i.name, "version": i.version, "dist": i.dist, "dist_version": i.dist_version,
             "module": i.module} for i in reg.gates.values()]
    broken = [{"entry": b.entry, "dist": b.dist, "error": b.error} for b in reg.broken]
    return {"gates": rows, "broken": broken, "conflicts": reg.conflicts}


def _listing_lines(listing: dict[str, Any]) -> list[str]:
    lines = [f"{r['op']:<24} v{r['version']:<3} {r['dist']} {r['dist_version']}  ({r['module']})"
             for r in listing["gates"]]
    lines += [f"BROKEN {b['dist']}:{b['entry']}: {b['error']}" for b in listing["broken"]]
    return lines + [f"CONFLICT {c}" for c in listing["conflicts"]]


def _plain(v: Any) -> Any:
    """A default value as JSON can hold it (anything else as its repr)."""
    return json.loads(json.dumps(v, default=repr))


def describe_gate(info: GateInfo) -> dict[str, Any]:
    """Docstring, inputs (from ``forward``'s signature) and attributes of one gate."""
    import inspect

    from graphexec.gate import attr_fields, input_names

    cls = info.cls
    return {
        "op": info.name, "version": info.version, "dist": info.dist,
        "dist_version": info.dist_version, "module": info.module,
        "doc": inspect.cleandoc(cls.__doc__ or "(no docstring)"),
        "inputs": input_names(cls),
        "attrs": [{"name": n, "type": t, "default": _plain(d)} for n, t, d in attr_fields(cls)],
    }


def _describe_lines(d: dict[str, Any]) -> list[str]:
    lines = [f"{d['op']} v{d['version']} from {d['dist']} {d['dist_version']} ({d['module']})", ""]
    lines += ["  " + line for line in d["doc"].splitlines()] + [""]
    lines.append(f"inputs: {', '.join(d['inputs'])}")
    if not d["attrs"]:
        return lines + ["attributes: none"]
    lines.append("attributes:")
    return lines + [f"  {a['name']}: {a['type']} = {a['default']!r}" for a in d["attrs"]]


def _print(lines: list[str]) -> None:
    for line in lines:
        sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _quiet_broken_pipe() -> None:
    """The reader has gone: point stdout at devnull so the exit-time flush stays silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def cmd_gates(args: argparse.Namespace) -> int:
    from graphexec.registry import registry

    reg = registry()
    try:
        if args.name is not None:
            d = describe_gate(reg.resolve(args.name, 0))  # version 0: any
            emit_json(d) if args.json else _print(_describe_lines(d))
            sys.stdout.flush()
            return 0
        listing = _listing(reg)
        emit_json(listing) if args.json else _print(_listing_lines(listing))
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 0
    return 1 if args.strict and (listing["broken"] or listing["conflicts"]) else 0


def register(subparsers: Any) -> None:
    s = subparsers.add_parser(
        "gates", help="every registered op, its version and distribution; or one op in detail",
        description="List every op that installed plugins (graphexec included) provide, with "
                    "BROKEN lines for entry points that fail to load and CONFLICT lines for op "
                    "names offered twice. With NAME: that gate's docstring (formula and local "
                    "gradient), inputs and attributes with their types and defaults.")
    s.add_argument("name", nargs="?", metavar="NAME", help="describe this op (default: list all)")
    s.add_argument("--strict", action="store_true",
                   help="exit 1 if any line is BROKEN or CONFLICT (default: off)")
    s.add_argument("--json", action="store_true", help="print JSON (default: text)")
    s.set_defaults(func=cmd_gates)
