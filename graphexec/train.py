"""Old import path of :mod:`graphexec.training.train` (kept working; new code imports
from :mod:`graphexec.training`)."""

from __future__ import annotations

from graphexec.training.train import *  # noqa: F403
from graphexec.training.train import __all__ as _train_all

__all__ = list(_train_all)
