"""graphexec.testing.check_gate: passes good gates; names each way a bad gate breaks the rules."""

import math
import re

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict, field_validator

import graphexec as gx
from graphexec import registry as regmod
from graphexec.gates import activations, arith, linear, losses, reduce
from graphexec.registry import registry
from graphexec.testing import check_distribution, check_gate


class Square(gx.Gate):
    """y = x², the well-behaved base of the bad gates below."""

    name, version = "kit_square", 1

    def forward(self, ctx, x):
        ctx.x = x
        return x * x

    def backward(self, ctx, dy):
        return (2 * ctx.x * dy,)


# ---------------------------------------------------------------------------- good gates
GOOD = [
    (arith.Add, [(3, 4), (4,)], {}),
    (arith.Sub, [(3, 1), (3, 4)], {}),
    (arith.Mul, [(2, 3), ()], {}),
    (arith.Div, [(3, 4), (4,)], {"value_range": (0.5, 2.0)}),
    (arith.Exp, [(5,)], {}),
    (arith.Log, [(5,)], {"value_range": (0.1, 3.0)}),
    (arith.Max, [(3, 4), (3, 1)], {}),
    (reduce.Sum, [(3, 4)], {}),
    (reduce.Mean, [(2, 3, 2)], {}),
    (linear.MatMul, [(3, 4), (4, 2)], {}),
    (linear.Affine, [(3, 4), (4, 2), (2,)], {}),
    (linear.Reshape, [(3, 4)], {"attrs": {"shape": [2, -1]}}),
    (activations.Sigmoid, [(3, 4)], {}),
    (activations.Tanh, [(3, 4)], {}),
    (activations.ReLU, [(3, 4)], {}),
    (activations.LeakyReLU, [(3, 4)], {"attrs": {"alpha": 0.1}}),
    (activations.PReLU, [(3, 4), (4,)], {}),
    (activations.ELU, [(3, 4)], {"attrs": {"alpha": 0.5}}),
    (activations.Maxout, [(3, 4), (2, 4, 5), (2, 5)], {}),
    (losses.SoftmaxCrossEntropy, [(5, 3), (5,)], {"dtypes": ("float64", "int64")}),
    (losses.SVMLoss, [(5, 3), (5,)], {"dtypes": ("float64", "int64")}),
    (losses.L2, [(3, 4)], {}),
    (Square, [(4,)], {}),
]


@pytest.mark.parametrize("cls, shapes, kw", GOOD, ids=[f"{c.name}-{i}" for i, (c, *_) in
                                                       enumerate(GOOD)])
def test_good_gates_pass(cls, shapes, kw):
    err = check_gate(cls, *shapes, **kw)
    assert 0.0 <= err < 1e-6


def test_good_gates_pass_at_their_kinks():
    assert check_gate(activations.ReLU, inputs=[np.array([[0.0, 1.0], [-1.0, 0.0]])]) < 1e-6
    tie = np.array([[1.0, 2.0], [3.0, -1.0]])
    check_gate(arith.Max, inputs=[tie, tie.copy()])
    corners = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])  # margins exactly 0
    check_gate(losses.SVMLoss, inputs=[corners, np.array([0, 2])])


def test_registry_is_left_as_it_was():
    before = dict(registry().gates)
    check_gate(Square, (3,))
    check_gate(activations.ReLU, (3,))
    assert "kit_square" not in registry().gates and registry().gates == before


def test_labels_default_to_the_classes_of_the_scores():
    seen = []

    class Spy(losses.SoftmaxCrossEntropy):
        def forward(self, ctx, scores, labels):
            seen.append(labels.copy())
            return super().forward(ctx, scores, labels)

    check_gate(Spy, (40, 7), (40,), dtypes=("float64", "int64"), max_coords=8)
    assert set(seen[0]) == set(range(7)) and seen[0].dtype == np.int64
    seen.clear()
    check_gate(Spy, (40, 7), (40,), dtypes=("float64", "int32"), int_range=(2, 4), max_coords=8)
    assert set(seen[0]) == {2, 3} and seen[0].dtype == np.int32


# ---------------------------------------------------------------------------- bad gates
class WrongBackward(Square):
    name = "kit_wrong_backward"

    def backward(self, ctx, dy):
        return (3 * ctx.x * dy,)  # should be 2x


class MutatesInput(Square):
    name = "kit_mutates_input"

    def forward(self, ctx, x):
        x *= x  # squares in place: the caller's array is destroyed
        ctx.x = np.sqrt(np.abs(x))
        return x


class MutatesUpstream(Square):
    name = "kit_mutates_upstream"

    def backward(self, ctx, dy):
        dy *= 2 * ctx.x
        return (dy,)


