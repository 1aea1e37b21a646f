"""The parts of the gate contract that stateful gates use: Spec, ctx.training, ctx.update."""

import numpy as np
import pytest

from graphexec.gate import Ctx, Spec


def test_spec_normalises_shape_and_dtype():
    s = Spec([None, np.int64(3)], "float32")
    assert s.shape == (None, 3) and type(s.shape[1]) is int
    assert s.dtype == np.dtype("float32") and s.rank == 2
    assert Spec().shape is None and Spec().dtype is None and Spec().rank is None


def test_spec_is_frozen():
    with pytest.raises(Exception):
        Spec((1,)).shape = (2,)  # type: ignore[misc]


def test_ctx_defaults_to_evaluation_mode_and_records_buffer_proposals():
    ctx = Ctx()
    assert ctx.training is False
    assert "updates" not in ctx.__dict__
    ctx.update(3, np.ones(2))
    ctx.update(4, np.zeros(2))
    ctx.update(3, np.full(2, 7.0))  # the last proposal for an input wins
    assert sorted(ctx.updates) == [3, 4]
    np.testing.assert_array_equal(ctx.updates[3], [7.0, 7.0])
