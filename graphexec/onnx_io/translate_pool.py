"""Pooling that graphexec's 2-D pool gates cannot do (1-D, 3-D, dilations, MaxPool's Indices),
decomposed into existing gates, for any number of spatial axes r:

    xp = pad(x)                                 every window in range: pads, ceil_mode's extra end
    w  = gather(... gather(xp, I₁, axis=2) ..., Iᵣ, axis=2r)     Iᵢ[o, j] = o·sᵢ + j·dᵢ, (Oᵢ, kᵢ)
         → (N, C, O₁, k₁, ..., Oᵣ, kᵣ): the taps of each window
    y  = reduce_max(w, K axes)  or  reduce_sum(w, K axes) · (1 / count)

so each output is exactly the max (or sum) of its window's taps, and the gradient flows back
through gather's scatter-add (overlapping windows add). Padding is −∞ for max (it never wins, as a
window with no real pixel is refused) and 0 for the average, whose count follows onnxruntime: the
taps on real pixels (count_include_pad=0) or inside the declared pads (1), never ceil_mode's extra.

Indices (MaxPool's second output, int64): the flat position in x (N, C, S₁, ..., Sᵣ) of each
window's first maximum, row-major over the spatial axes or, with storage_order=1, column-major:
    t   = argmax of w with its K axes moved last and flattened (row-major tap number)
    idx = tap_offset[t] + base[o] + (n·C + c)·S₁⋯Sᵣ
with the constants tap_offset[t] = Σᵢ jᵢ(t)·dᵢ·strideᵢ and base[o] = Σᵢ (oᵢ·sᵢ − beforeᵢ)·strideᵢ.

ArgMax / ArgMin, which share the argmax gate, are translated here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphexec.onnx_io.common import numpy_dtype
from graphexec.onnx_io.translate import Importer

__all__ = ["Windows", "arg_extreme", "lowest", "tap_counts", "window_pool"]


@dataclass(frozen=True)
class Windows:
    """The geometry of one pooling node per spatial axis: size (real pixels), kernel, stride,
    dilation, pads before and after (declared) and the extra end pad of ceil_mode."""

    size: tuple[int, ...]
    kernel: list[int]
    stride: list[int]
    dil: list[int]
    before: list[int]
    after: list[int]
    extra: list[int]

    def starts(self, i: int) -> np.ndarray:
        """Window starts along axis i, in padded coordinates."""
        span = (self.kernel[i] - 1) * self.dil[i] + 1
        total = self.before[i] + self.size[i] + self.after[i] + self.extra[i]
        return np.arange(0, total - span + 1, self.stride[i], dtype=np.int64)

    def taps(self, i: int) -> np.ndarray:
        """(Oᵢ, kᵢ): the padded position of every tap of every window along axis i."""
        j = np.arange(self.kernel[i], dtype=np.int64) * self.dil[i]
        return self.starts(i)[:, None] + j[None, :]


def tap_counts(win: Windows, include: bool) -> np.ndarray:
    """(O₁, ..., Oᵣ): the taps of each window on real pixels, or for ``include`` on pixels
    inside the declared pads (onnxruntime's count; ceil_mode's extra end pad never counts)."""
    count = np.ones((), dtype=np.int64)
    for i, (n, b, e) in enumerate(zip(win.size, win.before, win.after)):
        lo, hi = (0, b + n + e) if include else (b, b + n)
        t = win.taps(i)
        c = ((t >= lo) & (t < hi)).sum(axis=1)
        count = np.multiply.outer(count, c)
    return count


def window_pool(imp: Importer, node: Any, op: str, win: Windows, include: bool,
                column_major: bool) -> None:
    """Emit node's pooling (op "max_pool2d" or "avg_pool2d", named as the 2-D gates) and, if
    used, MaxPool's Indices, as pad + gather + reduce (module docstring)."""
    r, out = len(win.size), node.output[0]
    if any(len(win.starts(i)) == 0 for i in range(r)):
        raise imp.refuse(node, f"no window fits: the kernel {win.kernel} with dilations "
                               f"{win.dil} spans more than the padded input {win.size}")
    if (tap_counts(win, include=False) == 0).any():
        raise imp.refuse(node, f"pads {win.before + win.after} leave a window with no pixel "
                               "(ONNX's value there is undefined: 0/0 or the max of nothing)")
    x = imp.ref(node.input[0])
    if any(win.before) or any(e + m for e, m in zip(win.after, win.extra)):
        pads = [[0, 0], [0, 0]] + [[b, e + m] for b, e, m in
                                   zip(win.before, win.after, win.extra)]
        value = lowest(imp, node.input[0]) if op == "max_pool2d" else 0.0
        x = imp.emit("pad", [x], hint=f"{out}_pad", pads=pads, value=value)
    for i in range(r):
        idx = imp.param(f"{out}_taps{i + 1}", win.taps(i), made_up=True)
        x = imp.emit("gather", [x, idx], hint=f"{out}_windows{i + 1}", axis=2 + 2 * i)
    k_axes = [3 + 2 * i for i in range(r)]
    if op == "max_pool2d":
        imp.emit("reduce_max", [x], out, axes=k_axes, keepdims=False)
        if len(node.output) > 1 and _used(imp, node.output[1]):
            _indices(imp, node, x, win, column_major)
        return
    total = imp.emit("reduce_sum", [x], hint=f"{out}_sum", axes=k_axes, keepdims=False)
    dt = imp.dtype(node.input[0]) or np.dtype("float32")
    scale = imp.param(f"{out}_count_scale", (1.0 / tap_counts(win, include)).astype(dt),
                      made_up=True)
    imp.emit("mul", [total, scale], out)