class MutatesOutput(gx.Gate):
    """y = e^x, but backward reuses the output's memory."""

    name, version = "kit_mutates_output", 1

    def forward(self, ctx, x):
        ctx.y = np.exp(x)
        return ctx.y

    def backward(self, ctx, dy):
        ctx.y *= dy
        return (ctx.y,)


class StateOnSelf(Square):
    name = "kit_state_on_self"

    def forward(self, ctx, x):
        self.last_x = x  # shared by every run and thread!
        return x * x

    def backward(self, ctx, dy):
        return (2 * self.last_x * dy,)


class StateOnClass(Square):
    name = "kit_state_on_class"
    calls = 0

    def forward(self, ctx, x):
        type(self).calls += 1
        return super().forward(ctx, x)


class Upcasts(Square):
    name = "kit_upcasts"

    def forward(self, ctx, x):
        ctx.x = x
        return np.array(x, dtype=float) ** 2


class GradientUpcasts(Square):
    name = "kit_gradient_upcasts"

    def backward(self, ctx, dy):
        return (2.0 * np.asarray(ctx.x, dtype=np.float64) * dy,)


class NotDeterministic(Square):
    name = "kit_not_deterministic"

    def forward(self, ctx, x):
        ctx.x = x
        noise = np.random.default_rng().standard_normal(x.shape)  # unseeded
        return x * x + 1e-3 * noise


class NoUnbroadcast(gx.Gate):
    """z = x + b, but b's gradient is not summed back to b's shape."""

    name, version = "kit_no_unbroadcast", 1

    def forward(self, ctx, x, b):
        return x + b

    def backward(self, ctx, dz):
        return dz, dz


class NoneGradient(Square):
    name = "kit_none_gradient"

    def backward(self, ctx, dy):
        return (None,)


class TooFewGradients(arith.Mul):
    name = "kit_too_few"

    def backward(self, ctx, dz):
        return (ctx.y * dz,)


class DropsNeededGradient(arith.Mul):
    name = "kit_drops_needed"

    def backward(self, ctx, dz):
        if not all(ctx.needs_grad):  # wrong: skips the gradient that *is* needed too
            return None, None
        return super().backward(ctx, dz)


