"""MaxPool / AveragePool import with ceil_mode=1, asymmetric pads and count_include_pad either
way, checked against onnxruntime (PyTorch's semantics: windows start at i·s - pad_begin; the
average counts the window's real pixels, or with count_include_pad=1 its pixels inside the
declared pads, never the extra end padding that ceil_mode adds)."""

import itertools

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

import graphexec as gx  # noqa: E402
from graphexec.onnx_io import import_onnx  # noqa: E402


def _model(op, n, **attrs):
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    graph = helper.make_graph([node], "pool", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, n, n + 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def _ort(model, x):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


CONFIGS = [(op, k, s, p, cip, n) for op, k, s, p, cip, n in itertools.product(
    ["AveragePool", "MaxPool"], [2, 3], [1, 2, 3], [(0, 0, 0, 0), (1, 1, 1, 1), (1, 0, 0, 1)],
    [0, 1], [4, 5, 7]) if not (op == "MaxPool" and cip)]


@pytest.mark.parametrize("ceil", [0, 1])
def test_every_config_agrees_with_onnxruntime(ceil):
    rng = np.random.default_rng(ceil)
    checked = 0
    for op, k, s, p, cip, n in CONFIGS:
        attrs = {"kernel_shape": [k, k], "strides": [s, s], "pads": list(p), "ceil_mode": ceil}
        if op == "AveragePool":
            attrs["count_include_pad"] = cip
        model = _model(op, n, **attrs)
        x = rng.standard_normal((1, 2, n, n + 1)).astype(np.float32)
        g = import_onnx(model)
        (got,) = gx.run(g, {g.inputs[0]: x}).values()
        want = _ort(model, x)
        assert got.shape == want.shape, (op, attrs, n)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"{op} {attrs} {n}")
        checked += 1
    assert checked == len(CONFIGS)


def test_a_ceil_mode_average_runs_backward_through_the_count_map():
    model = _model("AveragePool", 5, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                   ceil_mode=1, count_include_pad=1)
    g = import_onnx(model)
    assert [n.op for n in g.nodes] == ["pad", "avg_pool2d", "mul"]
    x = np.random.default_rng(2).standard_normal((1, 2, 5, 6)).astype(np.float32)
    assert gx.gradcheck(g, {g.inputs[0]: x}, max_coords=8).ok


# ---------------------------------------------------------------- any rank, dilations, Indices
def _nd_model(op, shape, indices, **attrs):
    outs = ["y", "z"] if indices else ["y"]
    node = helper.make_node(op, ["x"], outs, **attrs)
    graph = helper.make_graph([node], "pool_nd", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
        + ([helper.make_tensor_value_info("z", TensorProto.INT64, None)] if indices else []))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def _nd_config(rng, r):
    k = [int(v) for v in rng.integers(1, 4, r)]
    attrs = {"kernel_shape": k, "strides": [int(v) for v in rng.integers(1, 4, r)],
             "dilations": [int(v) for v in rng.integers(1, 4, r)],
             "ceil_mode": int(rng.integers(2))}
    if rng.random() < 0.15 and not attrs["ceil_mode"]:  # SAME with dilation is refused
        attrs["auto_pad"] = str(rng.choice(["SAME_UPPER", "SAME_LOWER", "VALID"]))
        if attrs["auto_pad"] != "VALID":  # and onnxruntime fails where it would pad < 0
            attrs["dilations"] = [1] * r
            attrs["strides"] = [min(s, kk) for s, kk in zip(attrs["strides"], k)]
    else:  # onnxruntime wants every pad smaller than its kernel
        attrs["pads"] = [int(rng.integers(0, kk)) for kk in k] + [int(rng.integers(0, kk))
                                                                for kk in k]
    op = str(rng.choice(["AveragePool", "MaxPool"]))
    indices = op == "MaxPool" and rng.random() < 0.6
    if op == "AveragePool":
        attrs["count_include_pad"] = int(rng.integers(2))
    elif indices:
        attrs["storage_order"] = int(rng.integers(2))
    size = [int(v) for v in rng.integers(3, 8 if r < 3 else 6, r)]
    return op, indices, attrs, (int(rng.integers(1, 3)), 2, *size)


