"""Fuzzing the loader: generated graphs round-trip; mutated files load or fail cleanly.

Two parts:
- structure-aware (hypothesis): random valid graphs built with GraphBuilder from every registered
  op over random shapes, dtypes, parameters and metadata; they round-trip byte for byte, and every
  mutation of their bytes or of their header is a valid graph or a GraphexecError;
- byte-level: the mutation loop of ``fuzz/mutate.py`` over every file in ``models/``, CI-sized.
  ``python fuzz/mutate.py --cases 100000`` is the long run.

Each case must take under a second and, measured with tracemalloc, less memory than twice the
file plus 64 MB.
"""

from __future__ import annotations

import random
import sys
import tempfile
import typing
from pathlib import Path

import numpy as np
import pydantic
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import graphexec as gx
from graphexec.dtypes import DTYPE_NAMES
from graphexec.registry import registry

from conftest import ROOT

sys.path.insert(0, str(ROOT / "fuzz"))  # fuzz/mutate.py: the engine shared with the long run
import mutate  # noqa: E402

DTYPES = list(DTYPE_NAMES)  # every dtype of the table: version-2 files too
NAME = r"[A-Za-z_][A-Za-z0-9_.:\-]{0,12}"
CI_CASES = 5000

names = st.from_regex(NAME, fullmatch=True)
# Text: no C0 controls except tab and newline, no DEL or C1 controls, no lone surrogates.
texts = st.text(st.characters(exclude_categories=["Cs"],
                              exclude_characters=[chr(c) for c in (*range(9), *range(11, 32),
                                                                   *range(127, 160))]),
                max_size=40)


def attr_strategy(annotation: object) -> st.SearchStrategy[object] | None:
    """A strategy for an attribute of the given type, or None to keep its default."""
    if annotation is float:
        return st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 0.1])
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(-2**63, 2**64 - 1)
    if annotation is str:
        return texts
    if typing.get_origin(annotation) is list and typing.get_args(annotation) == (int,):
        return st.lists(st.integers(-1, 6), max_size=4)
    return None


@st.composite
def attrs_for(draw: st.DrawFn, model: type[pydantic.BaseModel]) -> dict[str, object]:
    attrs = {}
    for key, f in model.model_fields.items():
        strategy = attr_strategy(f.annotation)
        if strategy is not None and draw(st.booleans()):
            attrs[key] = draw(strategy)
    try:
        model(**attrs)
    except pydantic.ValidationError:
        return {}  # e.g. a reshape with two -1: keep the defaults
    return attrs


@st.composite
def graphs(draw: st.DrawFn) -> gx.Graph:
    """A valid graph: random ops of the registry over random inputs and parameters.

    Parameters are stored but not read by the random ops, and a draw whose declared shapes cannot
    fit (every gate's shape rule runs at build and load) is rejected: what is left are graphs the
    loader must accept.
    """
    reg = registry()
    used: set[str] = set()

    def fresh(prefix: str) -> str:
        name = draw(names.filter(lambda n: n not in used)) if draw(st.booleans()) else prefix
        while name in used:
            name += "_"
        used.add(name)
        return name

    b = gx.GraphBuilder(draw(names), metadata=draw(st.dictionaries(names, texts, max_size=3)))
    values: list[gx.Value] = []
    params: list[gx.Value] = []
    for i in range(draw(st.integers(1, 3))):
        shape = draw(st.none() | st.lists(st.none() | st.integers(0, 5), max_size=4))
        values.append(b.input(fresh(f"in{i}"), shape=shape, dtype=draw(st.sampled_from(DTYPES))))
    for i in range(draw(st.integers(0, 3))):
        arr = draw(hnp.arrays(st.sampled_from(DTYPES).map(np.dtype),
                              hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)))
        params.append(b.param(fresh(f"p{i}"), arr))
    for i in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(sorted(reg.gates)))
        info = reg.gates[op]
        n = info.n_inputs if info.n_inputs >= 0 else draw(st.integers(1, 3))
        ins = [draw(st.sampled_from(values)) for _ in range(n)]
        values.append(b.op(op, *ins, name=fresh(f"n{i}"), **draw(attrs_for(info.cls.Attrs))))
    for v in draw(st.lists(st.sampled_from(values + params), min_size=1, max_size=3, unique=True)):
        b.output(v, fresh(f"out_{v.name}"))
    try:
        return b.build(check_shapes=False)
    except gx.GraphError:
        reject()  # the declared shapes cannot fit: such a file is refused at load, by design


