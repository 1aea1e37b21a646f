"""The version-2 dtypes end to end: gates compute with numpy's (and ONNX's) semantics, integers
wrap around and take no gradient, float16 computes in float16, ONNX export/import keeps them."""

import numpy as np
import pytest

import graphexec as gx
from graphexec.dtypes import ONNX_DTYPES

INTS = ["int8", "int16", "uint8", "uint16", "uint32", "uint64", "int32", "int64"]


def _edges(name: str, n: int = 64, seed: int = 0) -> np.ndarray:
    """Random integers of the dtype with its min and max among them."""
    info = np.iinfo(name)
    rng = np.random.default_rng(seed)
    v = rng.integers(info.min, info.max, n, dtype=name, endpoint=True)
    v[:4] = [info.min, info.max, 0, 1]
    return v


def _binary(op: str, dtype: str) -> gx.Graph:
    b = gx.GraphBuilder(op)
    b.output(b.op(op, b.input("x", dtype=dtype), b.input("y", dtype=dtype)), "z")
    return b.build()


@pytest.mark.parametrize("dtype", INTS)
@pytest.mark.parametrize("op,ref", [("add", np.add), ("sub", np.subtract), ("mul", np.multiply),
                                    ("max", np.maximum)])
def test_integer_arithmetic_wraps_around_like_numpy(op, ref, dtype):
    x, y = _edges(dtype, seed=1), _edges(dtype, seed=2)[::-1].copy()
    got = gx.run(_binary(op, dtype), {"x": x, "y": y})["z"]
    with np.errstate(over="ignore"):
        want = ref(x, y)
    assert got.dtype == np.dtype(dtype) and np.array_equal(got, want)
    if op == "add":  # the wraparound itself, spelled out
        info = np.iinfo(dtype)
        one = gx.run(_binary(op, dtype), {"x": np.array([info.max], dtype),
                                          "y": np.array([1], dtype)})["z"]
        assert one.tolist() == [info.min]


@pytest.mark.parametrize("dtype", INTS)
def test_integer_div_truncates_toward_zero_in_the_same_dtype(dtype):
    x, y = _edges(dtype, seed=3), _edges(dtype, seed=4)
    y[y == 0] = 1
    x[5], y[5] = np.iinfo(dtype).min, -1 if dtype.startswith("i") else 1  # the one overflow
    got = gx.run(_binary("div", dtype), {"x": x, "y": y})["z"]
    info, bits = np.iinfo(dtype), 8 * np.dtype(dtype).itemsize
    exact = [abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)  # Python ints: no rounding
             for a, b in zip(x.tolist(), y.tolist())]
    want = [(q - info.min) % 2**bits + info.min for q in exact]  # wrapped into the dtype
    assert got.dtype == np.dtype(dtype) and got.tolist() == want


def test_integer_div_examples_signed_unsigned_overflow_and_zero():
    div = _binary("div", "int8")
    got = gx.run(div, {"x": np.array([7, -7, 7, -7, -128, 5], "i1"),
                       "y": np.array([2, 2, -2, -2, -1, 0], "i1")})["z"]
    assert got.tolist() == [3, -3, -3, 3, -128, 0]  # min / -1 wraps; x / 0 is 0 (numpy's rule)
    got = gx.run(_binary("div", "uint8"), {"x": np.array([255, 7, 0, 9], "u1"),
                                           "y": np.array([2, 255, 3, 0], "u1")})["z"]
    assert got.tolist() == [127, 0, 0, 0]


def test_integers_without_a_common_integer_type_are_refused_at_build():
    b = gx.GraphBuilder("mix")
    z = b.op("add", b.input("x", dtype="uint64"), b.input("y", dtype="int8"))
    b.output(z, "z")
    with pytest.raises(gx.GraphError) as e:
        b.build()
    assert str(e.value) == ("node 'add_0' (add): int8 and uint64 have no common integer type: "
                            "numpy would compute in float64 and round integers past 2**53; cast "
                            "one of them with .astype (to int64 or uint64)")


def test_narrow_integers_promote_as_numpy_does():
    b = gx.GraphBuilder("promote")
    b.output(b.op("add", b.input("x", dtype="int8"), b.input("y", dtype="uint8")), "z")
    got = gx.run(b.build(), {"x": np.array([-128], "i1"), "y": np.array([255], "u1")})["z"]
    assert got.dtype == np.int16 and got.tolist() == [127]