def _no_pixel(attrs, shape):
    """Why graphexec refuses: no window, or one with no real pixel (ONNX leaves it undefined,
    onnxruntime fails or gives 0/0 or -FLT_MAX); "" if it computes the pool."""
    if attrs.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        return ""  # pads < kernel, no dilation: every window has pixels
    r = len(attrs["kernel_shape"])
    pads = attrs.get("pads", [0] * 2 * r)
    for i, (k, s, d, n) in enumerate(zip(attrs["kernel_shape"], attrs["strides"],
                                         attrs["dilations"], shape[2:])):
        b, e = pads[i], pads[i + r]
        span = (k - 1) * d + 1
        out = (n + b + e - span) // s + 1 if not attrs["ceil_mode"] else \
            -(-(n + b + e - span) // s) + 1
        if attrs["ceil_mode"] and (out - 1) * s >= n + b:
            out -= 1
        if out <= 0:
            return "no window fits"
        for o in range(out):
            if not any(b <= o * s + j * d < b + n for j in range(k)):
                return "leave a window with no pixel"
    return ""


@pytest.mark.parametrize("r", [1, 2, 3])
def test_every_nd_config_agrees_with_onnxruntime(r):
    """1-D, 2-D and 3-D pooling with dilations, strides, pads, auto_pad, ceil_mode, both counts,
    and MaxPool's Indices in both storage orders: 150 random configurations per rank."""
    rng = np.random.default_rng(10 + r)
    checked = refused = indices = 0
    for _ in range(150):
        op, want_indices, attrs, shape = _nd_config(rng, r)
        model = _nd_model(op, shape, want_indices, **attrs)
        x = rng.standard_normal(shape).astype(np.float32)
        why = _no_pixel(attrs, shape)
        if why:
            with pytest.raises(gx.GraphexecError, match=why):
                import_onnx(model)
            refused += 1
            continue
        g = import_onnx(model)
        got = gx.run(g, {g.inputs[0]: x})
        so = ort.SessionOptions()
        so.log_severity_level = 3
        want = ort.InferenceSession(model.SerializeToString(), so, providers=[
            "CPUExecutionProvider"]).run(None, {"x": x})
        for name, w in zip(g.outputs, want):
            assert got[name].shape == w.shape and got[name].dtype == w.dtype, (op, attrs, shape)
            np.testing.assert_allclose(got[name], w, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name} {op} {attrs} {shape}")
        checked += 1
        indices += want_indices
    assert checked >= 120 and indices >= 25 and checked + refused == 150


def test_the_2d_path_without_dilation_still_uses_the_2d_gates():
    model = _nd_model("MaxPool", (1, 2, 5, 6), False, kernel_shape=[2, 2], storage_order=1)
    assert [n.op for n in import_onnx(model).nodes] == ["max_pool2d"]
    model = _nd_model("AveragePool", (1, 2, 5, 6), False, kernel_shape=[2, 2], dilations=[1, 2])
    assert [n.op for n in import_onnx(model).nodes] == ["gather", "gather", "reduce_sum", "mul"]


@pytest.mark.parametrize("op", ["AveragePool", "MaxPool"])
def test_a_decomposed_3d_pool_with_dilation_and_ceil_runs_backward(op):
    extra = {"count_include_pad": 1} if op == "AveragePool" else {}
    model = _nd_model(op, (1, 2, 5, 4, 6), op == "MaxPool", kernel_shape=[2, 2, 3],
                      strides=[2, 1, 2], dilations=[2, 1, 1], pads=[1, 0, 1, 1, 1, 0],
                      ceil_mode=1, **extra)
    g = import_onnx(model)
    assert "gather" in [n.op for n in g.nodes]
    x = np.random.default_rng(3).standard_normal((1, 2, 5, 4, 6))
    feed = {g.inputs[0]: x.astype(np.float32)}
    ex = gx.Executor(g)
    ex.forward(feed)
    grads = ex.backward({"y": np.ones_like(gx.run(g, feed)["y"])})
    assert grads[g.inputs[0]].shape == x.shape and np.abs(grads[g.inputs[0]]).sum() > 0
    assert gx.gradcheck(g, feed, max_coords=16).ok


def test_same_padding_with_dilation_is_refused():
    # ONNX pads ceil(n/s) windows of the dilated span; onnxruntime 1.32 pads for the undilated
    # kernel (a size ONNX does not define, or an error): the two disagree, so no answer
    model = _nd_model("MaxPool", (1, 1, 5), False, kernel_shape=[3], strides=[3],
                      dilations=[2], auto_pad="SAME_LOWER")
    with pytest.raises(gx.GraphexecError, match="ONNX pads for the dilated kernel"):
        import_onnx(model)


def test_a_window_with_no_pixel_is_refused():
    # one window, taps at padded positions 0 and 4: both padding
    model = _nd_model("MaxPool", (1, 1, 3), False, kernel_shape=[2], dilations=[4], pads=[1, 1])
    with pytest.raises(gx.GraphexecError, match="leave a window with no pixel"):
        import_onnx(model)
    model = _nd_model("MaxPool", (1, 1, 2), False, kernel_shape=[2], dilations=[4], pads=[1, 1])
    with pytest.raises(gx.GraphexecError, match="no window fits"):
        import_onnx(model)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("last", [0, 1])
def test_argmax_and_argmin_pick_the_first_or_last_tie_as_onnxruntime(op, last):
    node = helper.make_node(op, ["x"], ["y"], axis=-1, keepdims=0, select_last_index=last)
    graph = helper.make_graph([node], "arg", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    x = np.array([[1, 3, 3, 0], [2, 2, 2, 2], [-1, 5, -1, 5]], np.float32)
    g = import_onnx(model)
    (got,) = gx.run(g, {g.inputs[0]: x}).values()
    want = _ort(model, x)
    assert got.dtype == np.int64 and np.array_equal(got, want)


def test_argmin_of_integers_is_refused():
    node = helper.make_node("ArgMin", ["x"], ["y"])
    graph = helper.make_graph([node], "arg", [
        helper.make_tensor_value_info("x", TensorProto.INT32, [3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(gx.GraphexecError, match="ArgMin of a non-float input"):
        import_onnx(model)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int32", "int64"])
@pytest.mark.parametrize("shape, attrs", [
    ((1, 2, 6), {"kernel_shape": [3], "pads": [1, 2], "dilations": [2]}),
    ((1, 2, 4, 5), {"kernel_shape": [2, 2], "pads": [1, 0, 0, 1]}),  # the 2-D gate's path
])
def test_an_integer_max_pool_pads_with_the_dtype_minimum(dtype, shape, attrs):
    # -inf cannot be stored in an integer: the padding is the dtype's lowest value (this crashed
    # for int32/int64 and relied on an undefined cast for uint8)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    node = helper.make_node("MaxPool", ["x"], ["y"], **attrs)
    graph = helper.make_graph([node], "int_pool", [helper.make_tensor_value_info("x", elem, shape)],
                              [helper.make_tensor_value_info("y", elem, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -1000), min(info.max, 1000)  # float32 holds these (and the minimum)
    x = np.random.default_rng(5).integers(lo, hi, shape, endpoint=True).astype(dtype)
    x.flat[:3] = info.min  # the minimum itself is a real pixel's value
    g = import_onnx(model)
    (got,) = gx.run(g, {g.inputs[0]: x}).values()
    as_float = import_onnx(_nd_model("MaxPool", shape, False, **attrs))
    (want,) = gx.run(as_float, {as_float.inputs[0]: x.astype(np.float32)}).values()
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got.astype(np.float64), want.astype(np.float64))
    if dtype in ("uint8", "int8"):  # the integer MaxPool kernels onnxruntime has
        np.testing.assert_array_equal(got, _ort(model, x))
