"""``graphexec`` entry point: the parser and the dispatch. The verbs live in one module per
family (:data:`COMMANDS`); a user's mistake is one error line; exit codes 0 (success), 1 (a
check failed), 2 (bad usage or bad input).

Start-up is part of the interface: building the parser imports no numpy, pydantic or networkx
(``graphexec --help`` stays fast). Each verb imports what it needs when it runs, and options
whose help quotes a heavy module are added when their parser is first used
(:meth:`Parser.defer`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import graphexec as gx
from graphexec.cli import draw, gates, inspect, onnx, predict, train_parsers, view
from graphexec.cli.common import HelpFormatter, emit_json
from graphexec.errors import GraphexecError, printable

__all__ = ["entry", "main"]

#: One module per verb family; each has ``register(subparsers)`` setting ``func`` on its parsers.
#: A new verb is a new module listed here.
COMMANDS = (inspect, gates, train_parsers, draw, onnx, view, predict)


class ArgError(Exception):
    """argparse found a usage mistake (raised instead of argparse's own exit)."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class Parser(argparse.ArgumentParser):
    """Every (sub)parser: help lines with defaults; usage mistakes go through :func:`main`;
    options added by :meth:`defer` appear when the parser is first used."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self._deferred: list[Callable[[argparse.ArgumentParser], None]] = []

    def defer(self, add_options: Callable[[argparse.ArgumentParser], None]) -> None:
        """Call ``add_options(self)`` just before this parser parses or formats its help,
        so that ``graphexec --help`` never imports what those options' help quotes."""
        self._deferred.append(add_options)

    def complete(self) -> None:
        """Add every deferred option now."""
        while self._deferred:
            self._deferred.pop(0)(self)

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        self.complete()
        return super().parse_known_args(*args, **kwargs)

    def format_usage(self) -> str:
        self.complete()
        return super().format_usage()

    def format_help(self) -> str:
        self.complete()
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        raise ArgError(self, message)


def _version() -> str:
    import importlib.metadata  # ~50 ms to import: only for --version

    try:
        return importlib.metadata.version("graphexec")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return gx.__version__


class _VersionAction(argparse.Action):
    """``--version``: argparse's version action, with the version looked up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        sys.stdout.write(f"graphexec {_version()}\n")
        parser.exit()


def build_parser(*, lazy: bool = False) -> argparse.ArgumentParser:
    """The whole parser; with ``lazy``, deferred options are added only to the subparser
    that is used (what :func:`main` does)."""
    p = Parser(prog="graphexec", description="Run computational graphs stored in files.")
    p.add_argument("--version", action=_VersionAction, help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    if not lazy:
        for s in sub.choices.values():
            if isinstance(s, Parser):
                s.complete()
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code. A user's mistake prints one line, no traceback
    (with ``--json``, one JSON object ``{"error": ..., "exit_code": 2}`` on stdout)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(lazy=True)
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
