"""One loaded graph, many threads: each thread's own Executor gives results bit-identical to a
sequential run, and no run writes into the graph's parameters."""

from __future__ import annotations

import hashlib
import threading

import numpy as np

import graphexec as gx

THREADS = 8
ROUNDS = 12
N, D, H, C = 64, 16, 96, 5


def network() -> gx.Graph:
    """A two-layer net with a tanh side branch, softmax loss and L2 (the graph is loaded from bytes,
    as a shared graph from a file would be)."""
    rng = np.random.default_rng(0)
    b = gx.GraphBuilder("net")
    x, y = b.input("x", shape=(None, D)), b.input("y", shape=(None,), dtype="int64")
    w1, b1 = b.param("W1", rng.standard_normal((D, H)) * 0.3), b.param("b1", np.zeros(H))
    w2, b2 = b.param("W2", rng.standard_normal((H, C)) * 0.3), b.param("b2", np.zeros(C))
    alpha = b.param("alpha", np.full(H, 0.1))
    h = b.op("prelu", b.op("affine", x, w1, b1), alpha)
    h = b.op("add", h, b.op("mul", b.op("tanh", h), b.op("sigmoid", h)))
    scores = b.op("affine", h, w2, b2, name="scores")
    data_loss = b.op("softmax_cross_entropy", scores, y)
    reg = b.op("add", b.op("l2", w1), b.op("l2", w2))
    b.output(b.op("add", data_loss, b.op("mul", reg, b.param("lam", np.array(1e-3)))), "loss")
    b.output(scores, "scores")
    return gx.loads(gx.dumps(b.build()))


def feed(thread: int, rnd: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([thread, rnd])
    return {"x": rng.standard_normal((N, D)), "y": rng.integers(0, C, N)}


def one_run(ex: gx.Executor, inputs: dict[str, np.ndarray]) -> dict[str, bytes]:
    outs = ex.forward(inputs)
    grads = ex.backward({"loss": 1.0})
    return {**{f"out:{k}": v.tobytes() for k, v in outs.items()},
            **{f"grad:{k}": v.tobytes() for k, v in grads.items()}}


def checksums(g: gx.Graph) -> dict[str, str]:
    return {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in g.params.items()}


def run_threads(target, n: int = THREADS) -> list[object]:
    results: list[object] = [None] * n
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def body(i: int) -> None:
        try:
            barrier.wait()
            results[i] = target(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_threads_match_sequential_runs_bit_for_bit():
    g = network()
    before = checksums(g)
    expected = [[one_run(gx.Executor(g), feed(t, r)) for r in range(ROUNDS)] for t in range(THREADS)]
    fresh = network()  # a graph whose plan is compiled concurrently, by the threads themselves

    def work(t: int) -> list[dict[str, bytes]]:
        ex = gx.Executor(fresh)  # one executor per thread, created at the same moment
        return [one_run(ex, feed(t, r)) for r in range(ROUNDS)]

    got = run_threads(work)
    assert got == expected
    assert checksums(fresh) == checksums(g) == before


def test_threads_share_one_executor_per_thread_on_one_graph_with_interleaved_phases():
    """Forward in every thread first, then backward in every thread: no run sees another's ctx."""
    g = network()
    expected = [one_run(gx.Executor(g), feed(t, 0)) for t in range(THREADS)]
    executors = [gx.Executor(g) for _ in range(THREADS)]
    outs = run_threads(lambda t: executors[t].forward(feed(t, 0)))
    grads = run_threads(lambda t: executors[t].backward({"loss": 1.0}))
    for t in range(THREADS):
        got = {**{f"out:{k}": v.tobytes() for k, v in outs[t].items()},
               **{f"grad:{k}": v.tobytes() for k, v in grads[t].items()}}
        assert got == expected[t]


def test_forward_and_inference_never_write_parameters():
    g = network()
    before = checksums(g)
    flags = {k: v.flags.writeable for k, v in g.params.items()}
    run_threads(lambda t: [gx.run(g, feed(t, r)) for r in range(ROUNDS)])
    assert checksums(g) == before
    ex = gx.Executor(g)
    ex.forward(feed(0, 0))
    assert checksums(g) == before
    grads = ex.backward()
    assert checksums(g) == before  # backward neither: only an optimizer step changes params
    for k, v in g.params.items():
        assert v.flags.writeable == flags[k]  # still the writable arrays optimizers update
        assert not np.shares_memory(grads[k], v)


def test_inference_threads_match_sequential():
    g = network()
    expected = [gx.run(g, feed(t, 1), outputs=["scores"])["scores"].tobytes() for t in range(THREADS)]
    got = run_threads(lambda t: gx.run(g, feed(t, 1), outputs=["scores"])["scores"].tobytes())
    assert got == expected


def test_loading_in_threads_gives_identical_graphs():
    data = gx.dumps(network())
    got = run_threads(lambda t: gx.dumps(gx.loads(data)))
    assert all(d == data for d in got)
