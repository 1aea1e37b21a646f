"""ONNX → graphexec translators for the network ops: pooling, normalisation, layout, softmax,
and the ONNX settings of the older ones (Gemm's transposes, Dropout's modes); Conv is in
``translate_conv``, the losses and activations in ``translate_loss``, the ops whose operands are
shapes, axes or bounds (reductions, Squeeze/Unsqueeze, Clip, Slice, Gather, Cast, Reshape) in
``translate_shape``.

Each maps to a gate that computes the ONNX op exactly, or refuses naming the setting it cannot
represent. ``TRANSLATORS`` here is ``translate.TRANSLATORS`` plus these; the importer lays
``translate_shape.TRANSLATORS`` over it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphexec.onnx_io.translate import TRANSLATORS as BASIC
from graphexec.onnx_io.translate import Importer, Translate, f32
from graphexec.onnx_io.translate_bn import batchnorm_training, instance_norm
from graphexec.onnx_io.translate_conv import conv
from graphexec.onnx_io.translate_conv import image as _image
from graphexec.onnx_io.translate_conv import ints as _ints
from graphexec.onnx_io.translate_conv import known as _known
from graphexec.onnx_io.translate_conv import pad_first as _pad_first
from graphexec.onnx_io.translate_conv import rank as _rank
from graphexec.onnx_io.translate_conv import spatial as _spatial
from graphexec.onnx_io.translate_loss import LOSSES_AND_ACTIVATIONS
from graphexec.onnx_io.translate_pool import Windows, arg_extreme, lowest, window_pool

__all__ = ["TRANSLATORS"]


def _pool(op: str) -> Translate:
    """MaxPool / AveragePool → max_pool2d / avg_pool2d for 2-D images without dilation (below);
    1-D, 3-D, dilations and MaxPool's Indices output decompose into pad + gather + reduce
    (``translate_pool``)."""
    def tr(imp: Importer, node: Any) -> None:
        r = _rank(imp, node, node.input[0]) - 2
        kernel = _ints(imp, node, "kernel_shape", [])
        if r < 1 or len(kernel) != r:
            raise imp.refuse(node, f"kernel_shape {kernel} for an input of rank {r + 2}; "
                                   "expected one kernel size per spatial axis of (N, C, ...)")
        a = imp.attrs(node)
        if a.get("ceil_mode", 0) and a.get("auto_pad", "NOTSET") != "NOTSET":
            raise imp.refuse(node, f"ceil_mode=1 with auto_pad={a['auto_pad']!r}, which ONNX "
                                   "leaves undefined (its reference refuses it too)")
        dil = _ints(imp, node, "dilations", [1] * r)
        indices = op == "max_pool2d" and len(node.output) > 1 and bool(node.output[1]) and bool(
            imp.uses[node.output[1]] or node.output[1] in imp.graph_outputs)
        if r == 2 and all(d == 1 for d in dil) and not indices:
            _pool2d(op, imp, node, kernel)
        else:
            _pool_windows(op, imp, node, kernel, dil)
    return tr


def _pool_windows(op: str, imp: Importer, node: Any, kernel: list[int], dil: list[int]) -> None:
    """Any rank, dilation or Indices: the windows gathered and reduced (``translate_pool``)."""
    a, r = imp.attrs(node), len(kernel)
    stride = _ints(imp, node, "strides", [1] * r)
    if a.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        if any(d != 1 for d in dil):
            raise imp.refuse(node, f"auto_pad={a['auto_pad']!r} with dilations {dil}: ONNX "
                                   "pads for the dilated kernel, onnxruntime for the undilated "
                                   "one (other sizes); give explicit pads")
        before, after = _spatial(imp, node, kernel, dil, stride)
    else:
        pads = _ints(imp, node, "pads", [0] * 2 * r) if a.get("auto_pad") != "VALID" else []
        before, after = (pads[:r], pads[r:]) if pads else ([0] * r, [0] * r)
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dil)]
    extra = (_ceil_extra(imp, node, span, stride, before, after) if a.get("ceil_mode", 0)
             else [0] * r)
    win = Windows(_known(imp, node, node.input[0])[2:], kernel, stride, dil, before, after, extra)
    window_pool(imp, node, op, win, bool(a.get("count_include_pad", 0)),
                column_major=bool(a.get("storage_order", 0)))


def _pool2d(op: str, imp: Importer, node: Any, kernel: list[int]) -> None:
    """2-D, no dilation, no Indices → max_pool2d / avg_pool2d. ceil_mode=1 adds the partial last
    windows (ONNX: ⌈(n + pads - k) / s⌉ + 1 windows, less one if the last would start in the
    end padding) as extra end padding; an average whose windows the gate cannot count (the
    extra end padding, asymmetric pads with count_include_pad=0) is a sum pool times a constant
    map of KH·KW / count (ONNX's count: the window's real pixels, or for count_include_pad=1
    its pixels inside the declared pads)."""
    a = imp.attrs(node)
    stride = _ints(imp, node, "strides", [1, 1])
    ceil = bool(a.get("ceil_mode", 0))
    before, after = _spatial(imp, node, kernel, [1, 1], stride)
    extra = _ceil_extra(imp, node, kernel, stride, before, after) if ceil else [0, 0]
    include = bool(a.get("count_include_pad", 0))
    x = imp.ref(node.input[0])
    ends = [b + e for b, e in zip(after, extra)]
    fits = all(2 * b <= k for b, k in zip(before, kernel))
    if op == "avg_pool2d" and (any(extra) and include or before != ends and not include
                               or not fits and not include):
        _counted_avg(imp, node, x, kernel, stride, before, after, extra, include)
        return
    if before != ends or not fits:
        x = _pad_first(imp, node, x, before, ends,
                       lowest(imp, node.input[0]) if op == "max_pool2d" else 0.0)
        before = [0, 0]
    more: dict[str, Any] = {"count_include_pad": include} if op == "avg_pool2d" else {}
    imp.emit(op, [x], node.output[0], kernel=kernel, stride=stride, padding=before, **more)


def _ceil_extra(imp: Importer, node: Any, kernel: list[int], stride: list[int],
                before: list[int], after: list[int]) -> list[int]:
    """The end padding that ceil_mode=1 adds per axis, so that flooring pools its windows
    (``kernel``: each window's span, (k - 1)·d + 1 with dilation d)."""
    extra = []
    for n, k, s, b, e in zip(_known(imp, node, node.input[0])[2:], kernel, stride, before, after):
        out = -(-(n + b + e - k) // s) + 1
        if (out - 1) * s >= n + b:  # the last window would start in the end padding
            out -= 1
        extra.append(max((out - 1) * s + k - (n + b + e), 0))
    return extra


def _counted_avg(imp: Importer, node: Any, x: str, kernel: list[int], stride: list[int],
                 before: list[int], after: list[int], extra: list[int], include: bool) -> None:
    """avg over ONNX's counts: zero-pad, average over KH·KW, times KH·KW / count per window."""
    size, out = _known(imp, node, node.input[0])[2:], node.output[0]
    counts = []
    for n, k, s, b, e, more in zip(size, kernel, stride, before, after, extra):
        lo, hi = (0, b + n + e) if include else (b, b + n)  # where pixels count
        starts = np.arange(0, b + n + e + more - k + 1, s)
        counts.append(np.minimum(starts + k, hi) - np.maximum(starts, lo))
    count = np.outer(counts[0], counts[1])
    if (count <= 0).any():
        raise imp.refuse(node, f"pads {before + after} leave a window with no pixel to count "
                               "(ONNX's average there is 0/0)")
    x = _pad_first(imp, node, x, before, [e + m for e, m in zip(after, extra)], 0.0)
    mean = imp.emit("avg_pool2d", [x], hint=f"{out}_over_kernel", kernel=kernel, stride=stride,
                    padding=[0, 0], count_include_pad=True)
    dt = imp.dtype(node.input[0]) or np.dtype("float32")
    scale = imp.param(f"{out}_count_scale", (kernel[0] * kernel[1] / count).astype(dt),
                      made_up=True)
    imp.emit("mul", [mean, scale], out)


def _global_avg(imp: Importer, node: Any) -> None:
    _image(imp, node)
    shape = imp.shape(node.input[0])
    c = shape[1] if shape else None
    if c is None:
        raise imp.refuse(node, "the channel count is unknown (needed to keep the (N, C, 1, 1) "
                               "shape)")
    out = node.output[0]
    pooled = imp.emit("global_avg_pool", [imp.ref(node.input[0])], hint=f"{out}_NC")
    imp.emit("reshape", [pooled], out, shape=[-1, int(c), 1, 1])


def _batchnorm(imp: Importer, node: Any) -> None:
    """BatchNormalization (inference) → batchnorm, running statistics as buffers;
    training_mode=1 (opset 14+) composed from existing gates (translate_bn)."""
    a = imp.attrs(node)
    if a.get("training_mode", 0) and imp.opset >= 14:
        batchnorm_training(imp, node)
        return
    if any(o for o in node.output[1:]):
        raise imp.refuse(node, f"its outputs {list(node.output[1:])} (opset {imp.opset}: the "
                               "statistics of training, before opset 14's training_mode); "
                               "graphexec imports BatchNormalization for inference, or with "
                               "training_mode=1 from opset 14 on")
    rank = _rank(imp, node, node.input[0])
    if rank not in (2, 4):
        raise imp.refuse(node, f"input of rank {rank}; graphexec's batchnorm takes (N, C) or "
                               "(N, C, H, W)")
    ins = [imp.ref(i) for i in node.input[:3]]
    for i in node.input[3:5]:
        ins.append(imp.buffer(node, i))
    momentum = min(max(1.0 - f32(a.get("momentum", 0.9)), 0.0), 1.0)
    imp.emit("batchnorm", ins, node.output[0], momentum=momentum, eps=f32(a.get("epsilon", 1e-5)))


def _layernorm(imp: Importer, node: Any) -> None:
    x, out = node.input[0], node.output[0]
    rank = _rank(imp, node, x)
    axis = int(imp.attrs(node).get("axis", -1)) % rank
    shape = imp.shape(x) or ()
    sizes = tuple(shape[axis:])  # only the normalised sizes need be known (a batch may not be)
    if None in sizes:
        raise imp.refuse(node, f"the input {x!r} has shape {shape}; the normalised axes "
                               f"{sizes} must have known sizes")
    tail: tuple[int, ...] = tuple(int(d) for d in sizes if d is not None)
    scale = imp.shape(node.input[1])
    if scale is None or tuple(scale) != tuple(tail):
        raise imp.refuse(node, f"Scale of shape {scale} broadcasts over the normalised axes "
                               f"{tail}; graphexec's layernorm takes scale and bias of that shape")
    ins = [imp.ref(x), imp.ref(node.input[1])]
    if len(node.input) > 2 and node.input[2]:
        if imp.shape(node.input[2]) != scale:
            raise imp.refuse(node, f"B has shape {imp.shape(node.input[2])}, expected {scale}")
        ins.append(imp.ref(node.input[2]))
    else:
        dt = imp.dtype(x) or np.dtype("float32")
        ins.append(imp.param(f"{out}_zero_bias", np.zeros(tail, dt), made_up=True))
    eps = f32(imp.attrs(node).get("epsilon", 1e-5))
    imp.emit("layernorm", ins, out, normalized_ndim=rank - axis, eps=eps)
    _layernorm_stats(imp, node, rank - axis, eps)


def _layernorm_stats(imp: Importer, node: Any, k: int, eps: float) -> None:
    """LayerNormalization's Mean and InvStdDev outputs (where used) as layernorm_stat nodes;
    ONNX gives them in the stash type (float32 for stash_type=1, the only one defined)."""
    used = [(o, stat) for o, stat in zip(node.output[1:3], ("mean", "inv_std_dev"))
            if o and (imp.uses[o] or o in imp.graph_outputs)]
    if not used:
        return
    stash = int(imp.attrs(node).get("stash_type", 1))
    dt = imp.dtype(node.input[0])
    if stash != 1 or dt != np.dtype("float32"):
        raise imp.refuse(node, f"its {used[0][0]!r} output is asked in stash_type {stash} for X "
                               f"of dtype {dt}; graphexec computes the statistics in X's dtype, "
                               "so only float32 X with stash_type=1 (float32) matches")
    for o, stat in used:
        imp.emit("layernorm_stat", [imp.ref(node.input[0])], o, stat=stat, normalized_ndim=k,
                 eps=eps)


# ---------------------------------------------------------------------------- layout
def _transpose(imp: Importer, node: Any) -> None:
    perm = imp.attrs(node).get("perm")
    extra: dict[str, Any] = {"perm": [int(p) for p in perm]} if perm is not None else {}
    imp.emit("transpose", [imp.ref(node.input[0])], node.output[0], **extra)


def _concat(imp: Importer, node: Any) -> None:
    imp.emit("concat", [imp.ref(i) for i in node.input if i], node.output[0],
             axis=int(imp.attrs(node)["axis"]))


def _flatten(imp: Importer, node: Any) -> None:
    imp.emit("flatten", [imp.ref(node.input[0])], node.output[0],
             axis=int(imp.attrs(node).get("axis", 1)))


def _softmax(op: str) -> Translate:
    """Softmax / LogSoftmax: opset >= 13 over one axis; before, over the flattened trailing
    axes from ``axis`` (a reshape around the gate when that is more than the last axis)."""
    def tr(imp: Importer, node: Any) -> None:
        x, out = node.input[0], node.output[0]
        rank = _rank(imp, node, x)
        axis = int(imp.attrs(node).get("axis", -1 if imp.opset >= 13 else 1)) % max(rank, 1)
        if imp.opset >= 13 or axis == rank - 1:
            imp.emit(op, [imp.ref(x)], out, axis=axis)
            return
        shape = _known(imp, node, x)
        flat = imp.emit("reshape", [imp.ref(x)], hint=f"{out}_2d",
                        shape=[math.prod(shape[:axis]), -1])
        y = imp.emit(op, [flat], hint=f"{out}_{op}", axis=-1)
        imp.emit("reshape", [y], out, shape=list(shape))
    return tr


# ---------------------------------------------------------------------------- reductions
# ---------------------------------------------------------------------------- older ops
def _dropout(imp: Importer, node: Any) -> None:
    """Dropout → the identity wherever ONNX's output is the input: inference (opset < 7: is_test
    nonzero; 7-11: always; 12+: training_mode absent or the constant False) or training with
    the ratio 0; the mask (where used) is all True (dropout_mask), as ONNX's reference gives it.
    Training with a nonzero ratio draws ONNX's random mask, which graphexec cannot reproduce."""
    if _dropout_training(imp, node):
        ratio = _dropout_ratio(imp, node)
        if ratio != 0.0:
            raise imp.refuse(node, f"training_mode is True with ratio {ratio:g}, which drops a "
                                   "random mask drawn by the ONNX runtime's generator that "
                                   "graphexec cannot reproduce bit for bit; give training_mode "
                                   "as the constant False (eval mode) or the ratio 0")
    mask = node.output[1] if len(node.output) > 1 else ""
    if mask and (imp.uses[mask] or mask in imp.graph_outputs):
        if imp.opset < 12:
            raise imp.refuse(node, f"its mask output {mask!r} at opset {imp.opset}: before opset "
                                   "12 ONNX leaves the inference mask undefined (its reference "
                                   "gives all True, onnxruntime all False; before opset 10 it "
                                   "has X's float type); graphexec computes it from opset 12 on")
        imp.emit("dropout_mask", [imp.ref(node.input[0])], mask)  # all True
    imp.alias[node.output[0]] = imp.ref(node.input[0])


def _dropout_training(imp: Importer, node: Any) -> bool:
    """Whether this Dropout runs in training mode: is_test (default 0) before opset 7, never
    from 7 to 11, the input training_mode (default False; a constant) from opset 12 on."""
    if imp.opset < 7:
        return not imp.attrs(node).get("is_test", 0)
    if imp.opset < 12:
        return False
    mode = imp.const_input(node, 2, "training_mode")  # a graph input: NeedsValue (bind it)
    return mode is not None and bool(np.asarray(mode).reshape(-1)[0])


def _dropout_ratio(imp: Importer, node: Any) -> float:
    """The drop ratio: the attribute (default 0.5) before opset 12, then the input (a constant;
    default 0.5)."""
    if imp.opset < 12:
        return float(imp.attrs(node).get("ratio", 0.5))
    ratio = imp.const_input(node, 1, "ratio")  # a graph input: NeedsValue (bind it)
    if ratio is None:
        return 0.5
    if np.size(ratio) != 1:
        raise imp.refuse(node, f"its ratio has shape {np.shape(ratio)}; ONNX's ratio is a scalar")
    return float(np.asarray(ratio).reshape(-1)[0])


def _gemm(imp: Importer, node: Any) -> None:
    """Gemm: constant operands are transposed and scaled at import (BASIC); a computed one gets
    a transpose gate, and alpha/beta on computed operands a mul by a frozen scalar."""
    a = imp.attrs(node)
    consts = [len(node.input) > i and node.input[i] in imp.consts for i in range(3)]
    simple = ((not a.get("transA", 0) or consts[0]) and (not a.get("transB", 0) or consts[1])
              and (f32(a.get("alpha", 1.0)) == 1.0 or consts[0] or consts[1])
              and (f32(a.get("beta", 1.0)) == 1.0 or len(node.input) < 3 or not node.input[2]
                   or consts[2]))
    if simple:
        BASIC["Gemm"](imp, node)
        return
    out, dt = node.output[0], imp.dtype(node.input[0]) or np.dtype("float32")
    ab = []
    for i, flag in ((0, "transA"), (1, "transB")):
        v = imp.ref(node.input[i])
        ab.append(imp.emit("transpose", [v], hint=f"{out}_{flag}", perm=[1, 0])
                  if a.get(flag, 0) else v)
    y = imp.emit("matmul", ab, hint=f"{out}_AB")
    y = _scaled(imp, y, f32(a.get("alpha", 1.0)), dt, f"{out}_alpha")
    if len(node.input) > 2 and node.input[2]:
        c = _scaled(imp, imp.ref(node.input[2]), f32(a.get("beta", 1.0)), dt, f"{out}_beta")
        imp.emit("add", [y, c], out)
    else:
        imp.alias[out] = y


def _scaled(imp: Importer, v: str, scale: float, dt: np.dtype[Any], hint: str) -> str:
    if scale == 1.0:
        return v
    k = imp.param(hint, np.asarray(scale, dt), made_up=True)
    return imp.emit("mul", [v, k], hint=f"{hint}_mul")


def _identity(imp: Importer, node: Any) -> None:
    imp.alias[node.output[0]] = imp.ref(node.input[0])


#: ONNX op (default domain) -> translator: the basic table and the network ops.
TRANSLATORS: dict[str, Translate] = {
    **BASIC,
    "Conv": conv, "MaxPool": _pool("max_pool2d"), "AveragePool": _pool("avg_pool2d"),
    "GlobalAveragePool": _global_avg, "ArgMax": arg_extreme("ArgMax"),
    "ArgMin": arg_extreme("ArgMin"), "BatchNormalization": _batchnorm,
    "InstanceNormalization": instance_norm,
    "LayerNormalization": _layernorm, "Transpose": _transpose, "Concat": _concat,
    "Flatten": _flatten, "Softmax": _softmax("softmax"), "LogSoftmax": _softmax("log_softmax"),
    "Dropout": _dropout,
    "Gemm": _gemm, "Identity": _identity, **LOSSES_AND_ACTIVATIONS,
}
