"""Coverage-guided fuzzing of ``graphexec.loads`` with atheris (libFuzzer for Python).

atheris is an optional developer tool, not a dependency of graphexec::

    pip install atheris
    python fuzz/atheris_load.py models/ -max_total_time=600 -rss_limit_mb=2048
    python fuzz/atheris_load.py -atheris_runs=100000 models/

Arguments go to libFuzzer: a folder (or several) of seed files, ``-max_total_time``,
``-timeout=1`` (seconds per input: a slower case is reported as a hang), ``-rss_limit_mb``. A crash
is any exception other than a ``graphexec.GraphexecError`` subclass, or a loaded graph that does
not save to canonical bytes; libFuzzer writes the input to ``crash-<sha1>`` and stops. Replay it
with ``python fuzz/atheris_load.py crash-<sha1>``.
"""

from __future__ import annotations

import sys

try:
    import atheris
except ImportError:  # pragma: no cover - optional
    sys.exit("atheris is not installed: pip install atheris")

with atheris.instrument_imports():
    import graphexec as gx
    import graphexec.graph
    from graphexec.fileformat import codec, scan  # noqa: F401 - instrumented for coverage


def test_one_input(data: bytes) -> None:
    try:
        g = gx.loads(data)
    except gx.GraphexecError:
        return
    canon = gx.dumps(g)
    if gx.dumps(gx.loads(canon)) != canon:
        raise AssertionError("dumps(loads(dumps(g))) != dumps(g)")


def main() -> None:
    if not any(a.startswith("-timeout") for a in sys.argv):
        sys.argv.append("-timeout=1")
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