def test_float16_computes_in_float16_exactly_as_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5)).astype(np.float16)
    w = rng.standard_normal((4, 5)).astype(np.float16)
    b = gx.GraphBuilder("half")
    xi, wp = b.input("x", dtype="float16"), b.param("w", w)
    for op in ("add", "sub", "mul", "div", "max"):
        b.output(b.op(op, xi, wp), op)
    b.output(b.op("exp", xi), "exp")
    b.output(b.op("tanh", xi), "tanh")
    out = gx.run(b.build(), {"x": x})
    want = {"add": x + w, "sub": x - w, "mul": x * w, "div": x / w, "max": np.maximum(x, w),
            "exp": np.exp(x), "tanh": np.tanh(x)}
    for k, v in want.items():
        assert out[k].dtype == np.float16, k
        assert out[k].tobytes() == v.tobytes(), k  # bit for bit


def test_float16_runs_backward_in_float16_and_gradcheck_agrees():
    rng = np.random.default_rng(1)
    b = gx.GraphBuilder("half_mlp")
    x = b.input("x", shape=(None, 3), dtype="float16")
    w = b.param("W", rng.standard_normal((3, 2)).astype(np.float16))
    b.output(b.op("sum", b.op("tanh", b.op("matmul", x, w))), "loss")
    g = b.build()
    feed = {"x": rng.standard_normal((4, 3)).astype(np.float16)}
    ex = gx.Executor(g)
    assert ex.forward(feed)["loss"].dtype == np.float16
    grads = ex.backward()
    assert grads["W"].dtype == np.float16 and grads["x"].dtype == np.float16
    rep = gx.gradcheck(g, feed)  # in float64, on a float64 copy
    assert rep.ok, str(rep)


def test_integer_inputs_take_no_gradient():
    b = gx.GraphBuilder("scaled")
    x = b.input("x", dtype="int8")
    w = b.param("w", np.array([0.5, -2.0], np.float32))
    b.output(b.op("sum", b.op("mul", x, w)), "loss")
    g = b.build()
    ex = gx.Executor(g)
    out = ex.forward(x=np.array([3, -4], np.int8))
    assert out["loss"].dtype == np.float32 and float(out["loss"]) == 9.5
    grads = ex.backward()
    assert set(grads) == {"w"} and grads["w"].tolist() == [3.0, -4.0]


def _clip(dtype: str, **bounds: float) -> gx.Graph:
    b = gx.GraphBuilder("clip")
    b.output(b.op("clip", b.input("x", dtype=dtype), **bounds), "y")
    return b.build()