def same_graph(g: gx.Graph, h: gx.Graph) -> None:
    assert (g.name, g.inputs, g.outputs, g.output_map, g.metadata) == \
           (h.name, h.inputs, h.outputs, h.output_map, h.metadata)
    assert [(d.dtype, d.shape) for d in g.input_decls] == [(d.dtype, d.shape) for d in h.input_decls]
    assert list(g.params) == list(h.params)
    for k in g.params:
        a, b = g.params[k], h.params[k]
        assert (a.dtype, a.shape, a.tobytes()) == (b.dtype, b.shape, b.tobytes())
        assert b.flags.writeable
    assert [(n.name, n.op, n.version, n.inputs) for n in g.nodes] == \
           [(n.name, n.op, n.version, n.inputs) for n in h.nodes]


def assert_clean(out: mutate.Outcome, what: str) -> None:
    assert not out.problems(), f"{what}: {out.problems()} {out.kind} {out.seconds:.3f}s " \
                               f"peak {out.peak}\n{out.detail}"


FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@FAST
@given(graphs())
def test_generated_graph_round_trips_byte_for_byte(g):
    data = gx.dumps(g)
    h = gx.loads(data)
    same_graph(g, h)
    assert gx.dumps(h) == data
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "g.gx"
        gx.save(h, path)
        assert path.read_bytes() == data
        same_graph(g, gx.load(path))


@FAST
@given(graphs(), st.integers(0, 2**32 - 1))
def test_mutated_generated_graph_loads_or_fails_cleanly(g, seed):
    rng = random.Random(seed)
    data = gx.dumps(g)
    for _ in range(4):
        bad, how = mutate.mutate(rng, data)
        assert_clean(mutate.check(bad), how)


@FAST
@given(graphs(), st.integers(0, 2**32 - 1))
def test_header_edits_of_generated_graph_load_or_fail_cleanly(g, seed):
    """Structure-aware: one field of the decoded header changed, re-encoded with valid framing."""
    rng = random.Random(seed)
    data = gx.dumps(g)
    for _ in range(4):
        bad = mutate.header_edit(rng, data)
        assert_clean(mutate.check(bad), "header_edit")
        bad = mutate.header_swap_values(rng, data)
        assert_clean(mutate.check(bad), "header_swap_values")


def test_byte_mutations_of_every_model_load_or_fail_cleanly():
    """The CI-sized run of the long fuzz loop: every model file, a few thousand cases."""
    assert mutate.seed_files(), "no models/*.gx to fuzz"
    report = mutate.run(CI_CASES, seed=20240601)
    assert report.cases == CI_CASES
    assert not report.failures, report.summary()
    assert report.outcomes["graph"] > 0  # some mutations keep the file valid: the loop reaches deep
    assert report.outcomes["GraphFileError"] > CI_CASES // 2


def test_mutators_are_deterministic_and_change_the_bytes():
    data = (ROOT / "models" / "add_mul.gx").read_bytes()
    for m in mutate.MUTATORS:
        a = [m(random.Random(s), data) for s in range(20)]
        b = [m(random.Random(s), data) for s in range(20)]
        assert a == b, m.__name__
        assert any(x != data for x in a), m.__name__


@pytest.mark.parametrize("name", ["empty tensor too large for numpy", "duplicate output name",
                                  "escape in metadata key", "nested declared lengths",
                                  "too many objects"])
def test_fuzz_findings_stay_fixed(name):
    """Regression: each of these failed the fuzz properties before the fix (see docs/security.md)."""
    from test_hostile_corpus import CASES

    out = mutate.check(CASES[name][0]())
    assert_clean(out, name)
    assert out.kind in ("GraphFileError", "UnknownOpError")
