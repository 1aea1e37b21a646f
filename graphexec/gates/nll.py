"""Negative log-likelihood loss with ONNX's settings: class weights, ignore_index, reduction,
and scores with extra axes (N, C, d1, ..., dk).

``log_softmax`` (axis 1) followed by ``nll_loss`` is ONNX's SoftmaxCrossEntropyLoss, every
attribute included (ONNX defines it so); the importer maps it that way.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from graphexec.errors import GraphError
from graphexec.gate import Attrs, Ctx, Gate, Spec
from graphexec.gates._samples import Sample
from graphexec.gates._shapes import float_dtype, fmt, same_dim, to_float

__all__ = ["NLLLoss"]


def _check(x: Any, labels: Any, weight: tuple[Any, ...], ldtype: Any) -> None:
    """GraphError unless x is (N, C, d...), labels (N, d...) integers, weight at most one (C,)."""
    if len(weight) > 1:
        raise GraphError(f"nll_loss takes log_probs, labels and at most one weight; found "
                         f"{2 + len(weight)} inputs")
    if x is not None and len(x) < 2:
        raise GraphError(f"nll_loss expects log_probs (N, C, d1, ..., dk); found {fmt(x)}; give "
                         "the classes on axis 1")
    if ldtype is not None and ldtype.kind not in "iu":
        raise GraphError(f"labels must be integer class indices; found {ldtype}; convert them "
                         "with .astype('int64')")
    if x is not None and labels is not None:
        want = (x[0], *x[2:])
        if len(labels) != len(want) or not all(map(same_dim, labels, want)):
            raise GraphError(f"labels are {fmt(labels)} but log_probs are {fmt(x)}; expected "
                             f"labels {fmt(want)} (the log_probs' shape without axis 1)")
    if weight and weight[0] is not None and x is not None and (
            len(weight[0]) != 1 or not same_dim(weight[0][0], x[1])):
        raise GraphError(f"weight is {fmt(weight[0])} but log_probs have {x[1]} classes; expected "
                         f"one weight per class, shape ({x[1]},)")


def _kept_labels(labels: np.ndarray, c: int, ignore: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(keep, safe): which labels count, and the labels with ignored ones replaced by 0; a
    counted label outside 0..C-1 is a GraphError (numpy would read -1 as the last class)."""
    keep = np.ones(labels.shape, bool) if ignore is None else labels != ignore
    bad = keep & ((labels < 0) | (labels >= c))
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise GraphError(f"label {labels[at]} at {at} is not in 0..{c - 1} (log_probs have {c} "
                         f"classes) nor the ignore_index {ignore}; give class indices from 0 to "
                         f"{c - 1}")
    return keep, np.where(keep, labels, 0)


class NLLLoss(Gate):
    """lᵢ = -wᵢ · x[n, yᵢ, d...] per label i = (n, d...), with wᵢ = weight[yᵢ] (1 without a
    weight input) and wᵢ = 0 where yᵢ = ignore_index.  Reduction: ``none`` gives l (labels'
    shape), ``sum`` Σ l, ``mean`` Σ l / Σ w (the weighted mean; without weights the mean over
    the labels not ignored; 0/0 = nan when every label is ignored, as ONNX gives).

    Local gradients: dx[n, yᵢ, d...] = -wᵢ · g with g = dL (sum), dLᵢ (none), dL / Σ w (mean);
    every other entry 0.  dweight[c] = Σ_{yᵢ = c, kept} g · (-x[n, c, d...]) for sum and none,
    and (dL / Σ w) · Σ_{yᵢ = c, kept} (-x[n, c, d...] - L) for mean (the quotient rule).
    """

    name, version = "nll_loss", 1
    fresh_grads = True  # see Gate.fresh_grads

    class Attrs(Attrs):
        reduction: Literal["mean", "sum", "none"] = "mean"
        ignore_index: int | None = None

    def forward(self, ctx: Ctx, log_probs: np.ndarray, labels: np.ndarray,
                *weight: np.ndarray) -> np.ndarray:
        _check(log_probs.shape, labels.shape, tuple(w.shape for w in weight), labels.dtype)
        log_probs = to_float(log_probs)  # integer scores: numpy's float for their dtype
        keep, safe = _kept_labels(labels, log_probs.shape[1], self.attrs.ignore_index)
        picked = -np.take_along_axis(log_probs, safe[:, None], axis=1)[:, 0]  # -x[n, yᵢ, d...]
        picked[~keep] = 0  # an ignored label adds 0, even where its stand-in class is -inf
        w = (weight[0].astype(log_probs.dtype)[safe] if weight else np.ones_like(picked)) * keep
        per = w * picked
        ctx.safe, ctx.w, ctx.picked, ctx.keep, ctx.shape = safe, w, picked, keep, log_probs.shape
        if self.attrs.reduction == "none":
            return np.asarray(per)
        total = per.sum()
        if self.attrs.reduction == "sum":
            return np.asarray(total)
        ctx.wsum = w.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            loss = np.asarray(total / ctx.wsum, log_probs.dtype)
        ctx.loss = loss
        return loss

    def backward(self, ctx: Ctx, dloss: np.ndarray) -> tuple[np.ndarray | None, ...]:
        mean = self.attrs.reduction == "mean"
        with np.errstate(invalid="ignore", divide="ignore"):
            g = dloss / ctx.wsum if mean else dloss
        dx = None
        if ctx.needs_grad[0]:
            dx = np.zeros(ctx.shape, dtype=ctx.picked.dtype)
            np.put_along_axis(dx, ctx.safe[:, None], (-ctx.w * g)[:, None], axis=1)
        grads: list[np.ndarray | None] = [dx, None]
        if len(ctx.needs_grad) > 2:
            grads.append(self._dweight(ctx, g, mean) if ctx.needs_grad[2] else None)
        return tuple(grads)

    @staticmethod
    def _dweight(ctx: Ctx, g: np.ndarray, mean: bool) -> np.ndarray:
        share = (ctx.picked - ctx.loss) * g if mean else ctx.picked * g
        return np.bincount(ctx.safe[ctx.keep], weights=np.broadcast_to(share, ctx.keep.shape)[
            ctx.keep], minlength=ctx.shape[1]).astype(ctx.picked.dtype)

    def infer(self, log_probs: Spec, labels: Spec, *weight: Spec) -> Spec:
        _check(log_probs.shape, labels.shape, tuple(w.shape for w in weight), labels.dtype)
        shape = labels.shape if self.attrs.reduction == "none" else ()
        return Spec(shape, float_dtype(log_probs))

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        n, c = int(rng.integers(1, 4)), int(rng.integers(1, 5))
        extra = tuple(int(v) for v in rng.integers(1, 4, size=int(rng.integers(0, 3))))
        labels = rng.integers(0, c, size=(n, *extra))
        ignore = int(rng.integers(-1, c)) if rng.random() < 0.5 else None
        if ignore is not None and (labels != ignore).sum() == 0:
            ignore = None  # every label ignored: the mean is 0/0
        inputs: tuple[np.ndarray, ...] = (rng.standard_normal((n, c, *extra)), labels)
        if rng.random() < 0.6:
            inputs += (rng.uniform(0.2, 2.0, c),)
        reduction = str(rng.choice(["mean", "sum", "none"]))
        return inputs, {"reduction": reduction, "ignore_index": ignore}
