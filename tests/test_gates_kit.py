"""The plugin author's conformance kit (``graphexec.testing.check_gate``) on the new gates:
no writes into inputs, no state on the gate, determinism, needs_grad, float32, attribute
round trip, numerical gradients (evaluation mode; training mode is in test_gates_norm.py)."""

from __future__ import annotations

import pytest

from graphexec.gates.conv import Conv2d
from graphexec.gates.layout import Clip, Concat, Flatten, Pad, Transpose
from graphexec.gates.norm import Dropout, LayerNorm
from graphexec.gates.pool import AvgPool2d, GlobalAvgPool, MaxPool2d
from graphexec.gates.softmax import LogSoftmax, Softmax
from graphexec.testing import check_gate

CASES = [  # (class, input shapes, attrs)
    (Conv2d, [(2, 4, 7, 6), (4, 2, 3, 3), (4,)], {"stride": 2, "padding": 1, "groups": 2}),
    (Conv2d, [(1, 3, 5, 5), (3, 1, 3, 3)], {"groups": 3, "dilation": 2, "padding": 2}),
    (MaxPool2d, [(2, 3, 7, 5)], {"kernel": 3, "stride": 2, "padding": 1}),
    (AvgPool2d, [(2, 3, 6, 5)], {"kernel": 2, "padding": 1, "count_include_pad": False}),
    (GlobalAvgPool, [(2, 3, 4, 5)], {}),
    (LayerNorm, [(3, 4, 5), (4, 5), (4, 5)], {"normalized_ndim": 2}),
    (Dropout, [(3, 4)], {"p": 0.5}),
    (Flatten, [(2, 3, 4)], {"axis": 2}),
    (Transpose, [(2, 3, 4)], {"perm": [1, 2, 0]}),
    (Concat, [(2, 3), (2, 1), (2, 2)], {"axis": 1}),
    (Pad, [(2, 3)], {"pads": [[1, 2], [0, 1]], "value": 0.5}),
    (Softmax, [(3, 5)], {"axis": 0}),
    (LogSoftmax, [(3, 5)], {}),
    (Clip, [(4, 5)], {"min": -0.5, "max": 0.5}),
]


@pytest.mark.parametrize(("cls", "shapes", "attrs"), CASES,
                         ids=[f"{c.name}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_new_gates_pass_the_conformance_kit(cls, shapes, attrs):
    err = check_gate(cls, *shapes, attrs=attrs)
    assert err < 1e-5
