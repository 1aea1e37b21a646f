"""ONNX → graphexec translators for the losses (SoftmaxCrossEntropyLoss with every attribute,
NegativeLogLikelihoodLoss) and the one-input activations with ONNX's definitions (Erf, Gelu,
Softplus, HardSigmoid, HardSwish). ``translate_nn.TRANSLATORS`` includes this table.
"""

from __future__ import annotations

from typing import Any

from graphexec.onnx_io.translate import Importer, Translate, f32

__all__ = ["LOSSES_AND_ACTIVATIONS"]


def _softmax_ce(imp: Importer, node: Any) -> None:
    """SoftmaxCrossEntropyLoss: with reduction 'mean', no weights and no ignore_index, the
    softmax_cross_entropy gate ((N, C, d1, ...) scores moved to (N·d1·..., C)); with any of them,
    log_softmax over axis 1 then nll_loss with the same attributes, which is how ONNX defines
    the op. The optional ``log_prob`` output is that log_softmax."""
    a = imp.attrs(node)
    scores, labels, out = node.input[0], node.input[1], node.output[0]
    weighted = len(node.input) > 2 and bool(node.input[2])
    log_prob = node.output[1] if len(node.output) > 1 and node.output[1] else None
    if a.get("reduction", "mean") == "mean" and not weighted and "ignore_index" not in a:
        _plain_softmax_ce(imp, node)
        if log_prob:
            imp.emit("log_softmax", [imp.ref(scores)], log_prob, axis=1)
        return
    lp = imp.emit("log_softmax", [imp.ref(scores)], log_prob, hint=f"{out}_log_prob", axis=1)
    _nll_of(imp, node, lp, labels)


def _plain_softmax_ce(imp: Importer, node: Any) -> None:
    scores, out = node.input[0], node.output[0]
    shape = imp.shape(scores)
    if shape is None or len(shape) < 2 or shape[1] is None:
        raise imp.refuse(node, f"scores of shape {shape}: the class count (axis 1) must be known")
    s, y = imp.ref(scores), imp.ref(node.input[1])
    if len(shape) > 2:
        perm = [0] + list(range(2, len(shape))) + [1]
        s = imp.emit("transpose", [s], hint=f"{out}_classes_last", perm=perm)
        s = imp.emit("reshape", [s], hint=f"{out}_scores_2d", shape=[-1, int(shape[1])])
        y = imp.emit("reshape", [y], hint=f"{out}_labels_1d", shape=[-1])
    imp.emit("softmax_cross_entropy", [s, y], out)


def _nll(imp: Importer, node: Any) -> None:
    """NegativeLogLikelihoodLoss → nll_loss (every attribute)."""
    _nll_of(imp, node, imp.ref(node.input[0]), node.input[1])


def _nll_of(imp: Importer, node: Any, log_probs: str, labels: str) -> None:
    a = imp.attrs(node)
    ins = [log_probs, imp.ref(labels)]
    if len(node.input) > 2 and node.input[2]:
        ins.append(imp.ref(node.input[2]))
    extra: dict[str, Any] = {"ignore_index": int(a["ignore_index"])} if "ignore_index" in a else {}
    imp.emit("nll_loss", ins, node.output[0], reduction=str(a.get("reduction", "mean")), **extra)


def _activation(op: str, **defaults: float) -> Translate:
    """A one-input activation; ``defaults``: its float attributes (ONNX stores float32)."""
    def tr(imp: Importer, node: Any) -> None:
        dt = imp.dtype(node.input[0])
        if dt is None or dt.kind != "f":
            raise imp.refuse(node, f"input dtype {dt}; graphexec's {op} takes float32/float64")
        a = imp.attrs(node)
        attrs: dict[str, Any] = {k: f32(a.get(k, v)) for k, v in defaults.items()}
        if node.op_type == "Gelu":
            attrs["approximate"] = str(a.get("approximate", "none"))
        imp.emit(op, [imp.ref(node.input[0])], node.output[0], **attrs)
    return tr


#: ONNX op (default domain) -> translator, for the ops of this module.
LOSSES_AND_ACTIVATIONS: dict[str, Translate] = {
    "SoftmaxCrossEntropyLoss": _softmax_ce, "NegativeLogLikelihoodLoss": _nll,
    "Erf": _activation("erf"), "Gelu": _activation("onnx_gelu"),
    "Softplus": _activation("onnx_softplus"), "HardSwish": _activation("hard_swish"),
    "HardSigmoid": _activation("hard_sigmoid", alpha=0.2, beta=0.5),
}