class Degrees(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    angle: float = 90.0

    @field_validator("angle")
    @classmethod
    def _to_radians(cls, v: float) -> float:
        return v * np.pi / 180.0  # not idempotent: the loaded value is converted again


class AttrsNotRoundTrip(Square):
    name = "kit_attrs_round_trip"
    Attrs = Degrees

    def forward(self, ctx, x):
        ctx.x = x
        return math.sin(self.attrs.angle) * x * x

    def backward(self, ctx, dy):
        return (math.sin(self.attrs.angle) * 2 * ctx.x * dy,)


class SetAttrs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tags: frozenset[str] = frozenset({"a"})


class AttrsNotPlain(Square):
    name = "kit_attrs_not_plain"
    Attrs = SetAttrs


class NoName(Square):
    name = ""


BAD = {  # case: (gate class, input shapes, the start of the message it must raise)
    "wrong backward": (
        WrongBackward, [(3, 4)],
        "check_gate(WrongBackward, op 'kit_wrong_backward'): backward disagrees with numerical "
        "gradients (rtol 1e-05): input 0 (3, 4): 12 of 12 coordinates fail"),
    "input mutation": (
        MutatesInput, [(3,)],
        "check_gate(MutatesInput, op 'kit_mutates_input'): forward writes into one of its inputs"),
    "upstream mutation": (
        MutatesUpstream, [(3,)], "backward writes into its inputs or into the upstream gradient"),
    "output mutation": (
        MutatesOutput, [(3,)], "backward changed the forward output in place"),
    "state on self": (
        StateOnSelf, [(3,)],
        "keeps per-run state on the gate: a run changed ['last_x']. A gate is shared by every "
        "run and thread"),
    "state on class": (
        StateOnClass, [(3,)],
        "keeps per-run state on the gate: a run changed ['StateOnClass.calls']"),
    "float32 upcast": (
        Upcasts, [(3,)], "float32 in does not give float32 out: forward returned float64"),
    "float32 gradient upcast": (
        GradientUpcasts, [(3,)],
        "with float32 inputs, the gradient for input 0 is float64, expected float32"),
    "not deterministic": (
        NotDeterministic, [(3,)],
        "is not deterministic: two forward runs on the same inputs differ"),
    "wrong gradient shape": (
        NoUnbroadcast, [(3, 4), (4,)],
        "the gradient for input 1 has shape (3, 4), expected (4,) (shaped like the input). "
        "Sum over broadcast axes with graphexec.unbroadcast"),
    "None gradient": (
        NoneGradient, [(3,)], "backward returned NoneType for input 0, which needs a gradient"),
    "gradient count": (
        TooFewGradients, [(3,), (3,)], "backward returned 1 gradients for 2 inputs"),
    "needs_grad misuse": (
        DropsNeededGradient, [(3,), (3,)],
        "with ctx.needs_grad = (True, False), the gradient for input 0 is missing or differs"),
    "attrs round trip": (
        AttrsNotRoundTrip, [(3,)],
        "attributes do not survive a save/load round trip: made Degrees(angle=90.0), loaded "
        "Degrees(angle=1.5707963267948966)"),
    "attrs not plain": (
        AttrsNotPlain, [(3,)], "do not survive a save/load round trip"),
    "invalid class": (
        NoName, [(3,)], "not a valid gate class: gate NoName of "),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_gates_raise_a_specific_assertion(case):
    cls, shapes, message = BAD[case]
    before = dict(registry().gates)
    with pytest.raises(AssertionError, match=re.escape(message)):
        check_gate(cls, *shapes)
    assert registry().gates == before


def test_bad_attrs_and_bad_arguments():
    rejects = "its Attrs model rejects attrs={'alpha': 'x'}"
    with pytest.raises(AssertionError, match=re.escape(rejects)):
        check_gate(activations.LeakyReLU, (3,), attrs={"alpha": "x"})
    with pytest.raises(ValueError, match="2 input shapes but 1 dtypes"):
        check_gate(arith.Add, (3,), (3,), dtypes=("float64",))


def test_wrong_backward_message_shows_the_numbers():
    with pytest.raises(AssertionError) as info:
        check_gate(WrongBackward, inputs=[np.array([1.0, -2.0])])
    text = str(info.value)
    assert "worst at (" in text and "relative error 3.33e-01" in text
    assert "Check the local gradient formula in backward()" in text


def test_a_wrong_value_at_a_kink_is_still_caught():
    class BadKink(Square):
        """y = relu(x), but backward claims slope -0.5 at x <= 0 (outside [0, 1] at 0)."""

        name = "kit_bad_kink"

        def forward(self, ctx, x):
            ctx.x = x
            return np.maximum(x, 0)

        def backward(self, ctx, dy):
            return (np.where(ctx.x > 0, dy, -0.5 * dy),)

    with pytest.raises(AssertionError, match="backward disagrees"):
        check_gate(BadKink, inputs=[np.array([0.0, 1.0])])


# ---------------------------------------------------------------------------- fresh_grads
class _Claims(Square):
    fresh_grads = True


class PassThrough(_Claims):
    """y = x + 0 that hands dout back: the executor would add into the caller's array."""

    name = "kit_pass"

    def forward(self, ctx, x):
        return x + 0.0

    def backward(self, ctx, dy):
        return (dy,)


class KeepsIt(_Claims):
    """y = 2x whose gradient is an array it also keeps on ctx."""

    name = "kit_keeps"

    def forward(self, ctx, x):
        return 2 * x

    def backward(self, ctx, dy):
        ctx.g = 2 * dy
        return (ctx.g,)


class Twice(gx.Gate):
    """y = x + z with one new array returned for both inputs."""

    name, fresh_grads = "kit_twice", True

    def forward(self, ctx, x, z):
        return x + z

    def backward(self, ctx, dy):
        g = dy.copy()
        return g, g


class ReadOnly(_Claims):
    name = "kit_readonly"

    def forward(self, ctx, x):
        return 3 * x

    def backward(self, ctx, dy):
        g = 3 * dy
        g.flags.writeable = False
        return (g,)


@pytest.mark.parametrize("cls, shapes, message", [
    (PassThrough, [(3,)], "gradient for input 0 shares memory with dout"),
    (KeepsIt, [(3,)], "gradient for input 0 shares memory with ctx.g"),
    (Twice, [(3,), (3,)], "gradient for input 1 shares memory with the gradient for input 0"),
    (ReadOnly, [(3,)], "gradient for input 0 is read-only"),
])
def test_a_false_fresh_grads_claim_fails_the_kit(cls, shapes, message):
    with pytest.raises(AssertionError, match=re.escape(f"declares fresh_grads = True, but the "
                                                       f"{message}. Return new arrays")):
        check_gate(cls, *shapes)
    check_gate(type(cls.__name__, (cls,), {"fresh_grads": False}), *shapes)  # honest: passes


# ---------------------------------------------------------------------------- check_distribution
class _Dist:
    def __init__(self, name, version="1.0"):
        self.metadata, self.version = {"Name": name}, version


class _EP:
    def __init__(self, name, target, dist):
        self.name, self.value, self.dist, self._target = name, f"fake:{name}", _Dist(dist), target

    def load(self):
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


class Misnamed(Square):
    name = "misnamed"


def test_check_distribution_names_each_broken_entry(monkeypatch):
    eps = [_EP("kit_square", Square, "kit-gates"), _EP("other", Misnamed, "kit-gates"),
           _EP("gone", ImportError("No module named 'kit_gone'"), "kit-gates"),
           _EP("kit_pass", PassThrough, "kit-gates"), _EP("add", arith.Add, "graphexec")]
    monkeypatch.setattr(regmod, "entry_points", lambda group: eps)
    with pytest.raises(AssertionError) as e:
        check_distribution("kit_gates")  # - and _ alike, as pip does
    lines = str(e.value).splitlines()
    assert lines[0] == "kit-gates 1.0: 4 gate entry points, 3 fail"
    assert lines[1] == ("  FAIL gone: does not load: kit-gates: cannot import gate 'gone' "
                        "(fake:gone): ImportError(\"No module named 'kit_gone'\")")
    assert lines[3].startswith("  ok   kit_square: passes check_gate (max relative error ")
    assert lines[4] == ("  FAIL other: does not load: kit-gates: entry point 'other' points at "
                        "gate 'misnamed'; the names must match")
    assert lines[2].startswith("  FAIL kit_pass: check_gate(PassThrough, op 'kit_pass'): declares "
                               "fresh_grads = True")
    assert "misnamed" not in registry().names() and "kit_square" not in registry().names()


def test_check_distribution_passes_a_good_one_and_refuses_an_absent_one(monkeypatch):
    eps = [_EP("kit_square", Square, "kit-gates")]
    monkeypatch.setattr(regmod, "entry_points", lambda group: eps)
    report = check_distribution("kit-gates")
    assert report.ok and [c.entry for c in report.checks] == ["kit_square"]
    with pytest.raises(AssertionError, match=r"no 'graphexec.gates' entry points belong to "
                       r"'nope'; is it installed .*distributions with gates: kit-gates"):
        check_distribution("nope")
    with pytest.raises(ValueError, match=r"cases names ops that 'kit-gates' does not offer: "
                       r"\['kit_sqaure'\]"):
        check_distribution("kit-gates", cases={"kit_sqaure": {}})


BUILTIN_CASES = {
    "matmul": {"shapes": [(4, 3), (3, 2)]},
    "affine": {"shapes": [(4, 3), (3, 2), (2,)]},
    "maxout": {"shapes": [(4, 3), (2, 3, 5), (2, 5)]},
    "log": {"value_range": (0.1, 3.0)},
    "div": {"value_range": (0.5, 2.0)},
    "reshape": {"attrs": {"shape": [3, -1]}},
    "softmax_cross_entropy": {"shapes": [(5, 3), (5,)], "dtypes": ("float64", "int64")},
    "svm_loss": {"shapes": [(5, 3), (5,)], "dtypes": ("float64", "int64")},
    # issue 13's gates (NCHW)
    "conv2d": {"shapes": [(2, 4, 5, 5), (4, 2, 3, 3), (4,)], "attrs": {"groups": 2, "padding": 1}},
    "max_pool2d": {"shapes": [(2, 3, 6, 5)]},
    "avg_pool2d": {"shapes": [(2, 3, 6, 5)], "attrs": {"kernel": 3, "stride": 2, "padding": 1}},
    "global_avg_pool": {"shapes": [(2, 3, 4, 5)]},
    "batchnorm": {"shapes": [(4, 3), (3,), (3,), (3,), (3,)], "value_range": (0.5, 2.0)},
    "layernorm": {"shapes": [(4, 3), (3,), (3,)]},
    # issue 14's: gather's indices are integers; cast changes the dtype by definition, so it is
    # checked from integers (its float-to-float gradient: tests/test_gate_properties.py)
    "gather": {"shapes": [(4, 3), (2, 2)], "dtypes": ("float64", "int64"), "int_range": (-4, 4)},
    "cast": {"shapes": [(4, 3)], "dtypes": ("int64",), "int_range": (-5, 5),
             "attrs": {"to": "float64"}},
    "nll_loss": {"shapes": [(5, 3), (5,), (3,)], "dtypes": ("float64", "int64", "float64"),
                 "int_range": (0, 3)},
    # the elementwise ops of PyTorch exports: sqrt away from 0, where's condition a bool
    "sqrt": {"value_range": (0.5, 2.0)},
    "pow": {"value_range": (0.5, 2.0)},  # a positive base: dz/de = z ln x
    "reciprocal": {"value_range": (0.5, 2.0)},
    "where": {"dtypes": ("bool", "float64", "float64")},
}


def test_graphexec_s_own_distribution_passes_check_distribution():
    report = check_distribution("graphexec", cases=BUILTIN_CASES)
    assert report.ok and len(report.checks) == 62
