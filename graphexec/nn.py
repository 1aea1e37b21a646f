"""Old import path of :mod:`graphexec.training.nn` (kept working; new code imports
from :mod:`graphexec.training`)."""

from __future__ import annotations

from graphexec.training.nn import *  # noqa: F403
from graphexec.training.nn import __all__ as _nn_all

__all__ = list(_nn_all)
