"""``graphexec export`` / ``graphexec import``: graphs to and from ONNX (needs graphexec[onnx])."""

from __future__ import annotations

import argparse
from typing import Any

import graphexec as gx

__all__ = ["cmd_export", "cmd_import", "register"]


def cmd_export(args: argparse.Namespace) -> int:
    from graphexec.onnx_io import export_onnx

    g = gx.load(args.file)
    model = export_onnx(g, args.output, opset=args.opset)
    ops = sorted({(n.domain or "ai.onnx", n.op_type) for n in model.graph.node})
    custom = [f"{d}:{op}" for d, op in ops if d != "ai.onnx"]
    print(f"wrote {args.output}: {len(model.graph.node)} ONNX nodes, opset {args.opset}"
          + (f"; custom-domain ops: {', '.join(custom)}" if custom else ""))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from graphexec.onnx_io import import_onnx

    g = import_onnx(args.file, name=args.name)
    gx.save(g, args.output)
    print(f"wrote {args.output}: graph {g.name!r}, inputs {g.inputs}, outputs {g.outputs}, "
          f"{len(g.nodes)} nodes, {sum(p.size for p in g.params.values())} parameters")
    return 0


def register(subparsers: Any) -> None:
    from graphexec.onnx_io.export import DEFAULT_OPSET

    s = subparsers.add_parser("export", help="write the forward graph as ONNX",
                              description="Write the forward graph as standard ONNX ops "
                                          "(parameters as initializers). Needs graphexec[onnx].")
    s.add_argument("file")
    s.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    s.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset of the default domain (default {DEFAULT_OPSET})")
    s.set_defaults(func=cmd_export)
    s = subparsers.add_parser("import", help="read an ONNX model (the supported op subset) as .gx",
                              description="Translate an ONNX model into a graphexec graph; a model "
                                          "with unsupported ops is refused, naming all of them.")
    s.add_argument("file", metavar="IN.onnx")
    s.add_argument("-o", "--output", required=True, metavar="OUT.gx")
    s.add_argument("--name", help="the graph's name (default: the ONNX graph's)")
    s.set_defaults(func=cmd_import)
