"""``graphexec view``: the interactive circuit page (one offline HTML file)."""

from __future__ import annotations

import argparse
from typing import Any

import graphexec as gx
from graphexec.cli.common import UsageError, parse_assignments

__all__ = ["cmd_view", "register"]


def cmd_view(args: argparse.Namespace) -> int:
    from graphexec.viewer import view

    if not args.output.lower().endswith((".html", ".htm")):
        raise UsageError(f"-o {args.output!r}: expected an .html file; the page is one HTML file, "
                         "e.g. -o add_mul.html")
    g = gx.load(args.file)
    page = view(g, parse_assignments(args.input), args.output, grad_of=args.grad_of,
                check=args.check, layout=args.layout, seed=args.seed)
    print(f"wrote {page.path}")
    return 0


def register(subparsers: Any) -> None:
    s = subparsers.add_parser(
        "view", help="the interactive circuit page (.html): step forward, then backward",
        description="Write one self-contained HTML page (opens from file://, no network) that "
                    "steps through the forward pass node by node in the executor's order, then "
                    "the backward pass in reverse, with each value, gradient and chain-rule step.")
    s.add_argument("file", help="the graph to show (.gx)")
    s.add_argument("-o", "--output", required=True, metavar="OUT.html", help="the page to write")
    s.add_argument("-i", "--input", action="append", metavar="NAME=VALUE",
                   help="an input's value: a JSON number or nested list, or @path.npy; inputs "
                        "not given get random values (see --seed)")
    s.add_argument("--grad-of", metavar="OUTPUT",
                   help="the output whose gradient the backward pass shows (default: the first "
                        "float output)")
    s.add_argument("--check", action="store_true",
                   help="run a numerical gradient check and colour each node by its result")
    s.add_argument("--layout", choices=("auto", "dot", "dagre"), default="auto",
                   help="auto: Graphviz' dot if installed, else the page's dagre (default auto)")
    s.add_argument("--seed", type=int, default=0, help="seeds the random inputs (default 0)")
    s.set_defaults(func=cmd_view)
