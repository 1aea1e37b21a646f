"""Old import path of :mod:`graphexec.training.optim` and ``.schedules`` (kept working;
new code imports from :mod:`graphexec.training`)."""

from __future__ import annotations

from graphexec.training.optim import *  # noqa: F403
from graphexec.training.optim import __all__ as _optim_all
from graphexec.training.schedules import *  # noqa: F403
from graphexec.training.schedules import __all__ as _schedules_all

__all__ = [*_optim_all, *_schedules_all]
