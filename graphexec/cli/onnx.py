"""``graphexec export`` / ``graphexec import``: graphs to and from ONNX (needs graphexec[onnx])."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

import graphexec as gx
from graphexec.cli.common import UsageError, emit_json

__all__ = ["cmd_export", "cmd_import", "register", "split_names"]


def split_names(text: str | None) -> list[str] | None:
    """``--outputs A,B`` as ["A", "B"] (None when the option is absent)."""
    if text is None:
        return None
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise UsageError(f"--outputs expects NAME[,NAME...], found {text!r}")
    return list(dict.fromkeys(names))


def cmd_export(args: argparse.Namespace) -> int:
    from graphexec.onnx_io import export_onnx

    g = gx.load(args.file)
    model = export_onnx(g, args.output, outputs=split_names(args.outputs), dtype=args.dtype,
                        opset=args.opset)
    summary = export_summary(model, args.output, args.opset, set(g.params))
    if args.json:
        emit_json(summary)
        return 0
    custom = [op for op in summary["ops"] if ":" in op]
    print(f"wrote {args.output}: {summary['nodes']} ONNX nodes, opset {args.opset}; "
          f"inputs {', '.join(i['name'] for i in summary['inputs']) or 'none'}; "
          f"outputs {', '.join(o['name'] for o in summary['outputs'])}"
          + (f"; custom-domain ops: {', '.join(custom)}" if custom else ""))
    return 0


def export_summary(model: Any, path: str, opset: int, params: set[str]) -> dict[str, Any]:
    """What ``export`` wrote: ONNX op counts (``domain:op`` for custom ones), inputs, outputs,
    and how many parameter values (the graph's ``params`` among the initializers)."""
    ops = Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}"
                  for n in model.graph.node)
    return {"wrote": path, "format": "onnx", "opset": opset, "ir_version": model.ir_version,
            "nodes": len(model.graph.node), "ops": dict(sorted(ops.items())),
            "inputs": [_value_info(v) for v in model.graph.input],
            "outputs": [_value_info(v) for v in model.graph.output],
            "parameters": sum(_size(t.dims) for t in model.graph.initializer if t.name in params)}


def _value_info(v: Any) -> dict[str, Any]:
    from graphexec.onnx_io.common import ONNX_DTYPES

    names = {code: name for name, code in ONNX_DTYPES.items()}
    t = v.type.tensor_type
    shape = ([d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
             if t.HasField("shape") else None)
    return {"name": v.name, "dtype": names.get(t.elem_type, str(t.elem_type)), "shape": shape}


def _size(dims: Any) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def cmd_import(args: argparse.Namespace) -> int:
    from graphexec.onnx_io import import_onnx

    g = import_onnx(args.file, name=args.name)
    gx.save(g, args.output)
    params = sum(p.size for p in g.params.values())
    if args.json:
        emit_json({"wrote": args.output, "format": "graphexec", "graph": g.name,
                   "nodes": len(g.nodes),
                   "ops": dict(sorted(Counter(n.op for n in g.nodes).items())),
                   "inputs": [{"name": d.name, "dtype": d.dtype.name,
                               "shape": None if d.shape is None else list(d.shape)}
                              for d in g.input_decls],
                   "outputs": g.outputs, "parameters": int(params)})
        return 0
    print(f"wrote {args.output}: graph {g.name!r}, inputs {g.inputs}, outputs {g.outputs}, "
          f"{len(g.nodes)} nodes, {params} parameters")
    return 0


def _export_options(s: argparse.ArgumentParser) -> None:
    from graphexec.onnx_io.export import DEFAULT_OPSET

    s.add_argument("file", help="the graph to export (.gx)")
    s.add_argument("-o", "--output", required=True, metavar="OUT.onnx",
                   help="the model to write (must end in .onnx)")
    s.add_argument("--outputs", metavar="NAME[,NAME]",
                   help="only these outputs (graph outputs, or node names for intermediate "
                        "values), the nodes they need and the inputs they read "
                        "(default: every output)")
    s.add_argument("--dtype", metavar="float32|float64",
                   help="convert every float input, parameter and constant to this dtype; "
                        "integer inputs such as labels are kept (default: as in the graph)")
    s.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset of the default domain (default {DEFAULT_OPSET})")
    s.add_argument("--json", dest="json", action="store_true",
                   help="print what was written as one JSON object (default: one line of text)")


def register(subparsers: Any) -> None:
    s = subparsers.add_parser("export", help="write the forward graph as ONNX",
                              description="Write the forward graph as standard ONNX ops "
                                          "(parameters as initializers). Needs graphexec[onnx].")
    s.defer(_export_options)  # the default opset is the exporter's; imported on first use
    s.set_defaults(func=cmd_export)
    s = subparsers.add_parser("import", help="read an ONNX model (the supported op subset) as .gx",
                              description="Translate an ONNX model into a graphexec graph; a model "
                                          "with unsupported ops is refused, naming all of them.")
    s.add_argument("file", metavar="IN.onnx", help="the ONNX model to read")
    s.add_argument("-o", "--output", required=True, metavar="OUT.gx", help="the graph to write")
    s.add_argument("--name", help="the graph's name (default: the ONNX graph's)")
    s.add_argument("--json", dest="json", action="store_true",
                   help="print what was written as one JSON object (default: one line of text)")
    s.set_defaults(func=cmd_import)
