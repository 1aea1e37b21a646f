"""``gx.load(path, mmap=True)``: tensors are read-only views of a map of the file, equal to a
copying load; hostile files are refused exactly as without it; training copies on first write."""

from __future__ import annotations

import json
import mmap
import os
import signal
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

import graphexec as gx
from graphexec.builder import probe_inputs
from graphexec.errors import OptimError
from graphexec.optim import SGD, Adam

from conftest import MODELS, ROOT

CORPUS = ROOT / "tests" / "corpus"


def the_map(a: np.ndarray) -> object:
    """The object at the end of ``a``'s base chain (the buffer its memory belongs to)."""
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return a.obj if isinstance(a, memoryview) else a


def mlp_file(tmp_path, seed=0, name="net.gx") -> str:
    path = os.fspath(tmp_path / name)
    gx.save(gx.nn.mlp([4, 8, 3], seed=seed), path)
    return path


def data(n=60):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, 4)), rng.integers(0, 3, n)


# ---------------------------------------------------------------------------- views of the map
def test_parameters_are_read_only_views_of_one_map_equal_to_a_copying_load(tmp_path):
    path = mlp_file(tmp_path)
    mapped, copied = gx.load(path, mmap=True), gx.load(path)
    assert list(mapped.params) == list(copied.params)
    maps = {id(the_map(a)) for a in mapped.params.values()}
    assert len(maps) == 1 and isinstance(the_map(next(iter(mapped.params.values()))), mmap.mmap)
    for k, a in mapped.params.items():
        assert not a.flags.writeable and a.flags.c_contiguous and a.flags.aligned
        assert a.ctypes.data % 64 == 0
        assert a.dtype == copied.params[k].dtype and np.array_equal(a, copied.params[k])
        with pytest.raises(ValueError, match="read-only"):
            a[...] = 0
    assert all(a.flags.writeable for a in copied.params.values())


def test_forward_and_backward_of_every_shipped_model_match_the_copying_load():
    for path in sorted(MODELS.glob("*.gx")):
        mapped, copied = gx.load(path, mmap=True), gx.load(path)
        feed = probe_inputs(copied)
        outs = {}
        for g in (mapped, copied):
            ex = gx.Executor(g)
            fwd = ex.forward(feed)
            wrt = [k for k, v in g.params.items() if v.dtype.kind == "f"]
            seeds = {o: np.ones_like(v) for o, v in fwd.items() if v.dtype.kind == "f"}
            outs[id(g)] = (fwd, ex.backward(seeds, wrt=wrt) if seeds and wrt else {})
        (fa, ga), (fb, gb) = outs[id(mapped)], outs[id(copied)]
        assert fa.keys() == fb.keys() and ga.keys() == gb.keys(), path.name
        assert all(np.array_equal(fa[k], fb[k]) for k in fa), path.name
        assert all(np.array_equal(ga[k], gb[k]) for k in ga), path.name
        assert all(not a.flags.writeable for a in mapped.params.values())


def test_mapping_copies_no_tensor_bytes(tmp_path):
    """Bound by bytes: a copying load allocates the 8 MB of parameters, a mapped one under 1/10."""
    b = gx.GraphBuilder("big")
    x = b.input("x", shape=(1000,))
    w = b.param("W", np.random.default_rng(0).standard_normal((1000, 1000)))
    b.output(b.op("matmul", w, x), "y")
    path = tmp_path / "big.gx"
    gx.save(b.build(), path)
    gx.load(path, mmap=True)  # warm: imports and registry loading are not the load's cost

    def peak(**kw) -> int:
        tracemalloc.start()
        try:
            g = gx.load(path, **kw)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            del g

    assert peak() >= 8_000_000
    assert peak(mmap=True) < 800_000


def test_the_map_lives_as_long_as_a_view_of_it(tmp_path):
    path = mlp_file(tmp_path)
    expected = gx.load(path).params["W1"].copy()
    w = gx.load(path, mmap=True).params["W1"]  # the graph is gone at once
    view = w[1:]
    del w
    assert np.array_equal(view, expected[1:])


def test_a_graph_without_tensors_maps(tmp_path):
    path = tmp_path / "add.gx"
    gx.save(gx.load(MODELS / "add_mul.gx"), path)
    g, c = gx.load(path, mmap=True), gx.load(path)
    assert not g.params
    assert gx.Executor(g).forward(probe_inputs(c)) == gx.Executor(c).forward(probe_inputs(c))


def test_buffers_and_frozen_parameters_map_too(tmp_path):
    b = gx.GraphBuilder("v2")
    x = b.input("x", shape=(3,))
    w = b.param("W", np.arange(3.0), trainable=False)
    b.buffer("count", np.array([7.0]))
    b.output(b.op("mul", w, x), "y")
    path = tmp_path / "v2.gx"
    gx.save(b.build(), path)
    g = gx.load(path, mmap=True)
    assert isinstance(the_map(g.params["W"]), mmap.mmap)
    assert isinstance(the_map(g.buffers["count"]), mmap.mmap)
    assert the_map(g.params["W"]) is the_map(g.buffers["count"])
    assert g.buffers["count"].tolist() == [7.0] and not g.buffers["count"].flags.writeable


