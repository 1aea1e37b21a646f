"""Format version 2 and modes: buffers, frozen parameters, training mode, ctx.rng, buffer updates."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphexec as gx
from graphexec.errors import GraphError, GraphFileError
from graphexec.gate import Attrs

GOLDEN = Path(__file__).parent / "golden" / "v1"


class ToyDropout(gx.Gate):
    """Inverted dropout: y = x * m / (1 - p), m ~ Bernoulli(1 - p) from ctx.rng, in training;
    y = x in evaluation.  Local gradient: dy/dx = m / (1 - p) (1 in evaluation)."""

    name, version = "toy_dropout", 1

    class Attrs(Attrs):
        p: float = 0.5

    def forward(self, ctx, x):
        if not ctx.training:
            ctx.scale = None
            return x
        ctx.scale = (ctx.rng.random(x.shape) >= self.attrs.p) / (1.0 - self.attrs.p)
        return x * ctx.scale

    def backward(self, ctx, dy):
        return (dy if ctx.scale is None else dy * ctx.scale,)


class ToyRunningMean(gx.Gate):
    """y = x; in training it proposes running <- 0.9 running + 0.1 mean(x, axis 0).
    Local gradient: dy/dx = 1; the buffer takes none."""

    name, version = "toy_running_mean", 1

    def forward(self, ctx, x, running):
        if ctx.training:
            ctx.update(1, 0.9 * running + 0.1 * x.mean(axis=0))
        return x

    def backward(self, ctx, dy):
        return dy, None


class ToyBoom(gx.Gate):
    """Raises in forward when any x > 100 (to test that a failed forward changes nothing)."""

    name, version = "toy_boom", 1

    def forward(self, ctx, x):
        if (x > 100).any():
            raise ValueError("boom")
        return x

    def backward(self, ctx, dy):
        return (dy,)


@pytest.fixture
def toys():
    for cls in (ToyDropout, ToyRunningMean, ToyBoom):
        gx.register_gate(cls)
    yield


def _net(seed: int = 0) -> gx.Graph:
    rng = np.random.default_rng(seed)
    b = gx.GraphBuilder("stateful")
    x, y = b.input("x", shape=(None, 4)), b.input("y", shape=(None,), dtype="int64")
    W1 = b.param("W1", rng.standard_normal((4, 8)) * 0.5, trainable=False)
    b1 = b.param("b1", np.zeros(8))
    rm = b.buffer("rm", np.zeros(8))
    W2 = b.param("W2", rng.standard_normal((8, 3)) * 0.5)
    h = b.op("relu", b.op("affine", x, W1, b1))
    h = b.op("toy_running_mean", b.op("toy_dropout", h, name="drop", p=0.25), rm, name="stat")
    s = b.op("matmul", h, W2, name="scores")
    b.output(s, "scores")
    b.output(b.op("softmax_cross_entropy", s, y), "loss")
    return b.build()


def _data(n: int = 60):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((n, 4))
    return X, (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0).astype(np.int64)


def _version(data: bytes) -> int:
    return struct.unpack("<8sIIQ", data[:24])[1]


# ---------------------------------------------------------------------------- format
@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.gx")), ids=lambda p: p.name)
def test_golden_version_1_files_round_trip_byte_for_byte(path):
    data = path.read_bytes()
    assert _version(data) == 1
    g = gx.loads(data)
    assert g.buffers == {} and g.frozen == frozenset() and g.trainable == list(g.params)
    assert gx.dumps(g) == data


def test_buffers_and_frozen_params_are_written_as_version_2_and_read_back(toys, tmp_path):
    g = _net()
    data = gx.dumps(g)
    assert _version(data) == 2
    h = gx.loads(data)
    assert list(h.buffers) == ["rm"] and h.frozen == {"W1"} and h.trainable == ["b1", "W2"]
    np.testing.assert_array_equal(h.buffers["rm"], np.zeros(8))
    assert gx.dumps(h) == data
    gx.save(h, tmp_path / "s.gx")
    assert (tmp_path / "s.gx").read_bytes() == data


def test_a_graph_without_buffers_or_frozen_params_stays_version_1():
    b = gx.GraphBuilder("plain")
    b.output(b.op("mul", b.input("x"), b.param("w", 2.0)), "f")
    assert _version(gx.dumps(b.build())) == 1


def test_version_2_file_loads_in_a_new_process(toys, tmp_path):
    gx.save(_net(), tmp_path / "s.gx")
    here = Path(__file__).parent
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(here)!r})
        import graphexec as gx
        from test_stateful import ToyDropout, ToyRunningMean, ToyBoom
        for c in (ToyDropout, ToyRunningMean, ToyBoom):
            gx.register_gate(c)
        g = gx.load({str(tmp_path / "s.gx")!r})
        print(sorted(g.buffers), sorted(g.frozen), g.trainable)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['rm'] ['W1'] ['b1', 'W2']"


def _v2_bytes(toys_graph: gx.Graph, edit) -> bytes:
    """The version-2 bytes of a graph whose header ``edit`` changed (tensors re-laid out)."""
    from graphexec.fileformat.codec import MAGIC, _all_entries, _header_bytes, align
    from graphexec.fileformat.schema import version_of
    from graphexec.header import to_header

    header, arrays = edit(*to_header(toys_graph))
    hb = _header_bytes(header)
    entries = _all_entries(header)
    section = bytearray(max((e.offset + e.nbytes for e in entries), default=0))
    for e, a in zip(entries, arrays):  # each tensor where its entry says, overlaps included
        section[e.offset:e.offset + e.nbytes] = np.ascontiguousarray(a).tobytes()
    pre = struct.pack("<8sIIQ", MAGIC, version_of(header), 0, len(hb))
    return pre + hb + bytes(align(24 + len(hb)) - 24 - len(hb)) + bytes(section)


def test_hostile_version_2_headers_are_refused(toys):
    from graphexec.fileformat.schema import Header, HeaderV2

    g = _net()

    def frozen_missing(h, a):
        return h.model_copy(update={"frozen": ["nope"]}), a

    def frozen_buffer(h, a):
        return h.model_copy(update={"frozen": ["rm"]}), a

    def frozen_twice(h, a):
        return h.model_copy(update={"frozen": ["W1", "W1"]}), a

    def buffer_named_like_param(h, a):
        e = h.buffers[0].model_copy(update={"name": "W2"})
        return h.model_copy(update={"buffers": [e]}), a

    def buffer_overlaps_param(h, a):
        e = h.buffers[0].model_copy(update={"offset": 0})
        return h.model_copy(update={"buffers": [e]}), a

    def v2_with_v1_content(h, a):
        return HeaderV2(**{**h.model_dump(), "buffers": [], "frozen": []}), a[:len(h.params)]

    cases = {frozen_missing: "marked frozen", frozen_buffer: "marked frozen",
             frozen_twice: "duplicate frozen name", buffer_named_like_param: "appears twice",
             buffer_overlaps_param: "starts at offset", v2_with_v1_content: "nothing version 2 adds"}
    for edit, words in cases.items():
        data = _v2_bytes(g, edit)
        with pytest.raises(GraphFileError, match=words):
            gx.loads(data)
    # a version-1 header carrying version-2 fields is an unknown field
    header, arrays = __import__("graphexec.header", fromlist=["to_header"]).to_header(g)
    v1 = bytearray(_v2_bytes(g, lambda h, a: (h, a)))
    v1[8:12] = struct.pack("<I", 1)
    with pytest.raises(GraphFileError, match="buffers|frozen"):
        gx.loads(bytes(v1))
    assert isinstance(header, HeaderV2) and not isinstance(Header, HeaderV2)


def test_frozen_must_name_a_parameter():
    from graphexec.graph import InputDecl, NodeDef, make_graph

    x = InputDecl("x", np.dtype("float64"), ())
    defs = [NodeDef("f", "mul", ("x", "buf"))]
    for frozen, words in ((["buf"], "a buffer"), (["zz"], "nothing of that name")):
        with pytest.raises(GraphError, match=f"only parameters can be frozen \\({words}"):
            make_graph("f", [x], {}, defs, {"f": "f"}, buffers={"buf": np.zeros(())},
                       frozen=frozen)


# ---------------------------------------------------------------------------- modes
def test_evaluation_mode_is_the_default_and_deterministic(toys):
    g = _net()
    X, y = _data()
    a = gx.Executor(g).forward(x=X, y=y)["scores"]
    b = gx.run(g, {"x": X, "y": y})["scores"]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(g.buffers["rm"], np.zeros(8))  # never changed in evaluation


def test_training_masks_are_a_pure_function_of_seed_step_and_node(toys):
    g = _net()
    X, y = _data()
    ex = gx.Executor(g)
    f = lambda **kw: ex.forward(x=X, y=y, training=True, **kw)["scores"]  # noqa: E731
    a, b, c, d = f(seed=1, step=2), f(seed=1, step=2), f(seed=1, step=3), f(seed=2, step=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    # the derivation is documented: default_rng([seed, step, stable_hash(node name)])
    from graphexec.plan import stable_hash

    assert stable_hash("drop") == stable_hash("drop") and stable_hash("drop") != stable_hash("stat")


def test_ctx_rng_outside_training_mode_is_a_clear_error():
    with pytest.raises(GraphError, match="training-mode forward"):
        gx.Ctx().rng


def test_training_forward_applies_buffer_updates_only_after_success(toys):
    g = _net()
    X, y = _data()
    before = g.buffers["rm"]
    gx.Executor(g).forward(x=X, y=y, training=True, seed=0)
    assert not np.array_equal(g.buffers["rm"], before)
    np.testing.assert_array_equal(before, np.zeros(8))  # the old array itself is untouched

    b = gx.GraphBuilder("boom")
    x = b.input("x", shape=(None, 2))
    rm = b.buffer("rm", np.zeros(2))
    b.output(b.op("toy_boom", b.op("toy_running_mean", x, rm)), "f")
    g2 = b.build()
    with pytest.raises(GraphError, match="boom"):
        gx.Executor(g2).forward(x=np.full((3, 2), 1000.0), training=True, seed=0)
    np.testing.assert_array_equal(g2.buffers["rm"], np.zeros(2))


def test_a_proposal_for_a_non_buffer_input_is_refused(toys):
    b = gx.GraphBuilder("bad")
    x = b.input("x", shape=(None, 2))
    b.output(b.op("toy_running_mean", x, b.param("p", np.zeros(2))), "f")
    g = b.build()
    with pytest.raises(GraphError, match="not a buffer"):
        gx.Executor(g).forward(x=np.ones((3, 2)), training=True, seed=0)
    np.testing.assert_array_equal(g.params["p"], np.zeros(2))


def test_buffers_take_no_gradient(toys):
    g = _net()
    X, y = _data()
    ex = gx.Executor(g)
    ex.forward(x=X, y=y)
    assert "rm" not in ex.backward({"loss": 1.0})
    ex.forward(x=X, y=y)
    with pytest.raises(GraphError, match="cannot take a gradient"):
        ex.backward({"loss": 1.0}, wrt=["rm"])


def test_gradcheck_in_training_mode_at_a_fixed_seed_and_step(toys):
    g = _net()
    X, y = _data(12)
    rep = gx.gradcheck(g, {"x": X, "y": y}, training=True, seed=3, step=5)
    assert rep.ok, str(rep)
    np.testing.assert_array_equal(g.buffers["rm"], np.zeros(8))


# ---------------------------------------------------------------------------- training
def test_fit_trains_only_trainable_params_and_updates_buffers(toys):
    g = _net()
    X, y = _data()
    W1, b1 = g.params["W1"].copy(), g.params["b1"].copy()
    gx.fit(g, X, y, epochs=3, batch_size=16, optimizer=gx.optim.Adam(lr=1e-2), seed=0)
    np.testing.assert_array_equal(g.params["W1"], W1)  # frozen: bit-identical
    assert not np.array_equal(g.params["b1"], b1)
    assert not np.array_equal(g.buffers["rm"], np.zeros(8))
    s1 = gx.run(g, {"x": X}, outputs=["scores"])["scores"]
    s2 = gx.run(g, {"x": X}, outputs=["scores"])["scores"]
    np.testing.assert_array_equal(s1, s2)


def test_resume_with_dropout_and_buffer_updates_is_bit_identical(toys, tmp_path):
    X, y = _data()
    opt = dict(batch_size=16, seed=0)
    whole = _net()
    gx.fit(whole, X, y, epochs=4, optimizer=gx.optim.Adam(lr=1e-2), **opt)
    part = _net()
    ck = tmp_path / "ck.gx"
    gx.fit(part, X, y, epochs=2, optimizer=gx.optim.Adam(lr=1e-2), checkpoint=ck, **opt)
    resumed = gx.load(ck)
    gx.fit(resumed, X, y, epochs=4, checkpoint=ck, resume=True, optimizer=None, **opt)
    for k in whole.params:
        np.testing.assert_array_equal(resumed.params[k], whole.params[k])
    np.testing.assert_array_equal(resumed.buffers["rm"], whole.buffers["rm"])


# ---------------------------------------------------------------------------- editing
ROOT = Path(__file__).parent.parent


def test_from_graph_round_trips_and_never_changes_the_original(toys):
    g = _net()
    h = gx.GraphBuilder.from_graph(g).build()
    assert gx.dumps(h) == gx.dumps(g)
    b = gx.GraphBuilder.from_graph(g)
    b.output(b.op("relu", b.value("scores")), "relu_scores")
    h = b.build()
    assert h.outputs == ["scores", "loss", "relu_scores"] and g.outputs == ["scores", "loss"]
    h.params["b1"][...] = 7.0
    assert not (g.params["b1"] == 7.0).any()  # arrays were copied


def test_put_a_loss_on_an_imported_network_and_train_only_its_head(tmp_path):
    pytest.importorskip("onnx")
    from graphexec.onnx_io import export_onnx, import_onnx

    src = gx.load(ROOT / "models" / "spiral_mlp.gx")
    export_onnx(src, tmp_path / "m.onnx", outputs=["scores"])
    net = import_onnx(tmp_path / "m.onnx")
    assert net.outputs == ["scores"]
    b = gx.GraphBuilder.from_graph(net)
    y = b.input("y", shape=(None,), dtype="int64")
    b.output(b.op("softmax_cross_entropy", b.value("scores"), y, name="ce"), "loss")
    params = list(net.params)
    b.freeze(*params[:-2])  # everything but the last layer
    g = b.build()
    assert g.trainable == params[-2:]
    before = {k: v.copy() for k, v in g.params.items()}
    X, lab = gx.data.spiral(seed=0)
    x_name = g.inputs[0]
    assert x_name == "x"
    gx.fit(g, X, lab, epochs=2, batch_size=64, optimizer=gx.optim.Adam(lr=1e-2), seed=0)
    for k in params[:-2]:
        np.testing.assert_array_equal(g.params[k], before[k])
    assert any(not np.array_equal(g.params[k], before[k]) for k in params[-2:])


def test_value_names_an_existing_value_or_says_what_exists():
    b = gx.GraphBuilder.from_graph(gx.load(ROOT / "models" / "add_mul.gx"))
    assert b.value("f").name == b._outputs["f"]
    with pytest.raises(GraphError, match="has no value 'nope'"):
        b.value("nope")


# ---------------------------------------------------------------------------- shapes
def test_specs_are_known_before_running_with_none_for_the_batch():
    g = gx.load(ROOT / "models" / "spiral_mlp.gx")
    assert g.specs["x"].shape == (None, 2)
    assert all(n.name in g.specs for n in g.nodes)


def test_a_shape_rule_error_names_the_node_at_build(toys):
    class Fussy(gx.Gate):
        """y = x (its rule wants 3 columns)."""

        name, version = "toy_fussy", 1

        def forward(self, ctx, x):
            return x

        def backward(self, ctx, dy):
            return (dy,)

        def infer(self, x):
            if x.shape is not None and x.shape[-1] not in (None, 3):
                raise GraphError(f"x has {x.shape[-1]} features but this gate expects 3")
            return x

    gx.register_gate(Fussy)
    b = gx.GraphBuilder("fussy")
    b.output(b.op("toy_fussy", b.input("x", shape=(None, 4)), name="fc2"), "f")
    with pytest.raises(GraphError, match=r"node 'fc2' \(toy_fussy\): x has 4 features but"):
        b.build()


def test_info_prints_the_per_node_table_for_every_shipped_model(capsys):
    import json

    from graphexec.cli.main import main

    for path in sorted((ROOT / "models").glob("*.gx")):
        assert main(["info", str(path), "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        g = gx.load(path)
        assert [r["name"] for r in info["nodes"]] == [n.name for n in g.nodes]
        assert info["totals"]["trainable"] == sum(v.size for v in g.params.values())
        assert main(["info", str(path)]) == 0
        out = capsys.readouterr().out
        assert "output shape" in out and "trainable" in out
    info_rows = None
    assert main(["info", str(ROOT / "models" / "spiral_mlp.gx"), "--json"]) == 0
    info_rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["nodes"]}
    assert info_rows["h1"] == {"name": "h1", "op": "affine", "shape": [None, 100],
                               "dtype": "float64", "params": 300}


def test_info_shows_frozen_and_buffers_and_version_2(toys, tmp_path, capsys):
    import json

    from graphexec.cli.main import main

    gx.save(_net(), tmp_path / "s.gx")
    assert main(["info", str(tmp_path / "s.gx"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format_version"] == 2
    assert info["totals"] == {"trainable": 8 + 24, "frozen": 32, "buffers": 8}
