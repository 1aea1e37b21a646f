"""Learning-rate schedules: the learning rate to use in each epoch.

``Schedule.to_config()`` is a plain dict (with a ``"name"`` key) that a checkpoint stores and
:func:`make_schedule` turns back into an equal schedule.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from graphexec.training.checks import Shrink, check_kwargs, checked, count
from graphexec.training.optim import OptimError

__all__ = ["SCHEDULES", "ExponentialDecay", "Schedule", "StepDecay", "make_schedule"]


class Schedule:
    """A learning-rate schedule: the learning rate to use in a given epoch.

    Epochs count from 0, and every schedule gives ``lr_at(base_lr, 0) == base_lr``.
    ``to_config()`` returns a plain dict (with a ``"name"`` key) that ``from_config``
    turns back into an equal schedule.
    """

    name: ClassVar[str] = ""

    def lr_at(self, base_lr: float, epoch: int) -> float:
        raise NotImplementedError

    def to_config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Schedule:
        """Rebuild a schedule of this class from ``to_config()`` output.

        Raises:
            OptimError: If the config names another schedule or has wrong keys or values.
        """
        args = {k: v for k, v in config.items() if k != "name"}
        if config.get("name", cls.name) != cls.name:
            raise OptimError(f"config is for schedule {config['name']!r}, not {cls.name!r}")
        check_kwargs(f"schedule {cls.name!r}", inspect.signature(cls), args, OptimError)
        return cls(**args)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def _check_epoch(epoch: int) -> None:
    count("epoch", epoch, 0, OptimError)


class StepDecay(Schedule):
    """Multiply the learning rate by ``gamma`` every ``every`` epochs.

    ``lr = base_lr * gamma ** (epoch // every)``
    """

    name = "step"

    def __init__(self, every: int, gamma: float) -> None:
        self.every = count("every", every, 1, OptimError)
        self.gamma = checked("gamma", gamma, Shrink, OptimError)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        _check_epoch(epoch)
        return float(base_lr) * self.gamma ** (int(epoch) // self.every)

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, "every": self.every, "gamma": self.gamma}


class ExponentialDecay(Schedule):
    """Multiply the learning rate by ``gamma`` every epoch.

    ``lr = base_lr * gamma ** epoch``
    """

    name = "exponential"

    def __init__(self, gamma: float) -> None:
        self.gamma = checked("gamma", gamma, Shrink, OptimError)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        _check_epoch(epoch)
        return float(base_lr) * self.gamma ** int(epoch)

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, "gamma": self.gamma}


SCHEDULES: dict[str, type[Schedule]] = {cls.name: cls for cls in (StepDecay, ExponentialDecay)}


def make_schedule(config: dict[str, Any]) -> Schedule:
    """Rebuild any schedule from its ``to_config()`` dict, dispatching on ``config["name"]``.

    Raises:
        OptimError: If the name is missing or unknown, or the config is invalid.
    """
    name = config.get("name")
    if name not in SCHEDULES:
        raise OptimError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name].from_config(config)
