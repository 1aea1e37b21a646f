"""graphexec.testing.check_gate: passes good gates; names each way a bad gate breaks the rules."""

import math
import re

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict, field_validator

import graphexec as gx
from graphexec.gates import activations, arith, linear, losses, reduce
from graphexec.registry import registry
from graphexec.testing import check_gate


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
