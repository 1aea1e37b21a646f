"""Shape rules shared by the built-in gates' ``infer`` methods (``Spec`` in, ``Spec`` out).

A rule says what can be known: an unknown rank (``shape`` None) or an unknown dimension (None)
propagates, and only a definite mismatch raises ``GraphError`` (without the node's name: the
graph stage prefixes it).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from graphexec.errors import GraphError
from graphexec.gate import Spec

__all__ = ["Dim", "Shape", "broadcast", "elementwise", "float_dtype", "fmt", "matmul_shape", "pair",
           "reshape_shape", "result_dtype", "same_dim", "window_out"]

Dim = int | None
Shape = tuple[Dim, ...]


def fmt(shape: Shape | None) -> str:
    """A shape as users read it: ``(None, 3)``; an unknown rank as ``(...)``."""
    return "(...)" if shape is None else str(tuple(shape))


def pair(v: int | Sequence[int]) -> tuple[int, int]:
    """An ``int or pair`` attribute as a pair: 3 -> (3, 3)."""
    if isinstance(v, int):
        return v, v
    return int(v[0]), int(v[1])


def result_dtype(*specs: Spec) -> np.dtype[Any] | None:
    """numpy's result type of the inputs' dtypes (what broadcasting arithmetic gives); None if
    any is unknown. Integers that no integer type holds together (uint64 and a signed type) are
    refused: numpy would compute in float64, which rounds integers past 2**53."""
    dtypes = [s.dtype for s in specs]
    if any(d is None for d in dtypes):
        return None
    out = np.result_type(*dtypes)
    if out.kind == "f" and all(d.kind in "biu" for d in dtypes if d is not None):
        names = " and ".join(sorted({d.name for d in dtypes if d is not None}))
        raise GraphError(f"{names} have no common integer type: numpy would compute in {out} and "
                         "round integers past 2**53; cast one of them with .astype (to int64 or "
                         "uint64)")
    return out


@functools.lru_cache(maxsize=64)
def _float_of(dtype: np.dtype[Any]) -> np.dtype[Any]:
    return np.exp(np.zeros(0, dtype=dtype)).dtype


def float_dtype(spec: Spec) -> np.dtype[Any] | None:
    """The dtype of a transcendental function of the input (exp, log, tanh...): a float input's
    own dtype, numpy's float for an integer one; None if unknown."""
    return None if spec.dtype is None else _float_of(spec.dtype)


def to_float(x: np.ndarray) -> np.ndarray:
    """x if it holds floats, else x in numpy's float for its dtype (the dtype ``float_dtype``
    names: float16 for bool, int8 and uint8, float32 for int16 and uint16, float64 wider): what
    a gate computing a float function of an integer input computes in, as ``np.exp`` does."""
    return x if x.dtype.kind == "f" else x.astype(_float_of(x.dtype))


def same_dim(a: Dim, b: Dim) -> bool:
    """True unless both sizes are known and differ."""
    return a is None or b is None or a == b


def broadcast(*shapes: Shape | None) -> Shape | None:
    """numpy's broadcast of shapes with unknown dims; None if any rank is unknown."""
    if any(s is None for s in shapes):
        return None
    known = [s for s in shapes if s is not None]
    ndim = max((len(s) for s in known), default=0)
    out: list[Dim] = []
    for axis in range(-ndim, 0):
        dims = [s[axis] for s in known if len(s) >= -axis]
        sizes = {d for d in dims if d is not None and d != 1}
        if len(sizes) > 1:
            raise GraphError(f"shapes {', '.join(fmt(s) for s in known)} do not broadcast: axis "
                             f"{axis} has sizes {sorted(sizes)}; make them equal or 1")
        if sizes:
            out.append(sizes.pop())
        elif any(d is None for d in dims):
            out.append(None)  # 1 or anything: unknown
        else:
            out.append(1)
    return tuple(out)


def elementwise(*specs: Spec, floating: bool = False) -> Spec:
    """The spec of an elementwise (broadcasting) gate's output: numpy's result type of the
    inputs, made a float type if ``floating`` (the gate computes e^x, log x, ...)."""
    spec = Spec(broadcast(*(s.shape for s in specs)), result_dtype(*specs))
    return Spec(spec.shape, float_dtype(spec)) if floating else spec


def window_out(size: Dim, kernel: int, stride: int, pad: int, dilation: int = 1) -> Dim:
    """Output length of a sliding window: ⌊(size + 2·pad - dilation·(kernel-1) - 1) / stride⌋ + 1."""
    if size is None:
        return None
    span = dilation * (kernel - 1) + 1
    if size + 2 * pad < span:
        raise GraphError(f"a window spanning {span} does not fit in size {size} padded by {pad} "
                         "on each side; use a smaller kernel or dilation, or more padding")
    return (size + 2 * pad - span) // stride + 1


def matmul_shape(xs: Shape | None, ws: Shape | None) -> Shape | None:
    """numpy ``matmul``'s output shape: a 1-D x is a row, a 1-D W a column (their axis dropped),
    batch axes broadcast; the inner sizes must agree."""
    if xs is None or ws is None:
        return None
    if not xs or not ws:
        raise GraphError(f"matmul needs at least 1 axis on each side; found x {fmt(xs)}, "
                         f"W {fmt(ws)}")
    x2 = (1, *xs) if len(xs) == 1 else xs
    w2 = (*ws, 1) if len(ws) == 1 else ws
    if not same_dim(x2[-1], w2[-2]):
        raise GraphError(f"x has {x2[-1]} features but W expects {w2[-2]} (W is {fmt(ws)}); "
                         f"expected x (..., {w2[-2]})")
    batch = broadcast(x2[:-2], w2[:-2])
    assert batch is not None  # both ranks are known
    rows = () if len(xs) == 1 else (x2[-2],)
    cols = () if len(ws) == 1 else (w2[-1],)
    return (*batch, *rows, *cols)


def reshape_shape(xs: Shape | None, sizes: Sequence[int]) -> Shape:
    """numpy ``reshape``'s output shape (one size may be -1); a -1 is None unless x's size is
    known."""
    out: list[Dim] = list(sizes)
    known = math.prod(n for n in sizes if n != -1)
    total = None if xs is None or None in xs else math.prod(d for d in xs if d is not None)
    if total is None:
        return tuple(None if n == -1 else n for n in out)
    if -1 in sizes:
        if known == 0 or total % known:
            raise GraphError(f"cannot reshape x {fmt(xs)} ({total} values) to {list(sizes)}; "
                             f"the other sizes multiply to {known}")
        out[sizes.index(-1)] = total // known
    elif known != total:
        raise GraphError(f"cannot reshape x {fmt(xs)} ({total} values) to {list(sizes)} "
                         f"({known} values); the sizes must multiply to {total}")
    return tuple(out)
