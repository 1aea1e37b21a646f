"""graphexec.distributed: sweeps and prediction on Dask (in-process cluster, 2 processes, CLI)."""

import functools
import json
import os
import pickle

import numpy as np
import pytest

import graphexec as gx
from graphexec import distributed as gd
from graphexec.cli.main import main
from graphexec.distributed import _predict

HANG_GUARD = 120  # seconds: only against a hang, never a speed expectation


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    return X, (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)


def _serial(g, X, y, **kw):
    h = gx.loads(gx.dumps(g))
    gx.fit(h, X, y, **kw)
    return gx.dumps(h)


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("distributed")
    with gd.local_cluster(2, processes=False) as c:
        yield c


# ---------------------------------------------------------------------------- sweep
def test_sweep_results_in_grid_order_byte_identical_to_serial(client):
    g, (X, y) = gx.nn.mlp([2, 8, 3], seed=0), _data()
    before = gx.dumps(g)
    res = gd.sweep(g, {"lr": [1e-2, 1e-3], "batch_size": [16, 40]}, X, y, client=client,
                   epochs=2, optimizer="adam", val=(X[:30], y[:30]))
    assert [r.params for r in res] == [{"lr": 1e-2, "batch_size": 16}, {"lr": 1e-2, "batch_size": 40},
                                       {"lr": 1e-3, "batch_size": 16}, {"lr": 1e-3, "batch_size": 40}]
    for r in res:
        assert r.graph == _serial(g, X, y, epochs=2, batch_size=r.params["batch_size"],
                                  optimizer=gx.optim.Adam(lr=r.params["lr"]),
                                  val=(X[:30], y[:30]))
        assert r.history.epochs == 2 and len(r.history.val_acc) == 2
        assert r.train_acc == gx.train.accuracy(r.load(), X, y)
        assert r.val_acc == gx.train.accuracy(r.load(), X[:30], y[:30])
    assert gx.dumps(g) == before  # the given graph is not trained


def test_sweep_builder_keywords_and_optimizer_objects(client):
    X, y = _data()
    builder = functools.partial(gx.nn.mlp, activation="tanh", seed=3)
    res = gd.sweep(builder, [{"sizes": [2, 4, 3], "reg": 0.1}, {"sizes": [2, 9, 3], "momentum": 0.9}],
                   X, y, client=client, epochs=1, batch_size=30, optimizer=gx.optim.SGD(lr=0.1))
    assert res[0].load().params["W1"].shape == (2, 4)
    assert res[0].graph == _serial(gx.nn.mlp([2, 4, 3], activation="tanh", seed=3, reg=0.1), X, y,
                                   epochs=1, batch_size=30, optimizer=gx.optim.SGD(lr=0.1))
    assert res[1].graph == _serial(gx.nn.mlp([2, 9, 3], activation="tanh", seed=3), X, y, epochs=1,
                                   batch_size=30, optimizer=gx.optim.SGD(lr=0.1, momentum=0.9))


@pytest.mark.parametrize("grid, options, message", [
    ({"hidden": [3]}, {}, "sweep setting 'hidden' is neither a keyword of gx.fit"),
    ({"lr": [0.1]}, {"lr": 0.2}, "'lr' is both a grid key and a fit option"),
    ({"lr": 0.1}, {}, "grid['lr']: expected a non-empty list of values, found 0.1"),
    ({"seed": [1]}, {"checkpoint": "ck.gx"}, "sweep cannot pass checkpoint=...: every point"),
    ({"lr": [0.1]}, {}, "configure an optimiser, but none is named"),
])
def test_sweep_refuses_ill_posed_settings(client, grid, options, message):
    X, y = _data()
    with pytest.raises(gd.DistributedError) as e:
        gd.sweep(gx.nn.mlp([2, 3, 3]), grid, X, y, client=client, epochs=1, batch_size=8, **options)
    assert message in str(e.value)


# ---------------------------------------------------------------------------- predict
def test_predict_dask_array_equals_gx_predict(client):
    import dask.array as da

    g = gx.nn.mlp([5, 16, 4], seed=1)
    X = np.random.default_rng(2).standard_normal((2000, 5))
    Y = gd.predict(g, da.from_array(X, chunks=(400, 2)), batch_size=200)
    assert Y.shape == (2000, 4) and Y.chunks[0] == (400,) * 5
    assert np.array_equal(Y.compute(), gx.predict(g, X, batch_size=200))
    labels = gd.predict(g, da.from_array(X, chunks=500), labels=True).compute()
    assert np.array_equal(labels, gx.predict(g, X).argmax(axis=1))


