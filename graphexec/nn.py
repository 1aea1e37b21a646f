"""Old import path of :mod:`graphexec.training.nn` (kept working; new code imports
from :mod:`graphexec.training`)."""

from __future__ import annotations

from graphexec.training.convnet import conv_block, convnet
from graphexec.training.nn import *  # noqa: F403
from graphexec.training.nn import __all__ as _nn_all

__all__ = [*_nn_all, "conv_block", "convnet"]
