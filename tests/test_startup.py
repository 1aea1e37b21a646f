"""Start-up: what ``import graphexec``, ``graphexec --help`` and ``graphexec info`` import.

Behaviour, not speed (the times are in ``benchmarks/bench_startup.py``): each check runs in a
fresh interpreter and looks at ``sys.modules``, so a heavy import that creeps back in fails here
whatever the machine's speed.
"""

import contextlib
import io
import json
import subprocess
import sys

import pytest

import graphexec as gx
from graphexec import registry as regmod
from graphexec.cli.main import build_parser

from conftest import MODELS

#: Never imported by ``import graphexec`` or by the parser of ``graphexec --help``.
HEAVY = ["numpy", "pydantic", "pydantic_core", "networkx", "msgpack", "matplotlib", "onnx",
         "onnxruntime", "dask", "distributed", "sklearn", "tqdm", "importlib.metadata",
         "graphexec.training"]
#: Still never imported by ``graphexec info`` on a small file.
NOT_FOR_INFO = ["networkx", "matplotlib", "onnx", "onnxruntime", "dask", "distributed",
                "sklearn", "tqdm", "graphexec.training", "graphexec.executor", "graphexec.plan",
                "graphexec.gates.conv", "graphexec.gates.norm"]


def _loaded_after(code: str) -> list[str]:
    """The names in sys.modules after ``code`` runs in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _hits(loaded: list[str], banned: list[str]) -> list[str]:
    return sorted(m for m in loaded for b in banned if m == b or m.startswith(b + "."))


def test_import_graphexec_loads_only_the_package_and_its_errors():
    loaded = _loaded_after("import graphexec")
    assert _hits(loaded, HEAVY) == []
    assert [m for m in loaded if m.startswith("graphexec")] == ["graphexec", "graphexec.errors"]


def test_the_cli_parser_and_every_light_verbs_help_import_nothing_heavy():
    """``graphexec --help`` and ``graphexec VERB --help`` for every verb whose help quotes no
    heavy module (train, sweep and export quote the optimisers, activations and ONNX opset, so
    their options are added, and imported, when their parser is used)."""
    verbs = ["info", "run", "check", "gates", "evaluate", "draw", "import", "view", "predict"]
    code = ("import contextlib, io\n"
            "from graphexec.cli.main import main\n"
            f"for argv in [['--help'], *[[v, '--help'] for v in {verbs!r}]]:\n"
            "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "        assert main(argv) == 0, argv\n"
            "    assert 'usage: graphexec' in out.getvalue(), argv\n")
    assert _hits(_loaded_after(code), HEAVY) == []


def test_info_on_a_small_file_imports_only_what_loading_needs():
    code = ("import contextlib, io\n"
            "from graphexec.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            f"    assert main(['info', {str(MODELS / 'add_mul.gx')!r}]) == 0\n"
            "assert 'op mul v1 from graphexec' in out.getvalue()\n")
    loaded = _loaded_after(code)
    assert _hits(loaded, NOT_FOR_INFO) == []
    assert "graphexec.gates.arith" in loaded  # the gates the file uses, and only those


def test_loading_a_graph_imports_only_its_gates_and_listing_imports_all():
    loaded = _loaded_after(f"import graphexec as gx\ngx.load({str(MODELS / 'add_mul.gx')!r})")
    gates = sorted(m for m in loaded if m.startswith("graphexec.gates."))
    assert gates == ["graphexec.gates._samples", "graphexec.gates._shapes",
                     "graphexec.gates.arith"]
    assert "networkx" not in loaded  # the file's nodes are in order: no sort needed
    listed = _loaded_after("from graphexec.registry import registry\nregistry().gates")
    assert {"graphexec.gates.conv", "graphexec.gates.norm", "graphexec.gates.layout"} <= set(listed)


def test_a_graph_out_of_order_is_still_sorted():
    """networkx is imported on demand for the sort: the order and the cycle message hold."""
    from graphexec.graph import NodeDef, _order

    defs = [NodeDef("b", "neg", ("a",), {}), NodeDef("a", "neg", ("x",), {})]
    assert [d.name for d in _order(defs)] == ["a", "b"]


def test_every_public_name_resolves_and_is_listed():
    code = ("import graphexec as gx\n"
            "missing = [n for n in gx.__all__ if getattr(gx, n, None) is None]\n"
            "assert missing == [], missing\n"
            "assert set(gx.__all__) <= set(dir(gx))\n"
            "from graphexec import *  # noqa\n"
            "from graphexec import Spec, load, GraphBuilder, Executor, nn, optim, fit\n"
            "assert gx.nn.convnet is __import__('graphexec.training.convnet', "
            "fromlist=['x']).convnet\n")
    _loaded_after(code)


def test_lazy_names_are_the_objects_of_their_modules():
    from graphexec import api, builder, executor, gate, registry, training

    assert (gx.load, gx.save, gx.GraphBuilder, gx.run) == (api.load, api.save, builder.GraphBuilder,
                                                         executor.run)
    assert (gx.Gate, gx.Spec, gx.register_gate) == (gate.Gate, gate.Spec, registry.register_gate)
    assert gx.fit is training.train.fit and gx.nn.mlp is training.nn.mlp
    with pytest.raises(AttributeError, match="module 'graphexec' has no attribute 'nope'"):
        gx.nope  # noqa: B018


def test_gx_nn_convnet_is_reachable_in_a_fresh_interpreter():
    """``gx.nn.convnet`` (README, docs/training.md) failed with AttributeError unless
    ``graphexec.nn`` had been imported first: ``gx.nn`` was ``graphexec.training.nn``."""
    _loaded_after("import graphexec as gx\nassert callable(gx.nn.convnet) and gx.nn.mlp")


def _helps(lazy: bool) -> dict[str, str]:
    top = build_parser(lazy=lazy)
    sub = next(a for a in top._actions if a.__class__.__name__ == "_SubParsersAction")
    out = {}
    for verb, p in sub.choices.items():
        with contextlib.redirect_stdout(io.StringIO()):
            out[verb] = p.format_help()
    return out


def test_deferred_options_give_the_same_parsers_and_help():
    eager, lazy = _helps(False), _helps(True)
    assert eager == lazy
    assert "--optimizer {adam,rmsprop,sgd}" in " ".join(eager["train"].split())
    args = build_parser(lazy=True).parse_args(["train", "f.gx", "--data", "spiral", "--lr", "0.1"])
    assert (args.file, args.lr, args.epochs) == ("f.gx", 0.1, None)


class _CountingDist:
    def __init__(self, name: str):
        self.name, self.reads = name, 0

    @property
    def metadata(self):
        self.reads += 1
        return {"Name": self.name}

    @property
    def version(self):
        self.reads += 1
        return "1.0"


class _EP:
    def __init__(self, name, dist):
        self.name, self.dist, self.value = name, dist, f"x:{name}"

    def load(self):
        raise AssertionError("discovery must import nothing")


def test_discovery_reads_each_distributions_metadata_once():
    """Each read parses the METADATA file; it was read twice per entry point (40 built-in ops:
    80 parses at every start-up)."""
    dist = _CountingDist("many-gates")
    reg = regmod.build_registry([_EP(f"op{i}", dist) for i in range(10)])
    assert dist.reads == 2  # name and version, once for the distribution
    assert reg.names() == sorted(f"op{i}" for i in range(10))


def test_importing_the_gradcheck_module_first_keeps_gx_gradcheck_the_function():
    """The submodule ``graphexec.gradcheck`` is bound on the package when it is first imported;
    with lazy names that shadowed the function ``gx.gradcheck`` (a suite run in this order
    failed with "'module' object is not callable")."""
    _loaded_after("import graphexec.gradcheck\nimport graphexec as gx\n"
                  "from graphexec.gradcheck import gradcheck, GradcheckReport\n"
                  "assert gx.gradcheck is gradcheck and callable(gx.gradcheck)\n"
                  "assert gx.GradcheckReport is GradcheckReport")