def test_predict_npy_is_read_by_path_on_workers_and_graph_loaded_once(client, tmp_path, monkeypatch):
    g = gx.nn.mlp([5, 16, 4], seed=1)
    X = np.random.default_rng(2).standard_normal((5000, 5))
    np.save(tmp_path / "x.npy", X)
    loads, calls = _predict.loads, []
    monkeypatch.setattr(_predict, "loads", lambda b: calls.append(1) or loads(b))
    monkeypatch.setattr(_predict, "_CACHE", type(_predict._CACHE)())
    Y = gd.predict(g, str(tmp_path / "x.npy"), batch_size=500)
    assert len(pickle.dumps(dict(Y.__dask_graph__()))) < X.nbytes / 10  # rows not in the graph
    assert np.array_equal(Y.compute(), gx.predict(g, X, batch_size=500))
    assert calls == [1]  # ten blocks, one process: the graph bytes were loaded once
    with pytest.raises(gd.DistributedError, match="expects float64, found float32 rows"):
        gd.predict(g, da_from(X.astype(np.float32)))


def da_from(X):
    import dask.array as da

    return da.from_array(X, chunks=100)


def test_predict_to_npy_writes_blocks_as_they_finish(client, tmp_path):
    g = gx.nn.mlp([3, 6, 2], seed=0)
    X = np.random.default_rng(0).standard_normal((1234, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    seen = []
    shape = gd.predict_to_npy(g, tmp_path / "x.npy", tmp_path / "y.npy", client=client,
                              batch_size=100, cast=True, in_flight=3, progress=seen.append)
    assert shape == (1234, 2) and sorted(seen) == [34] + [100] * 12
    assert np.array_equal(np.load(tmp_path / "y.npy"), gx.predict(g, X.astype(np.float64), 100))
    assert sorted(os.listdir(tmp_path)) == ["x.npy", "y.npy"]


# ---------------------------------------------------------------------------- processes
def test_two_worker_processes_sweep_byte_identical_with_clean_environment():
    pytest.importorskip("distributed")
    g, (X, y) = gx.nn.mlp([2, 8, 3], seed=0), _data()
    env = dict(os.environ)
    with gd.local_cluster(2) as c:
        reports = list(c.run(gd.worker_report).values())
        res = gd.sweep(g, {"lr": [1e-2, 3e-3]}, X, y, client=c, epochs=2, batch_size=16,
                       optimizer="adam")
    assert dict(os.environ) == env  # the nanny's settings did not leak into this process
    assert len({r["pid"] for r in reports}) == 2 and os.getpid() not in {r["pid"] for r in reports}
    for r in reports:
        assert r["OMP_NUM_THREADS"] == r["OPENBLAS_NUM_THREADS"] == r["MKL_NUM_THREADS"] == "1"
        assert r["MALLOC_TRIM_THRESHOLD_"] is None
        assert r["blas_threads"] in (None, [1])
    for r in res:
        assert r.graph == _serial(g, X, y, epochs=2, batch_size=16,
                                  optimizer=gx.optim.Adam(lr=r.params["lr"]))


# ---------------------------------------------------------------------------- CLI
@pytest.fixture
def scheduler():
    """A scheduler and one worker on 127.0.0.1 (threads of this process), stopped after."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  protocol="tcp", host="127.0.0.1", scheduler_port=0,
                                  dashboard_address=":0") as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        yield cluster.scheduler_address


def test_cli_predict_and_sweep_against_a_scheduler(scheduler, tmp_path, capsys):
    g = gx.nn.mlp([2, 8, 3], seed=0)
    gx.save(g, tmp_path / "net.gx")
    X = np.random.default_rng(0).standard_normal((3000, 2))
    np.save(tmp_path / "x.npy", X)
    assert main(["predict", str(tmp_path / "net.gx"), "--input", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npy"), "--batch-size", "700", "--scheduler", scheduler]) == 0
    assert np.array_equal(np.load(tmp_path / "y.npy"), gx.predict(g, X, batch_size=700))
    capsys.readouterr()
    flags = ["sweep", "--data", "spiral", "--hidden", "3,5", "--reg", "0.001,0.1", "--epochs", "2",
             "--json"]
    assert main(flags + ["-o", str(tmp_path / "a.png")]) == 0
    serial = json.loads(capsys.readouterr().out)
    assert main(flags + ["-o", str(tmp_path / "b.png"), "--scheduler", scheduler]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert remote["runs"] == serial["runs"] and len(serial["runs"]) == 4


def test_cli_unreachable_scheduler_is_one_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    import socket

    monkeypatch.setattr("graphexec.distributed._cluster.CONNECT_TIMEOUT", "1s")  # refused anyway

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gx.save(gx.nn.mlp([2, 3, 3]), tmp_path / "net.gx")
    np.save(tmp_path / "x.npy", np.zeros((4, 2)))
    code = main(["predict", str(tmp_path / "net.gx"), "--input", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npy"), "--scheduler", f"tcp://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: cannot reach the Dask scheduler at")
    assert err.count("\n") == 1 and not (tmp_path / "y.npy").exists()


def test_hygiene_problems_name_dask_malloc_setting(client, monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # in-process workers: this environment
    problems = gd.hygiene_problems(client)
    assert any(p.startswith("Dask workers have MALLOC_TRIM_THRESHOLD_=65536") for p in problems)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    assert not any("MALLOC" in p for p in gd.hygiene_problems(client))
