"""The gates added for PyTorch's exports (sqrt, abs, reciprocal, pow, pow_scalar, mish, compare,
where, full_like) export as standard ONNX ops that onnxruntime runs, and import back as the
same gates with the same values."""

import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import graphexec as gx  # noqa: E402
from graphexec.onnx_io import export_onnx, import_onnx  # noqa: E402


def _graph(dt):
    b = gx.GraphBuilder("elem")
    x, e = b.input("x", dtype=dt, shape=(3, 4)), b.input("e", dtype=dt, shape=(4,))
    c = b.op("compare", x, e, kind="greater_equal")
    outs = {"s": b.op("sqrt", x), "a": b.op("abs", b.op("neg", x)), "r": b.op("reciprocal", x),
            "p": b.op("pow", x, e), "ps": b.op("pow_scalar", x, exponent=1.5),
            "m": b.op("mish", b.op("neg", x)), "c": c, "w": b.op("where", c, x, e),
            "f": b.op("full_like", x, value=2.5)}
    for k, v in outs.items():
        b.output(v, k)
    return b.build()


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_pytorch_export_gates_run_in_onnxruntime_and_come_back(tmp_path, opset, dt):
    rng = np.random.default_rng(opset)
    g = _graph(dt)
    feed = {"x": rng.uniform(0.5, 2, (3, 4)).astype(dt), "e": rng.uniform(-1, 2, 4).astype(dt)}
    want = gx.run(g, feed)
    path = tmp_path / "elem.onnx"
    export_onnx(g, path, opset=opset)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
    for k, v in want.items():
        assert got[k].dtype == v.dtype, k
        np.testing.assert_allclose(got[k], v, rtol=1e-5, err_msg=k)
    back = import_onnx(path)
    assert sorted(n.op for n in back.nodes) == sorted(n.op for n in g.nodes)
    for k, v in gx.run(back, feed).items():
        np.testing.assert_array_equal(v, want[k])
