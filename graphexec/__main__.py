"""``python -m graphexec`` = the ``graphexec`` command."""

from graphexec.cli.main import entry

entry()