def lowest(imp: Importer, name: str) -> float:
    """The padding that never wins a max: −∞, or an integer dtype's minimum (exact as a float:
    0 or −2^(bits−1)); −∞ itself cannot be stored in an integer."""
    elem = imp.types.get(name, (0, None))[0]
    dt = imp.dtype(name) or (numpy_dtype(elem, repr(name)) if elem else None)
    return float(np.iinfo(dt).min) if dt is not None and dt.kind in "iu" else -math.inf


def _used(imp: Importer, name: str) -> bool:
    return bool(name) and bool(imp.uses[name] or name in imp.graph_outputs)


def _indices(imp: Importer, node: Any, w: str, win: Windows, column_major: bool) -> None:
    """MaxPool's Indices from the windows w (N, C, O₁, k₁, ..., Oᵣ, kᵣ): module docstring."""
    shape = imp.shape(node.input[0])
    if shape is None or shape[0] is None or shape[1] is None:
        raise imp.refuse(node, f"its Indices output needs the batch size and channel count; X "
                               f"has shape {shape}")
    r, out, n, c = len(win.size), node.output[1], int(shape[0]), int(shape[1])
    if r > 1:
        perm = [0, 1] + [2 + 2 * i for i in range(r)] + [3 + 2 * i for i in range(r)]
        w = imp.emit("transpose", [w], hint=f"{out}_taps_last", perm=perm)
    flat = imp.emit("reshape", [w], hint=f"{out}_taps_flat", shape=[n, c] + [
        len(win.starts(i)) for i in range(r)] + [math.prod(win.kernel)])
    t = imp.emit("argmax", [flat], hint=f"{out}_tap", axis=-1, keepdims=False)
    steps, step = [0] * r, 1
    for i in (range(r) if column_major else range(r - 1, -1, -1)):  # x's flat stride per axis
        steps[i], step = step, step * win.size[i]
    tap, base = np.zeros((), np.int64), np.zeros((), np.int64)
    for i in range(r):
        tap = np.add.outer(tap, np.arange(win.kernel[i], dtype=np.int64) * win.dil[i] * steps[i])
        base = np.add.outer(base, (win.starts(i) - win.before[i]) * steps[i])
    offsets = imp.param(f"{out}_tap_offset", tap.reshape(-1), made_up=True)
    pos = imp.emit("gather", [offsets, t], hint=f"{out}_tap_pos", axis=0)
    pos = imp.emit("add", [pos, imp.param(f"{out}_window_pos", base, made_up=True)],
                   hint=f"{out}_spatial")
    image = (np.arange(n * c, dtype=np.int64) * step).reshape((n, c) + (1,) * r)
    imp.emit("add", [pos, imp.param(f"{out}_image_pos", image, made_up=True)], out)


def arg_extreme(op: str) -> Any:
    """ArgMax → argmax; ArgMin → argmax of −x (exact for floats: negation only flips the sign,
    so the order, ties and NaN's place are kept; an integer x is refused, where −x can overflow)."""
    def tr(imp: Importer, node: Any) -> None:
        a = imp.attrs(node)
        x = imp.ref(node.input[0])
        if op == "ArgMin":
            dt = imp.dtype(node.input[0])
            if dt is None or dt.kind != "f":  # float32 and float64 only
                raise imp.refuse(node, "ArgMin of a non-float input; graphexec computes ArgMin "
                                       "as argmax of -x, exact for float32 and float64 only")
            x = imp.emit("neg", [x], hint=f"{node.output[0]}_neg")
        imp.emit("argmax", [x], node.output[0], axis=int(a.get("axis", 0)),
                 keepdims=bool(a.get("keepdims", 1)),
                 select_last_index=bool(a.get("select_last_index", 0)))
    return tr