@pytest.mark.parametrize("dtype", INTS)
def test_integer_clip_is_exact_in_its_own_dtype(dtype):
    info = np.iinfo(dtype)
    x = _edges(dtype, seed=5)
    lo = float(int(info.min) // 3 if info.min < 0 else 7)  # whole numbers, as float attributes
    hi = float(int(info.max) // 3)
    got = gx.run(_clip(dtype, min=lo, max=hi), {"x": x})["y"]
    assert got.dtype == np.dtype(dtype)
    assert got.tolist() == [min(max(v, int(lo)), int(hi)) for v in x.tolist()]  # Python ints: exact
    wide = gx.run(_clip(dtype, min=-1e30, max=1e30), {"x": x})["y"]  # bounds nothing
    assert np.array_equal(wide, x)


def test_int64_clip_keeps_integers_past_2_to_53():
    x = np.array([2**62 + 1, -(2**62) - 1, 3], np.int64)
    got = gx.run(_clip("int64", min=-(2.0**62), max=2.0**62), {"x": x})["y"]
    assert got.tolist() == [2**62, -(2**62), 3]
    small = np.array([2**53 + 1], np.int64)  # was rounded through float64 before
    assert gx.run(_clip("int64", min=0.0), {"x": small})["y"].tolist() == [2**53 + 1]


@pytest.mark.parametrize("bounds,msg", [
    ({"min": 1.5}, "clip of int8 with min 1.5: the result would hold 1.5, which int8 cannot "
                   "(-128..127); give a whole-number bound in that range, or cast x to a float type"),
    ({"max": -129.0}, "clip of int8 with max -129.0"),
    ({"min": 200.0}, "clip of int8 with min 200.0"),
])
def test_integer_clip_refuses_bounds_its_dtype_cannot_hold(bounds, msg):
    with pytest.raises(gx.GraphError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        _clip("int8", **bounds)


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "uint8", "float16"])
def test_max_pool_pads_integers_with_their_min(dtype):
    b = gx.GraphBuilder("pool")
    b.output(b.op("max_pool2d", b.input("x", dtype=dtype), kernel=2, stride=2, padding=1), "y")
    sign = 1 if dtype.startswith("u") else -1
    x = (sign * np.arange(1, 17)).astype(dtype).reshape(1, 1, 4, 4)
    with np.errstate(all="raise"):  # no float -inf cast to an integer
        got = gx.run(b.build(), {"x": x})["y"]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    want = xp.reshape(1, 1, 3, 2, 3, 2).max(axis=(3, 5))
    assert got.dtype == np.dtype(dtype) and np.array_equal(got.astype(np.float64), want)


def test_integer_input_values_out_of_range_are_refused_not_wrapped():
    b = gx.GraphBuilder("u8")
    b.output(b.op("neg", b.input("x", dtype="uint8")), "y")
    g = b.build()
    assert gx.run(g, {"x": [0, 1, 255]})["y"].tolist() == [0, 255, 1]  # uint8 negation wraps
    for bad, lo, hi in (([1, -1], -1, 1), ([256], 256, 256), (np.array([300], np.int64), 300, 300)):
        with pytest.raises(gx.GraphError) as e:
            gx.run(g, {"x": bad})
        assert str(e.value) == (f"input 'x' expects uint8 (0..255), got values from {lo} to {hi}; "
                                "a cast would wrap them around")


# ------------------------------------------------------------------------------- ONNX
onnx_cases = [("add", "uint8"), ("mul", "int8"), ("div", "int8"), ("max", "uint8"),
              ("sub", "uint16"), ("div", "uint64"), ("matmul", "float16"), ("max", "float16")]


@pytest.mark.parametrize("op,dtype", onnx_cases)
def test_export_runs_in_onnxruntime_and_imports_back(op, dtype):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from graphexec.onnx_io import export_onnx, import_onnx

    rng = np.random.default_rng(7)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        x, w = (rng.standard_normal((3, 3)).astype(dt) for _ in range(2))
    else:
        x, w = _edges(dtype, 9, seed=8).reshape(3, 3), _edges(dtype, 9, seed=9).reshape(3, 3)
        w[w == 0] = 1
    b = gx.GraphBuilder(f"{op}_{dtype}")
    b.output(b.op(op, b.input("x", shape=(3, 3), dtype=dtype), b.param("w", w)), "z")
    g = b.build()
    want = gx.run(g, {"x": x})["z"]
    model = export_onnx(g)
    assert model.graph.input[0].type.tensor_type.elem_type == ONNX_DTYPES[dtype]
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x})[0]
    assert got.dtype == want.dtype
    if dt.kind == "f":  # onnxruntime rounds float16 sums in another order than numpy
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                                   rtol=2e-3, atol=2e-3)
    else:
        assert np.array_equal(got, want)
    back = gx.run(import_onnx(model), {"x": x})["z"]
    assert back.dtype == want.dtype and back.tobytes() == want.tobytes()


def test_export_refuses_an_op_onnx_does_not_define_for_the_dtype():
    pytest.importorskip("onnx")
    from graphexec.onnx_io import OnnxExportError, export_onnx

    b = gx.GraphBuilder("neg_u8")
    b.output(b.op("neg", b.input("x", shape=(3,), dtype="uint8")), "z")
    with pytest.raises(OnnxExportError, match=r"cannot export: an ONNX op does not take this "
                                              r"dtype \(.*Neg.*uint8.*\); cast the value"):
        export_onnx(b.build())


def test_import_maps_every_table_dtype_and_names_the_rest():
    pytest.importorskip("onnx")
    from graphexec.onnx_io.common import OnnxImportError, numpy_dtype, onnx_elem_type

    for name, code in ONNX_DTYPES.items():
        assert numpy_dtype(code, "x") == np.dtype(name) and onnx_elem_type(name) == code
    with pytest.raises(OnnxImportError, match=r"input 'x': ONNX element type 16 is not supported; "
                                              r"graphexec has float32, .*, uint64"):
        numpy_dtype(16, "input 'x'")  # bfloat16


def test_float_input_values_that_would_become_inf_are_refused():
    b = gx.GraphBuilder("half")
    b.output(b.op("neg", b.input("x", dtype="float16")), "y")
    g = b.build()
    got = gx.run(g, {"x": [1.5, 65504.0, float("inf"), float("nan")]})["y"]  # inf given stays
    assert got.dtype == np.float16 and got[:3].tolist() == [-1.5, -65504.0, -np.inf]
    for bad, big in (([1e5, float("inf")], "100000"), (np.array([70000], np.int32), "70000")):
        with pytest.raises(gx.GraphError) as e:
            gx.run(g, {"x": bad})
        assert str(e.value) == (f"input 'x' expects float16 (largest 65504), got {big}, which "
                                "would become inf")
    b = gx.GraphBuilder("single")
    b.output(b.op("neg", b.input("x", dtype="float32")), "y")
    with pytest.raises(gx.GraphError, match=r"expects float32 \(largest 3.40282e\+38\), got "
                                            r"1e\+300, which would become inf"):
        gx.run(b.build(), {"x": 1e300})
