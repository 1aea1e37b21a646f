"""Old import path of :mod:`graphexec.training.data` (kept working; new code imports
from :mod:`graphexec.training`)."""

from __future__ import annotations

from graphexec.training.data import *  # noqa: F403
from graphexec.training.data import __all__ as _data_all

__all__ = list(_data_all)
