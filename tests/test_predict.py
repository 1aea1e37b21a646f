"""Batch prediction: chunked gx.predict, the `graphexec predict` command, Graph pickling."""

import copy
import os
import pickle
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import graphexec as gx
from graphexec import inference
from graphexec.cli.main import main
from graphexec.errors import GraphError


def _net(d=6, h=16, c=3, seed=0):
    return gx.nn.mlp([d, h, c], seed=seed)


def _rows(n, d=6, seed=1, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)


# ---------------------------------------------------------------------------- gx.predict
@pytest.mark.parametrize("batch_size", [1, 7, 256, 5000])
def test_chunked_predict_equals_one_pass(batch_size):
    g, X = _net(), _rows(3000)
    whole = gx.run(g, {"x": X}, outputs=["scores"])["scores"]
    got = gx.predict(g, X, batch_size=batch_size)
    assert got.shape == whole.shape and got.dtype == whole.dtype
    np.testing.assert_allclose(got, whole, rtol=1e-12, atol=1e-12)  # BLAS rounding at most


def test_chunked_predict_is_exactly_the_loop_over_chunks():
    g, X = _net(), _rows(2500)
    loop = np.concatenate([gx.run(g, {"x": X[i:i + 300]}, outputs=["scores"])["scores"]
                           for i in range(0, len(X), 300)])
    assert np.array_equal(gx.predict(g, X, batch_size=300), loop)


