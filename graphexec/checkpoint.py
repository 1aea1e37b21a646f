"""Old import path of :mod:`graphexec.training.checkpoint` (kept working; new code imports
from :mod:`graphexec.training`)."""

from __future__ import annotations

from graphexec.training.checkpoint import *  # noqa: F403
from graphexec.training.checkpoint import __all__ as _checkpoint_all

__all__ = list(_checkpoint_all)
