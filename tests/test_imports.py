"""Import hygiene: no circular imports, and each pipeline stage imports only its neighbours."""

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import graphexec

PACKAGE = Path(graphexec.__file__).parent


def _modules():
    """Every module of the package; ``__main__`` runs the CLI when imported, so it is left out."""
    return sorted(m.name for m in pkgutil.walk_packages([str(PACKAGE)], "graphexec.")
                  if not m.name.endswith(".__main__"))


def test_every_module_imports_first_in_a_fresh_interpreter():
    """Each module is imported as the first graphexec module of a fresh import state (every
    ``graphexec*`` entry of sys.modules dropped before it), in a subprocess, so that whatever
    order a user imports things in, no cycle shows up as a partially initialised module."""
    script = (
        "import importlib, json, sys, traceback\n"
        "bad = {}\n"
        f"for name in {_modules()!r}:\n"
        "    for m in [m for m in sys.modules if m == 'graphexec' or m.startswith('graphexec.')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as e:\n"
        "        bad[name] = f'{type(e).__name__}: {e}'\n"
        "print(json.dumps(bad))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {}


def test_the_module_list_is_not_empty():
    assert {"graphexec.graph", "graphexec.header", "graphexec.executor", "graphexec.dtypes",
            "graphexec.fileformat.codec", "graphexec.atomic", "graphexec.errors"} <= set(_modules())


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth, except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _touches(imported: set[str], banned: str) -> list[str]:
    return sorted(m for m in imported if m == banned or m.startswith(banned + "."))


#: module (file under graphexec/) -> what it must never import. The pipeline is
#: fileformat -> header -> graph -> plan -> executor; each stage sees only its neighbours.
RULES = {
    # (graph.py may call graphexec.api lazily: a Graph pickles as its file's bytes)
    "graph.py": ["graphexec.fileformat", "graphexec.header", "graphexec.executor", "graphexec.plan",
                 "msgpack"],
    "plan.py": ["graphexec.fileformat", "graphexec.header", "graphexec.executor", "networkx",
                "msgpack"],
    "executor.py": ["graphexec.fileformat", "graphexec.header", "graphexec.api", "networkx",
                    "msgpack"],
    "gate.py": ["graphexec.fileformat", "graphexec.graph", "graphexec.executor", "networkx",
                "msgpack"],
    "dtypes.py": ["graphexec", "numpy", "pydantic"],
    "errors.py": ["graphexec", "numpy", "networkx", "msgpack"],
    "atomic.py": ["graphexec.fileformat", "graphexec.graph", "graphexec.executor"],
}
for _name in ("__init__.py", "codec.py", "schema.py", "scan.py"):
    RULES[f"fileformat/{_name}"] = ["graphexec.gate", "graphexec.gates", "graphexec.graph",
                                    "graphexec.header", "graphexec.executor", "graphexec.plan",
                                    "graphexec.registry", "networkx"]


@pytest.mark.parametrize("module", sorted(RULES))
def test_stages_import_only_their_neighbours(module):
    imported = _imports(PACKAGE / module)
    assert [hit for banned in RULES[module] for hit in _touches(imported, banned)] == []


def test_the_import_check_sees_imports():
    """The checker itself: it finds a module-level and a function-level import, and skips a
    TYPE_CHECKING block (so a rule above cannot pass because it reads nothing)."""
    assert "graphexec.graph" in _imports(PACKAGE / "header.py")
    assert "graphexec.fileformat" in _imports(PACKAGE / "header.py")
    assert "networkx" in _imports(PACKAGE / "graph.py")
    assert "graphexec.header" not in _imports(PACKAGE / "graph.py")  # only for type checking
