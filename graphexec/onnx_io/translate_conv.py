"""ONNX ``Conv`` → graphexec's ``conv2d``: 2-D images as they are, 1-D signals (N, C, L) as
images of height 1 (reshapes before and after, exact); asymmetric pads as a ``pad`` node first.
The image geometry helpers (pads, auto_pad, known sizes) live here; pooling in ``translate_nn``
uses them too."""

from __future__ import annotations

import math
from typing import Any

from graphexec.onnx_io.translate import Importer

__all__ = ["conv", "image", "ints", "known", "pad_first", "rank", "spatial"]


def ints(imp: Importer, node: Any, key: str, default: list[int]) -> list[int]:
    return [int(v) for v in imp.attrs(node).get(key, default)]


def known(imp: Importer, node: Any, name: str, what: str = "input") -> tuple[int, ...]:
    shape = imp.shape(name)
    if shape is None or any(d is None for d in shape):
        raise imp.refuse(node, f"the {what} {name!r} has shape {shape}; this mapping needs every "
                               "dimension known")
    return tuple(int(d) for d in shape)  # type: ignore[arg-type]


def rank(imp: Importer, node: Any, name: str) -> int:
    shape = imp.shape(name)
    if shape is None:
        raise imp.refuse(node, f"the rank of {name!r} is unknown (ONNX shape inference gave none)")
    return len(shape)


def spatial(imp: Importer, node: Any, kernel: list[int], dil: list[int],
             stride: list[int]) -> tuple[list[int], list[int]]:
    """ONNX pads [x1_begin, x2_begin, ..., x1_end, x2_end, ...] (auto_pad resolved):
    (before, after) per spatial axis."""
    auto, n = imp.attrs(node).get("auto_pad", "NOTSET"), len(kernel)
    if auto in ("NOTSET", "VALID"):
        pads = ints(imp, node, "pads", [0] * 2 * n) if auto == "NOTSET" else [0] * 2 * n
        return pads[:n], pads[n:]
    size = imp.shape(node.input[0])
    if size is None or any(v is None for v in size[2:]):
        raise imp.refuse(node, f"auto_pad={auto!r} on an input of shape {size}; it needs the "
                               "spatial sizes known")
    before, after = [], []
    for m, k, d, s in zip(size[2:], kernel, dil, stride):
        assert m is not None  # checked above
        total = max((math.ceil(m / s) - 1) * s + (k - 1) * d + 1 - m, 0)
        small = total // 2
        before.append(small if auto == "SAME_UPPER" else total - small)
        after.append(total - before[-1])
    return before, after


def image(imp: Importer, node: Any) -> None:
    if rank(imp, node, node.input[0]) != 4:
        raise imp.refuse(node, f"input of rank {rank(imp, node, node.input[0])}; graphexec's "
                               "image gates take 2-D images (N, C, H, W)")


def pad_first(imp: Importer, node: Any, x: str, before: list[int], after: list[int],
               value: float) -> str:
    pads = [[0, 0], [0, 0]] + [[b, a] for b, a in zip(before, after)]
    return imp.emit("pad", [x], hint=f"{node.output[0]}_pad", pads=pads, value=value)


def conv(imp: Importer, node: Any) -> None:
    """Conv → conv2d; asymmetric pads (auto_pad SAME_* on even totals) as a pad node first. A
    1-D convolution (N, C, L) is the 2-D one of (N, C, 1, L) with a (F, C/g, 1, K) kernel:
    reshapes before and after, exact."""
    if rank(imp, node, node.input[0]) == 3:
        _conv1d(imp, node)
        return
    image(imp, node)
    kernel = _kernel(imp, node, 2)
    dil, stride = ints(imp, node, "dilations", [1, 1]), ints(imp, node, "strides", [1, 1])
    before, after = spatial(imp, node, kernel, dil, stride)
    ins = [imp.ref(node.input[0])] + [imp.ref(i) for i in node.input[1:] if i]
    _conv2d(imp, node, ins, node.output[0], kernel, dil, stride, before, after)


def _kernel(imp: Importer, node: Any, n: int) -> list[int]:
    w = imp.shape(node.input[1])
    known = [int(d) for d in w[2:] if d is not None] if w else []
    kernel = ints(imp, node, "kernel_shape", known if w and len(known) == len(w) - 2 else [])
    if len(kernel) != n:
        raise imp.refuse(node, "the kernel shape is unknown")
    return kernel


def _conv2d(imp: Importer, node: Any, ins: list[str], out: str | None, kernel: list[int],
            dil: list[int], stride: list[int], before: list[int], after: list[int]) -> str:
    if before != after:
        ins[0], before = pad_first(imp, node, ins[0], before, after, 0.0), [0, 0]
    return imp.emit("conv2d", ins, out, hint=f"{node.output[0]}_NF1L", stride=stride,
                    padding=before, dilation=dil, groups=int(imp.attrs(node).get("group", 1)))


def _conv1d(imp: Importer, node: Any) -> None:
    (k,) = _kernel(imp, node, 1)
    (d,), (s,) = ints(imp, node, "dilations", [1]), ints(imp, node, "strides", [1])
    (b,), (a,) = spatial(imp, node, [k], [d], [s])
    c, length = _known_but_batch(imp, node, node.input[0])
    w = known(imp, node, node.input[1], "kernel")
    out, x = node.output[0], imp.ref(node.input[0])
    x4 = imp.emit("reshape", [x], hint=f"{out}_NC1L", shape=[-1, c, 1, length])
    w4 = imp.emit("reshape", [imp.ref(node.input[1])], hint=f"{out}_W4",
                  shape=[w[0], w[1], 1, w[2]])
    ins = [x4, w4] + [imp.ref(i) for i in node.input[2:] if i]
    y4 = _conv2d(imp, node, ins, None, [1, k], [1, d], [1, s], [0, b], [0, a])
    n_out = (length + b + a - d * (k - 1) - 1) // s + 1
    imp.emit("reshape", [y4], out, shape=[-1, w[0], n_out])


def _known_but_batch(imp: Importer, node: Any, name: str) -> tuple[int, ...]:
    """The sizes of ``name`` after its batch axis, all known (else refused)."""
    shape = imp.shape(name)
    if shape is None or any(d is None for d in shape[1:]):
        raise imp.refuse(node, f"the input {name!r} has shape {shape}; a 1-D convolution needs "
                               "every dimension but the batch known")
    return tuple(int(d) for d in shape[1:] if d is not None)
