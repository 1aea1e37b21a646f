"""The example gates: graphexec's conformance kit, plus known values."""

import math

import numpy as np
import pytest
from graphexec_example_gates import GELU, SiLU, Softplus

from graphexec.testing import check_gate


@pytest.mark.parametrize("cls, attrs", [(Softplus, {}), (Softplus, {"beta": 3.0}), (SiLU, {}),
                                        (GELU, {})])
@pytest.mark.parametrize("shape", [(), (5,), (4, 3)])
def test_gates_pass_the_kit(cls, attrs, shape):
    assert check_gate(cls, shape, attrs=attrs, value_range=(-4.0, 4.0)) < 1e-6


@pytest.mark.parametrize("cls", [Softplus, SiLU, GELU])
def test_gates_pass_the_kit_at_zero_and_at_large_inputs(cls):
    x = np.array([-800.0, -30.0, -1e-9, 0.0, 1e-9, 30.0, 800.0])
    check_gate(cls, inputs=[x])


def test_known_values():
    from graphexec.gate import Ctx

    x = np.array([-1.0, 0.0, 1.0])
    np.testing.assert_allclose(Softplus().forward(Ctx(), x), np.log1p(np.exp(x)), rtol=1e-15)
    np.testing.assert_allclose(SiLU().forward(Ctx(), x), x / (1 + np.exp(-x)), rtol=1e-15)
    gelu_1 = 0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * 1.044715))
    np.testing.assert_allclose(GELU().forward(Ctx(), x), [-(1 - gelu_1), 0.0, gelu_1], rtol=1e-15)
    assert abs(gelu_1 - 0.8413447460685429) < 1e-3  # exact GELU(1) = Φ(1)


def test_softplus_beta_must_be_positive():
    with pytest.raises(AssertionError, match="Attrs model rejects"):
        check_gate(Softplus, (3,), attrs={"beta": 0.0})


def test_the_installed_distribution_passes_check_distribution():
    """Entry-point names match the gates, every class loads, every gate passes the kit."""
    from graphexec.testing import check_distribution

    report = check_distribution("graphexec-example-gates")
    assert report.ok and sorted(c.entry for c in report.checks) == ["gelu", "silu", "softplus"]
