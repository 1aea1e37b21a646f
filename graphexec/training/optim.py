"""First-order optimisers (CS231n ``optim.py`` style); schedules are in :mod:`.schedules`.

The math lives in small **update rules**, one function each::

    rule(w, dw, state, *, hyperparameters...) -> None

A rule changes the parameter ``w`` **in place** (training updates every parameter on every
step, so it avoids allocating a new array for it) and keeps what it remembers between steps
(velocity, gradient caches, step counter) as ndarrays in the dict ``state``, created on the
first step with ``np.zeros_like(w)`` and then updated in place as well.

Hyperparameters are passed as Python floats. Under numpy's NEP 50 promotion rules a Python
float does not widen an array, so float32 parameters (and their state) stay float32.

The classes :class:`SGD`, :class:`RMSProp` and :class:`Adam` are thin wrappers: they check
their hyperparameters once, keep one state dict per parameter name and call the rule. A new
optimiser is its rule plus a subclass that sets ``name``, ``state_names`` and ``default_lr``:
the subclass adds itself to :data:`OPTIMIZERS`, and ``graphexec train --optimizer NAME`` offers it.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np

from graphexec.errors import OptimError
from graphexec.training.checks import Positive, Unit, check_kwargs, checked
from graphexec.training.rules import (
    State,
    adam_step,
    momentum_step,
    nesterov_step,
    rmsprop_step,
    sgd_step,
    state_dtype,
)

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adam",
    "OptimError",
    "Optimizer",
    "RMSProp",
    "adam_step",
    "make_optimizer",
    "momentum_step",
    "nesterov_step",
    "rmsprop_step",
    "sgd_step",
]


#: Config name -> optimiser class; every :class:`Optimizer` subclass with a ``name`` adds itself.
OPTIMIZERS: dict[str, type[Optimizer]] = {}


# --------------------------------------------------------------------------- optimisers


class Optimizer:
    """Base class: applies an update rule to every parameter of a model.

    Subclasses set ``name`` (the config name), ``state_names`` (the keys their rule keeps
    in each parameter's state dict) and ``default_lr`` (the learning rate ``graphexec train``
    uses when nothing else sets one), store their hyperparameters in ``__init__`` and define
    ``hyperparams()`` and ``_update(w, dw, state)``.

    ``lr`` is a mutable, checked attribute: a trainer sets it every epoch from a schedule.
    """

    name: ClassVar[str] = ""
    state_names: ClassVar[tuple[str, ...]] = ()
    default_lr: ClassVar[float] = 1e-3

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass with a ``name`` is an optimiser of its own: :data:`OPTIMIZERS` lists it."""
        super().__init_subclass__(**kwargs)
        if cls.name:
            OPTIMIZERS[cls.name] = cls

    def __init__(self, lr: float) -> None:
        self.lr = lr  # goes through the checking setter below
        self.state: dict[str, State] = {}  # parameter name -> that parameter's rule state

    @property
    def lr(self) -> float:
        """The current learning rate (a finite float > 0)."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = checked("lr", value, Positive, OptimError)

    # ---- the step

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """Update every parameter in place from its gradient.

        Args:
            params: Parameter name -> float ndarray (any shape); each array is changed in place.
            grads: Parameter name -> gradient of the loss, same shape as the parameter.
                Extra entries (gradients of non-parameters) are ignored.

        Raises:
            OptimError: If a parameter has no gradient, a gradient has the wrong shape, a
                parameter is not a floating-point ndarray, or loaded state does not fit.
        """
        states = self.state
        for pname, w in params.items():
            dw = grads.get(pname)
            # Fast path: what the executor hands out (float arrays shaped like their
            # parameter); anything else goes through the full check and its messages.
            if (type(dw) is not np.ndarray or type(w) is not np.ndarray
                    or w.dtype.kind != "f" or dw.shape != w.shape or not w.flags.writeable):
                dw = self._gradient_for(pname, w, grads)
            state = states.get(pname)
            if state is None:
                state = states[pname] = {}
            elif state:  # state loaded or made earlier: it must still fit the parameter
                self._check_state_fits(pname, w, state)
            self._update(w, dw, state)

    def _update(self, w: np.ndarray, dw: np.ndarray, state: State) -> None:
        raise NotImplementedError

    @staticmethod
    def _gradient_for(pname: str, w: np.ndarray, grads: dict[str, np.ndarray]) -> np.ndarray:
        """Return the gradient of parameter ``pname``, checked against ``w``."""
        if not isinstance(w, np.ndarray) or w.dtype.kind != "f":
            raise OptimError(
                f"parameter {pname!r} must be a float ndarray to be updated in "
                f"place, got {type(w).__name__} {getattr(w, 'dtype', '')}"
            )
        if not w.flags.writeable:
            raise OptimError(f"parameter {pname!r} must be writable to be updated in place, "
                             "but it is read-only (a view of a file loaded with mmap=True, say); "
                             f"step a copy (g.params[{pname!r}] = g.params[{pname!r}].copy()) or "
                             "train with gx.fit, which copies it before its first update")
        if pname not in grads:
            raise OptimError(f"no gradient for parameter {pname!r}")
        dw = np.asarray(grads[pname])
        if dw.shape != w.shape:
            raise OptimError(
                f"gradient of {pname!r} has shape {dw.shape}, parameter has shape {w.shape}"
            )
        return dw

    @staticmethod
    def _check_state_fits(pname: str, w: np.ndarray, state: State) -> None:
        """Refuse loaded state whose arrays do not match the parameter's shape and dtype (the
        state dtype: float32 for a float16 parameter, which also takes float16 state saved
        before, widened on use)."""
        want = state_dtype(w.dtype)
        for key, arr in state.items():
            if key == "t":
                continue
            if arr.shape != w.shape or arr.dtype not in (want, w.dtype):
                raise OptimError(
                    f"state '{key}:{pname}' is {arr.dtype} {arr.shape}, but the parameter "
                    f"is {w.dtype} {w.shape} (expected state {want} {w.shape})"
                )

    # ---- describing and saving

    def hyperparams(self) -> dict[str, float | bool]:
        """The current hyperparameters, as keyword arguments of the constructor."""
        raise NotImplementedError

    def state_arrays(self) -> dict[str, np.ndarray]:
        """All state as one flat dict of array copies, keys ``"<state>:<parameter>"``.

        For example ``{"m:W": ..., "v:W": ..., "t:W": ...}`` for Adam. Keys contain no
        ``/``, so they can be stored as array names in any file format.

        Raises:
            OptimError: If a parameter name contains ``/``.
        """
        flat: dict[str, np.ndarray] = {}
        for pname, state in self.state.items():
            if "/" in pname:
                raise OptimError(f"parameter name {pname!r} contains '/'; cannot save its state")
            for key, arr in state.items():
                flat[f"{key}:{pname}"] = arr.copy()
        return flat

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Replace all state by copies of arrays saved with :meth:`state_arrays`.

        Shapes are checked against the parameters on the next :meth:`step`.

        Raises:
            OptimError: If a key is not ``"<state>:<parameter>"`` with a state name this
                optimiser uses, or a step counter ``t`` is not a 0-d integer.
        """
        loaded: dict[str, State] = {}
        for flat_key, arr in arrays.items():
            key, sep, pname = flat_key.partition(":")
            if not sep or not pname or key not in self.state_names:
                raise OptimError(
                    f"state key {flat_key!r} is not '<state>:<parameter>' with <state> one "
                    f"of {list(self.state_names)} for optimiser {self.name!r}"
                )
            loaded.setdefault(pname, {})[key] = self._loaded_array(flat_key, key, arr)
        self.state = loaded

    @staticmethod
    def _loaded_array(flat_key: str, key: str, arr: np.ndarray) -> np.ndarray:
        """Copy one saved array; a step counter must be a 0-d integer and becomes int64."""
        arr = np.array(arr, copy=True)
        if key == "t":
            if arr.shape != () or arr.dtype.kind not in "iu":
                raise OptimError(
                    f"state {flat_key!r} must be a 0-d integer step count, "
                    f"got {arr.dtype} {arr.shape}"
                )
            return arr.astype(np.int64)
        return arr

    @classmethod
    def from_config(cls, name: str, hyperparams: dict[str, Any]) -> Optimizer:
        """Build an optimiser from its name and hyperparameters (see :func:`make_optimizer`).

        ``Optimizer.from_config`` builds any optimiser; a subclass's ``from_config`` builds
        that subclass only.

        Raises:
            OptimError: If ``name`` is not this class's (on a subclass), or as
                :func:`make_optimizer`.
        """
        if cls is not Optimizer and name != cls.name:
            raise OptimError(f"config is for optimiser {name!r}, not {cls.name!r}; use "
                             f"Optimizer.from_config to build any optimiser")
        return make_optimizer(name, **hyperparams)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparams().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum.

    ``momentum == 0`` uses :func:`sgd_step`; otherwise :func:`momentum_step`, or
    :func:`nesterov_step` if ``nesterov`` is true.
    """

    name = "sgd"
    state_names = ("velocity",)
    default_lr = 1e-2

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(lr)
        self.momentum = checked("momentum", momentum, Unit, OptimError)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise OptimError(f"nesterov must be True or False, got {nesterov!r}")
        if nesterov and self.momentum == 0.0:
            raise OptimError("nesterov=True needs momentum in (0, 1), got momentum=0")
        self.nesterov = bool(nesterov)

    def hyperparams(self) -> dict[str, float | bool]:
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov}

    def _update(self, w: np.ndarray, dw: np.ndarray, state: State) -> None:
        if self.momentum == 0.0:
            sgd_step(w, dw, state, lr=self.lr)
        elif self.nesterov:
            nesterov_step(w, dw, state, lr=self.lr, mu=self.momentum)
        else:
            momentum_step(w, dw, state, lr=self.lr, mu=self.momentum)


class RMSProp(Optimizer):
    """RMSProp (see :func:`rmsprop_step`)."""

    name = "rmsprop"
    state_names = ("cache",)
    default_lr = 1e-3

    def __init__(self, lr: float, decay: float = 0.99, eps: float = 1e-8) -> None:
        super().__init__(lr)
        self.decay = checked("decay", decay, Unit, OptimError)
        self.eps = checked("eps", eps, Positive, OptimError)

    def hyperparams(self) -> dict[str, float | bool]:
        return {"lr": self.lr, "decay": self.decay, "eps": self.eps}

    def _update(self, w: np.ndarray, dw: np.ndarray, state: State) -> None:
        rmsprop_step(w, dw, state, lr=self.lr, decay=self.decay, eps=self.eps)


class Adam(Optimizer):
    """Adam (see :func:`adam_step`)."""

    name = "adam"
    state_names = ("m", "v", "t")
    default_lr = 1e-3

    def __init__(
        self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ) -> None:
        super().__init__(lr)
        self.beta1 = checked("beta1", beta1, Unit, OptimError)
        self.beta2 = checked("beta2", beta2, Unit, OptimError)
        self.eps = checked("eps", eps, Positive, OptimError)

    def hyperparams(self) -> dict[str, float | bool]:
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def _update(self, w: np.ndarray, dw: np.ndarray, state: State) -> None:
        adam_step(w, dw, state, lr=self.lr, beta1=self.beta1, beta2=self.beta2, eps=self.eps)




def make_optimizer(name: str, **hyperparams: Any) -> Optimizer:
    """Build an optimiser by config name, e.g. ``make_optimizer("adam", lr=1e-3)``.

    Args:
        name: One of ``"sgd"``, ``"rmsprop"``, ``"adam"``.
        **hyperparams: Keyword arguments of that optimiser's constructor.

    Raises:
        OptimError: If the name is unknown, a hyperparameter is unknown or missing, or a
            value is out of range.
    """
    if name not in OPTIMIZERS:
        raise OptimError(f"unknown optimiser {name!r}; choose one of {sorted(OPTIMIZERS)}")
    cls = OPTIMIZERS[name]
    check_kwargs(f"optimiser {name!r}", inspect.signature(cls), hyperparams, OptimError)
    return cls(**hyperparams)
