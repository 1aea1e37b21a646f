"""``graphexec draw``: the graph as the lecture draws it (DOT text, or SVG/PNG through Graphviz)."""

from __future__ import annotations

import argparse
from typing import Any

import graphexec as gx
from graphexec.cli.common import check_feed, parse_assignments, user_data

__all__ = ["cmd_draw", "register"]


def cmd_draw(args: argparse.Namespace) -> int:
    from graphexec.draw import render

    g = gx.load(args.file)
    feed = parse_assignments(args.input)
    check_feed(g, feed)
    inputs = feed if (args.input or args.grad) else None
    with user_data(args.file):
        render(g, args.output, inputs, args.grad, grad_of=args.grad_of,
               max_nodes=args.max_nodes, min_chain=args.min_chain)
    print(f"wrote {args.output}")
    return 0


def register(subparsers: Any) -> None:
    s = subparsers.add_parser(
        "draw", help="draw the graph (.dot/.svg/.png): values on the wires, gradients with --grad",
        description="Draw the graph as the lecture does: inputs on the left, one box per gate; "
                    "with inputs given, each wire's forward value (green) and, with --grad, the "
                    "gradient flowing back along it (red). .svg and .png need Graphviz' dot.")
    s.add_argument("file", help="a .gx graph file")
    s.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="OUT.dot (DOT text), OUT.svg or OUT.png (rendered by Graphviz)")
    s.add_argument("-i", "--input", action="append", metavar="NAME=VALUE",
                   help="an input's value: a JSON number or nested list, or @path.npy")
    s.add_argument("--grad", action="store_true",
                   help="also run backward and show each wire's gradient (seeds: ones at every "
                        "float output)")
    s.add_argument("--grad-of", action="append", metavar="OUTPUT",
                   help="with --grad: the gradient of only this output (e.g. loss); repeatable")
    s.add_argument("--max-nodes", type=int, default=60, metavar="N",
                   help="draw at most N gate boxes; the rest are counted in a note")
    s.add_argument("--min-chain", type=int, default=4, metavar="K",
                   help="fold runs of K or more one-input gates into one box")
    s.set_defaults(func=cmd_draw)
