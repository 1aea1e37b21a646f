"""``graphexec`` entry point: the parser and the dispatch. The verbs live in one module per
family (:data:`COMMANDS`); a user's mistake is one error line; exit codes 0 (success), 1 (a
check failed), 2 (bad usage or bad input)."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from typing import Any, NoReturn

import graphexec as gx
from graphexec.cli import draw, gates, inspect, onnx, predict, train, view
from graphexec.cli.common import HelpFormatter, emit_json
from graphexec.errors import GraphexecError, printable

__all__ = ["entry", "main"]

#: One module per verb family; each has ``register(subparsers)`` setting ``func`` on its parsers.
#: A new verb is a new module listed here.
COMMANDS = (inspect, gates, train, draw, onnx, view, predict)


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
    for module in COMMANDS:
        module.register(sub)
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