# ---------------------------------------------------------------------------- hostile files
def corpus() -> list[str]:
    index = CORPUS / "expected.json"
    return [e["file"] for e in json.loads(index.read_text())] if index.exists() else []


def refusal(path, **kw) -> tuple[type, str]:
    with pytest.raises(gx.GraphexecError) as info:
        gx.load(path, **kw)
    return type(info.value), str(info.value)


@pytest.mark.skipif(not corpus(), reason="no committed corpus (tests/corpus/expected.json)")
@pytest.mark.parametrize("file", corpus())
def test_every_corpus_file_is_refused_with_the_same_error_when_mapped(file):
    assert refusal(CORPUS / file, mmap=True) == refusal(CORPUS / file)


def test_every_truncation_of_a_file_is_refused_the_same_way_when_mapped(tmp_path):
    data = open(mlp_file(tmp_path), "rb").read()
    path = tmp_path / "cut.gx"
    for n in sorted({0, 1, 23, 24, 40, 64, 100, len(data) // 2, len(data) - 8, len(data) - 1}):
        path.write_bytes(data[:n])
        assert refusal(path, mmap=True) == refusal(path), n


def test_nonzero_padding_and_bad_bool_bytes_are_checked_when_mapped(tmp_path):
    b = gx.GraphBuilder("b")
    x = b.input("x", shape=(3,))
    m = b.param("mask", np.array([True, False, True]))
    b.output(b.op("mul", m, x), "y")
    good = bytearray(gx.dumps(b.build(check_shapes=False)))
    bad = bytearray(good)
    bad[-2] = 2  # the middle bool byte
    path = tmp_path / "bool.gx"
    path.write_bytes(bytes(bad))
    assert refusal(path, mmap=True)[1].endswith("tensor 'mask': bool bytes must be 0 or 1")
    hlen = int.from_bytes(good[16:24], "little")
    assert 24 + hlen < len(good) - 3  # there is padding after the header
    good[24 + hlen] = 1
    path.write_bytes(bytes(good))
    assert "padding after the header must be zero bytes" in refusal(path, mmap=True)[1]


def test_a_file_that_grew_after_validation_is_refused(tmp_path, monkeypatch):
    """The size read at open is the size mapped; a file that changed size in between (a writer
    appending to it) is refused, not mapped short or long."""
    from graphexec.fileformat import mapped

    path = mlp_file(tmp_path)
    real = mapped.read_index

    def grow(f, size, limits):
        out = real(f, size, limits)
        with open(path, "ab") as g:
            g.write(b"\0" * 4096)
        return out

    monkeypatch.setattr(mapped, "read_index", grow)
    size = os.path.getsize(path)
    assert refusal(path, mmap=True)[1].endswith(
        f"file changed size while loading: {size} bytes were validated, it now has {size + 4096}; "
        "load it again once it is written (a writer should replace it atomically)")


def test_a_file_that_shrank_after_validation_is_refused_not_mapped(tmp_path, monkeypatch):
    from graphexec.fileformat import mapped

    path = mlp_file(tmp_path)
    real = mapped.read_index

    def shrink(f, size, limits):
        out = real(f, size, limits)
        os.truncate(path, size - 64)
        return out

    monkeypatch.setattr(mapped, "read_index", shrink)
    assert "cannot map the file: " in refusal(path, mmap=True)[1]


# ---------------------------------------------------------------------------- the file replaced
def test_saving_over_a_mapped_file_leaves_the_mapped_graph_intact(tmp_path):
    path = mlp_file(tmp_path, seed=0)
    g = gx.load(path, mmap=True)
    before = {k: v.copy() for k, v in g.params.items()}
    gx.save(gx.nn.mlp([4, 8, 3], seed=1), path)  # atomic: a new file renamed over the old one
    assert all(np.array_equal(g.params[k], v) for k, v in before.items())
    assert not np.array_equal(gx.load(path).params["W1"], before["W1"])
    gx.save(g, path)  # a mapped graph saved over its own (replaced) file
    assert all(np.array_equal(gx.load(path).params[k], v) for k, v in before.items())


def test_save_of_a_mapped_graph_gives_the_same_bytes(tmp_path):
    path = mlp_file(tmp_path)
    assert gx.dumps(gx.load(path, mmap=True)) == open(path, "rb").read()


# ---------------------------------------------------------------------------- training
def test_fit_copies_each_trainable_parameter_once_and_trains_like_a_copying_load(tmp_path):
    path = mlp_file(tmp_path)
    X, y = data()
    mapped, copied = gx.load(path, mmap=True), gx.load(path)
    before = {k: v for k, v in mapped.params.items()}
    h1 = gx.fit(mapped, X, y, epochs=2, batch_size=16, optimizer=Adam(lr=1e-2))
    h2 = gx.fit(copied, X, y, epochs=2, batch_size=16, optimizer=Adam(lr=1e-2))
    assert h1.loss == h2.loss
    for k, w in mapped.params.items():
        assert w.flags.writeable and w is not before[k]
        assert np.array_equal(w, copied.params[k])
        assert not np.array_equal(w, before[k])  # the map itself is unchanged
    assert np.array_equal(before["W1"], gx.load(path).params["W1"])


def test_fit_keeps_frozen_parameters_mapped_and_restores_best_parameters(tmp_path):
    b = gx.GraphBuilder.from_graph(gx.nn.mlp([4, 8, 3], seed=0))
    b.freeze("W1")
    g0 = b.build()
    path = tmp_path / "frozen.gx"
    gx.save(g0, path)
    X, y = data()
    g = gx.load(path, mmap=True)
    assert g.frozen == {"W1"}
    h = gx.fit(g, X, y, epochs=3, batch_size=16, val=(X[:20], y[:20]), optimizer=SGD(lr=0.5))
    assert h.best_epoch != 3  # so the best parameters were restored (assigned) at the end
    assert isinstance(the_map(g.params["W1"]), mmap.mmap)
    assert g.buffers == {} and list(g.params) == ["W1", "b1", "W2", "b2"]
    assert all(g.params[k].flags.writeable for k in g.trainable)
    c = gx.load(path)
    gx.fit(c, X, y, epochs=3, batch_size=16, val=(X[:20], y[:20]), optimizer=SGD(lr=0.5))
    assert all(np.array_equal(g.params[k], c.params[k]) for k in c.params)


def test_an_optimizer_step_on_a_mapped_parameter_is_refused_naming_mmap(tmp_path):
    g = gx.load(mlp_file(tmp_path), mmap=True)
    grads = {k: np.ones_like(v) for k, v in g.params.items()}
    with pytest.raises(OptimError) as info:
        SGD(lr=0.1).step(g.params, grads)
    assert "is read-only (a view of a file loaded with mmap=True, say)" in str(info.value)
    assert "gx.fit, which copies it before its first update" in str(info.value)
    k = next(iter(g.params))
    g.params[k] = g.params[k].copy()  # what the message says to do
    SGD(lr=0.1).step({k: g.params[k]}, grads)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's SIGBUS behaviour")
def test_truncating_a_mapped_file_is_the_documented_sigbus_not_a_wrong_value(tmp_path):
    """What docs/format.md says is not protected: a file truncated under a live map kills the
    process that touches the lost pages (SIGBUS) rather than handing it wrong values. Run in a
    child process; the parent only reads its exit status."""
    path = tmp_path / "big.gx"
    gx.save(gx.nn.mlp([512, 512, 10], seed=0), path)
    child = textwrap.dedent(f"""
        import os, graphexec as gx
        g = gx.load({os.fspath(path)!r}, mmap=True)
        os.truncate({os.fspath(path)!r}, 4096)
        print(float(g.params["W2"].sum()))
    """)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGBUS, (done.returncode, done.stderr[-500:])


def test_resuming_from_a_mapped_checkpoint_is_bit_identical_to_a_copying_load(tmp_path):
    X, y = data()
    ck = tmp_path / "ck.gx"
    gx.fit(gx.nn.mlp([4, 8, 3], seed=0), X, y, epochs=2, batch_size=16, val=(X[:20], y[:20]),
           optimizer=Adam(lr=1e-2), checkpoint=ck)
    runs = []
    for kw in ({"mmap": True}, {}):
        g = gx.load(ck, **kw)
        h = gx.fit(g, X, y, epochs=4, resume=True, val=(X[:20], y[:20]))
        runs.append((h.loss, {k: v.copy() for k, v in g.params.items()}))
    assert runs[0][0] == runs[1][0]
    assert all(np.array_equal(runs[0][1][k], runs[1][1][k]) for k in runs[1][1])


def outcome(path, **kw) -> tuple:
    try:
        g = gx.load(path, **kw)
    except gx.GraphexecError as e:
        return type(e).__name__, str(e)
    return "loaded", {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in g.params.items()}


def test_mutated_files_load_or_fail_the_same_way_mapped_or_copied(tmp_path):
    """150 seeded byte mutations of a shipped model (header, padding and tensor bytes alike)."""
    data = (MODELS / "spiral_mlp.gx").read_bytes()
    rng = np.random.default_rng(17)
    path = tmp_path / "m.gx"
    kinds = set()
    for _ in range(150):
        buf = bytearray(data)
        for pos in rng.integers(0, len(buf), rng.integers(1, 4)):
            buf[pos] = int(rng.integers(0, 256))
        path.write_bytes(bytes(buf))
        a, b = outcome(path, mmap=True), outcome(path)
        assert a == b
        kinds.add(a[0])
    assert {"loaded", "GraphFileError"} <= kinds
