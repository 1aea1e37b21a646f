"""Loss functions: softmax cross-entropy, multiclass SVM (hinge) loss, and L2 regularisation.

Each returns a scalar (a 0-d array of the scores' dtype).  Labels are integer class indices
in range; they take no gradient, so backward returns None for them.  Forward checks the
labels (integers, shape (N,) for scores (N, C), each in 0..C-1) and raises GraphError
otherwise: numpy would read a label -1 as the last class without a word.
"""

from __future__ import annotations

import numpy as np
from pydantic import ConfigDict

from graphexec.errors import GraphError
from graphexec.gate import Attrs, Ctx, Gate, Spec
from graphexec.gates._samples import Sample, random_shape
from graphexec.gates._shapes import float_dtype, fmt, same_dim, to_float


def check_labels(scores: np.ndarray, labels: np.ndarray) -> None:
    """GraphError unless ``scores`` is (N, C) and ``labels`` holds N integers in 0..C-1."""
    if scores.ndim != 2:
        raise GraphError(f"scores must be a matrix (N, C), one row per sample; found shape "
                         f"{scores.shape}; reshape them to (N, C)")
    if labels.dtype.kind not in "iu":
        raise GraphError(f"labels must be integer class indices; found {labels.dtype}; "
                         "convert them with .astype('int64')")
    n, c = scores.shape
    if labels.ndim != 1 or len(labels) != n:
        what = f"{len(labels)} entries" if labels.ndim == 1 else f"shape {labels.shape}"
        raise GraphError(f"the labels have {what} but the scores have {n} rows; expected one "
                         f"label per row, shape ({n},)")
    if n and (labels.min() < 0 or labels.max() >= c):
        row = int(np.flatnonzero((labels < 0) | (labels >= c))[0])
        raise GraphError(f"label {labels[row]} at row {row} is not in 0..{c - 1} (scores have "
                         f"{c} classes); give class indices from 0 to {c - 1}")


def loss_spec(scores: Spec, labels: Spec) -> Spec:
    """A scalar, after checking scores (N, C) and integer labels (N,) as far as they are known."""
    ss, ls = scores.shape, labels.shape
    if ss is not None and len(ss) != 2:
        raise GraphError(f"scores must be a matrix (N, C), one row per sample; found shape "
                         f"{fmt(ss)}; reshape them to (N, C)")
    if labels.dtype is not None and labels.dtype.kind not in "iu":
        raise GraphError(f"labels must be integer class indices; found {labels.dtype}; "
                         "convert them with .astype('int64')")
    n = None if ss is None else ss[0]
    if ls is not None and (len(ls) != 1 or not same_dim(ls[0], n)):
        raise GraphError(f"the labels are {fmt(ls)} but the scores have {n} rows; expected one "
                         f"label per row, shape ({n},)")
    return Spec((), float_dtype(scores))


def sample_scores_labels(rng: np.random.Generator) -> Sample:
    """Scores (N, C) and N labels in 0..C-1 (``sample_inputs`` of the losses)."""
    n, c = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    return (3 * rng.standard_normal((n, c)), rng.integers(0, c, size=n)), {}


class SoftmaxCrossEntropy(Gate):
    """L = (1/N) Σᵢ -log pᵢ,yᵢ  with  pᵢ = softmax(sᵢ),  for scores s (N, C) and labels y (N,).

    Stable form: log pᵢⱼ = (sᵢⱼ - mᵢ) - log Σₖ e^(sᵢₖ - mᵢ) with mᵢ = maxₖ sᵢₖ, so every
    exponent is <= 0 and the sum is >= 1 (no overflow, no log 0).
    Local gradient: dL/dsᵢⱼ = (pᵢⱼ - [j = yᵢ]) / N.
    """

    name, version = "softmax_cross_entropy", 1
    fresh_grads = True  # see Gate.fresh_grads
    sample_inputs = staticmethod(sample_scores_labels)

    def forward(self, ctx: Ctx, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
        check_labels(scores, labels)
        shifted = scores - scores.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        z = e.sum(axis=1, keepdims=True)  # Σₖ e^(sᵢₖ - mᵢ)
        rows = np.arange(scores.shape[0])
        e /= z  # in place: e becomes the softmax p
        ctx.p, ctx.rows, ctx.labels = e, rows, labels
        return np.asarray((np.log(z[:, 0]) - shifted[rows, labels]).mean())  # mean of -log pᵢ,yᵢ

    def backward(self, ctx: Ctx, dloss: np.ndarray) -> tuple[np.ndarray | None, None]:
        if not ctx.needs_grad[0]:
            return None, None
        scale = dloss / len(ctx.rows)
        dscores = ctx.p * scale  # a new array: ctx.p stays the softmax
        dscores[ctx.rows, ctx.labels] -= scale
        return dscores, None

    def infer(self, scores: Spec, labels: Spec) -> Spec:
        return loss_spec(scores, labels)


class SVMLoss(Gate):
    """L = (1/N) Σᵢ Σ_{j≠yᵢ} max(0, sᵢⱼ - sᵢ,yᵢ + 1): the multiclass hinge loss with margin 1.

    Local gradient: each positive margin adds +1 to its own score sᵢⱼ and -1 to the correct
    score sᵢ,yᵢ; so dsᵢⱼ = [margin > 0] and dsᵢ,yᵢ = -(number of positive margins in row i),
    all divided by N.
    """

    name, version = "svm_loss", 1
    fresh_grads = True  # see Gate.fresh_grads
    sample_inputs = staticmethod(sample_scores_labels)

    def forward(self, ctx: Ctx, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
        check_labels(scores, labels)
        scores = to_float(scores)  # integer scores: numpy's float of them, as infer says
        rows = np.arange(scores.shape[0])
        margins = np.maximum(0, scores - scores[rows, labels][:, None] + 1)
        margins[rows, labels] = 0  # j = yᵢ is not part of the sum
        ctx.positive, ctx.rows, ctx.labels, ctx.dtype = margins > 0, rows, labels, scores.dtype
        return np.asarray(margins.sum() / len(rows))

    def backward(self, ctx: Ctx, dloss: np.ndarray) -> tuple[np.ndarray | None, None]:
        if not ctx.needs_grad[0]:
            return None, None
        dscores = ctx.positive.astype(ctx.dtype)
        dscores[ctx.rows, ctx.labels] = -ctx.positive.sum(axis=1)
        return dscores * (dloss / len(ctx.rows)), None

    def infer(self, scores: Spec, labels: Spec) -> Spec:
        return loss_spec(scores, labels)


class L2(Gate):
    """y = ½ · scale · Σᵢ xᵢ² over every element (a scalar), e.g. a weight penalty with
    strength ``scale``.  Local gradient scale · x."""

    name, version = "l2", 1
    fresh_grads = True  # see Gate.fresh_grads

    class Attrs(Attrs):
        model_config = ConfigDict(extra="forbid", frozen=True)
        scale: float = 1.0

    def forward(self, ctx: Ctx, x: np.ndarray) -> np.ndarray:
        ctx.x = x = to_float(x)  # an integer x: numpy's float of it, as infer says
        return np.asarray((0.5 * self.attrs.scale) * (x * x).sum())

    def backward(self, ctx: Ctx, dy: np.ndarray) -> tuple[np.ndarray]:
        return (ctx.x * (self.attrs.scale * dy),)

    @staticmethod
    def sample_inputs(rng: np.random.Generator) -> Sample:
        return (rng.standard_normal(random_shape(rng)),), {"scale": float(rng.uniform(0.1, 2))}

    def infer(self, x: Spec) -> Spec:
        return Spec((), float_dtype(x))