def test_default_batch_size_keeps_one_chunk_within_the_budget(monkeypatch):
    g, X = _net(d=6, h=64), _rows(5000)
    monkeypatch.setattr(inference, "ACTIVATION_BUDGET", 2**20)
    calls = []
    real = inference.forward_chunk
    monkeypatch.setattr(inference, "forward_chunk",
                        lambda g_, X_, out="scores": calls.append(len(X_)) or real(g_, X_, out))
    bs = inference.default_batch_size(g, X)
    # per row: the input (6) + affine (64) + relu (64) + affine (3) float64 values = 1096 bytes
    assert bs == 2**20 // ((6 + 64 + 64 + 3) * 8)
    got = gx.predict(g, X)
    assert calls == [bs] * (len(X) // bs) + [len(X) % bs]
    np.testing.assert_allclose(got, gx.predict(g, X, batch_size=len(X)), rtol=1e-12, atol=1e-12)


def test_predict_other_output_and_bad_arguments():
    g, X = _net(), _rows(10)
    assert gx.predict(g, X, output="scores").shape == (10, 3)
    with pytest.raises(GraphError, match=r"no output 'nope'; its outputs are \['loss', 'scores'\]"):
        gx.predict(g, X, output="nope")
    with pytest.raises(GraphError, match="batch_size must be an integer >= 1"):
        gx.predict(g, X, batch_size=0)
    with pytest.raises(GraphError, match="expects float64, got a float32 array"):
        gx.predict(g, X.astype(np.float32), batch_size=3)


def test_empty_input_gives_empty_scores():
    assert gx.predict(_net(), _rows(0)).shape == (0, 3)


# ---------------------------------------------------------------------------- pickling
def test_graph_pickles_as_its_file_bytes_after_it_ran():
    g = _net()
    gx.predict(g, _rows(4))  # compiles a plan, which holds a lock
    h = pickle.loads(pickle.dumps(g))
    assert gx.dumps(h) == gx.dumps(g)
    assert h.params["W1"] is not g.params["W1"]
    assert not hasattr(h, "_plan")
    assert gx.dumps(copy.deepcopy(g)) == gx.dumps(g)


# ---------------------------------------------------------------------------- the CLI
@pytest.fixture
def files(tmp_path):
    g = _net()
    gx.save(g, tmp_path / "net.gx")
    X = _rows(1000)
    np.save(tmp_path / "x.npy", X)
    return g, X, tmp_path


def test_cli_predict_writes_scores_and_labels(files, capsys):
    g, X, d = files
    assert main(["predict", str(d / "net.gx"), "--input", str(d / "x.npy"), "-o",
                 str(d / "s.npy"), "--batch-size", "128"]) == 0
    assert np.array_equal(np.load(d / "s.npy"), gx.predict(g, X, batch_size=128))
    assert "(1000, 3) for 1000 rows (8 chunks of up to 128 rows)" in capsys.readouterr().out
    assert main(["predict", str(d / "net.gx"), "--input", str(d / "x.npy"), "-o",
                 str(d / "l.npy"), "--labels"]) == 0
    labels = np.load(d / "l.npy")
    assert labels.dtype == np.int64 and np.array_equal(labels, gx.predict(g, X).argmax(axis=1))
    assert sorted(os.listdir(d)) == ["l.npy", "net.gx", "s.npy", "x.npy"]  # no temp file left


def test_cli_predict_casts_float32_rows(files):
    g, X, d = files
    np.save(d / "x32.npy", X.astype(np.float32))
    assert main(["predict", str(d / "net.gx"), "--input", str(d / "x32.npy"), "-o",
                 str(d / "s.npy")]) == 0
    assert np.array_equal(np.load(d / "s.npy"), gx.predict(g, X.astype(np.float32).astype(float)))


def test_cli_predict_failure_leaves_the_old_output(files, monkeypatch, capsys):
    d = files[2]
    np.save(d / "s.npy", np.zeros(3))
    real, seen = inference.forward_chunk, []

    def failing(g_, X_, out="scores"):
        seen.append(1)
        if len(seen) == 3:
            raise GraphError("boom")
        return real(g_, X_, out)

    monkeypatch.setattr("graphexec.inference.forward_chunk", failing)  # imported when predict runs
    assert main(["predict", str(d / "net.gx"), "--input", str(d / "x.npy"), "-o",
                 str(d / "s.npy"), "--batch-size", "100"]) == 2
    assert capsys.readouterr().err == "error: boom\n"
    assert np.array_equal(np.load(d / "s.npy"), np.zeros(3))
    assert sorted(os.listdir(d)) == ["net.gx", "s.npy", "x.npy"]


@pytest.mark.parametrize("args, message", [
    (["--input", "missing.npy"], "expected a .npy file of numbers, cannot read it"),
    (["--output", "loss"], "output 'loss' of graph 'mlp_6_16_3' needs more inputs than 'x'"),
    (["--output", "nope"], "--output 'nope': graph 'mlp_6_16_3' has outputs ['loss', 'scores']"),
    (["--batch-size", "0"], "--batch-size expects a number of rows >= 1, got 0"),
    (["-o", "no/such/dir/s.npy"], "expected an existing folder"),
    (["--input", "wide.npy"], "input 'x' expects shape (None, 6) (None = any size), got (1, 4)"),
    (["--input", "complex.npy"], "expected a .npy array of rows of numbers, found complex128"),
])
def test_cli_predict_bad_input_is_one_line(files, capsys, monkeypatch, args, message):
    d = files[2]
    monkeypatch.chdir(d)
    np.save(d / "wide.npy", np.ones((5, 4)))
    np.save(d / "complex.npy", np.ones((5, 6), complex))
    base = {"--input": "x.npy", "-o": "s.npy"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    argv = ["predict", "net.gx"] + [t for kv in base.items() for t in kv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_cli_predict_memory_is_a_few_chunks_not_the_input(tmp_path):
    """Bytes allocated while predicting 40,000 rows (20 MB) in chunks of 1,000 rows."""
    g = gx.nn.mlp([64, 32, 10], seed=0)
    gx.save(g, tmp_path / "net.gx")
    X = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float64,
                                  shape=(40_000, 64))
    for i in range(0, len(X), 5000):
        X[i:i + 5000] = _rows(5000, d=64, seed=i)
    X.flush()
    input_bytes = X.nbytes
    del X
    argv = ["predict", str(tmp_path / "net.gx"), "--input", str(tmp_path / "x.npy"), "-o",
            str(tmp_path / "s.npy"), "--batch-size", "1000", "--no-progress"]
    assert main(argv) == 0  # warm up: imports and first-use caches are not the point
    tracemalloc.start()
    try:
        assert main(argv) == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    chunk = 1000 * (64 + 32 + 32 + 10) * 8  # one chunk's rows and activations: 1.1 MB
    assert peak < 3 * chunk < input_bytes / 5
    assert np.load(tmp_path / "s.npy", mmap_mode="r").shape == (40_000, 10)


def test_cli_predict_subprocess(files):
    g, X, d = files
    r = subprocess.run([sys.executable, "-m", "graphexec", "predict", str(d / "net.gx"),
                        "--input", str(d / "x.npy"), "-o", str(d / "s.npy")],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.load(d / "s.npy"), gx.predict(g, X))
