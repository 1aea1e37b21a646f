"""First-order optimisers and learning-rate schedules (CS231n ``optim.py`` style).

The math lives in small **update rules**, one function each::

    rule(w, dw, state, *, hyperparameters...) -> None

A rule changes the parameter ``w`` **in place** (training updates every parameter on every
step, so it avoids allocating a new array for it) and keeps what it remembers between steps
(velocity, gradient caches, step counter) as ndarrays in the dict ``state``, created on the
first step with ``np.zeros_like(w)`` and then updated in place as well.

Hyperparameters are passed as Python floats. Under numpy's NEP 50 promotion rules a Python
float does not widen an array, so float32 parameters (and their state) stay float32.

The classes :class:`SGD`, :class:`RMSProp` and :class:`Adam` are thin wrappers: they check
their hyperparameters once, keep one state dict per parameter name and call the rule.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import numpy as np

from graphexec.errors import OptimError

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "SGD",
    "Adam",
    "ExponentialDecay",
    "OptimError",
    "Optimizer",
    "RMSProp",
    "Schedule",
    "StepDecay",
    "adam_step",
    "make_optimizer",
    "make_schedule",
    "momentum_step",
    "nesterov_step",
    "rmsprop_step",
    "sgd_step",
]

State = dict[str, np.ndarray]


# --------------------------------------------------------------------------- update rules


def _zeros_like_state(state: State, key: str, w: np.ndarray) -> np.ndarray:
    """Return ``state[key]``, first creating it as zeros shaped and typed like ``w``."""
    if key not in state:
        state[key] = np.zeros_like(w)
    return state[key]


def sgd_step(w: np.ndarray, dw: np.ndarray, state: State, *, lr: float) -> None:
    """Vanilla gradient descent: step against the gradient.

    ``w -= lr * dw``

    Args:
        w: Parameter, any shape; updated in place.
        dw: Gradient of the loss with respect to ``w``, same shape.
        state: Unused (plain SGD remembers nothing); kept so every rule looks the same.
        lr: Learning rate.
    """
    w -= lr * dw


def momentum_step(w: np.ndarray, dw: np.ndarray, state: State, *, lr: float, mu: float) -> None:
    """SGD with momentum: the gradient changes a velocity, the velocity changes ``w``.

    ``v = mu * v - lr * dw``;  ``w += v``  (``v`` starts at zero).

    Args:
        w: Parameter, any shape; updated in place.
        dw: Gradient, same shape as ``w``.
        state: Holds ``"velocity"`` (shape of ``w``); created and updated in place.
        lr: Learning rate.
        mu: Momentum coefficient ("friction"), in [0, 1).
    """
    v = _zeros_like_state(state, "velocity", w)
    v *= mu
    v -= lr * dw
    w += v


def nesterov_step(w: np.ndarray, dw: np.ndarray, state: State, *, lr: float, mu: float) -> None:
    """Nesterov momentum, in the form of the CS231n notes (gradient taken at ``w`` itself).

    ``v_prev = v``;  ``v = mu * v - lr * dw``;  ``w += -mu * v_prev + (1 + mu) * v``

    Args:
        w: Parameter, any shape; updated in place.
        dw: Gradient, same shape as ``w``.
        state: Holds ``"velocity"`` (shape of ``w``); created and updated in place.
        lr: Learning rate.
        mu: Momentum coefficient, in [0, 1).
    """
    v = _zeros_like_state(state, "velocity", w)
    v_prev = v.copy()
    v *= mu
    v -= lr * dw
    w += -mu * v_prev + (1 + mu) * v


def rmsprop_step(
    w: np.ndarray, dw: np.ndarray, state: State, *, lr: float, decay: float, eps: float
) -> None:
    """RMSProp: divide the step by a running root-mean-square of recent gradients.

    ``cache = decay * cache + (1 - decay) * dw**2``;  ``w -= lr * dw / (sqrt(cache) + eps)``

    Args:
        w: Parameter, any shape; updated in place.
        dw: Gradient, same shape as ``w``.
        state: Holds ``"cache"`` (shape of ``w``); created and updated in place.
        lr: Learning rate.
        decay: How much of the old cache survives each step, in [0, 1).
        eps: Small positive number that keeps the division finite.
    """
    cache = _zeros_like_state(state, "cache", w)
    cache *= decay
    cache += (1 - decay) * dw**2
    w -= lr * dw / (np.sqrt(cache) + eps)


def adam_step(
    w: np.ndarray,
    dw: np.ndarray,
    state: State,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    """Adam: momentum on the gradient plus RMSProp scaling, both bias-corrected.

    ::

        t = t + 1
        m = beta1 * m + (1 - beta1) * dw          # first moment (mean) of the gradient
        v = beta2 * v + (1 - beta2) * dw**2       # second moment (uncentred variance)
        m_hat = m / (1 - beta1**t)                # undo the bias towards the zero start
        v_hat = v / (1 - beta2**t)
        w -= lr * m_hat / (sqrt(v_hat) + eps)

    Args:
        w: Parameter, any shape; updated in place.
        dw: Gradient, same shape as ``w``.
        state: Holds ``"m"`` and ``"v"`` (shape of ``w``) and ``"t"`` (0-d int64 step count);
            created and updated in place.
        lr: Learning rate.
        beta1: Decay of the first moment, in [0, 1).
        beta2: Decay of the second moment, in [0, 1).
        eps: Small positive number that keeps the division finite.
    """
    m = _zeros_like_state(state, "m", w)
    v = _zeros_like_state(state, "v", w)
    if "t" not in state:
        state["t"] = np.zeros((), dtype=np.int64)
    state["t"] += 1
    t = int(state["t"])
    m *= beta1
    m += (1 - beta1) * dw
    v *= beta2
    v += (1 - beta2) * dw**2
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    # w -= lr * m_hat / (sqrt(v_hat) + eps): the same operations in the same order, in place,
    # so two parameter-sized temporaries instead of six (bit for bit the same result).
    np.sqrt(v_hat, out=v_hat)
    v_hat += eps
    m_hat *= lr
    m_hat /= v_hat
    w -= m_hat


# --------------------------------------------------------------------------- checks


def _check_float(
    name: str, value: Any, low: float, high: float, *, low_open: bool, high_open: bool
) -> float:
    """Return ``value`` as a Python float if it lies in the interval, else raise OptimError.

    The interval is written as in maths: ``low_open`` excludes ``low``, ``high_open`` excludes
    ``high``; ``high = math.inf`` means no upper bound (infinity itself is always refused).
    """
    left, right = ("(" if low_open else "["), (")" if high_open else "]")
    valid = f"{left}{low:g}, {high:g}{right}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise OptimError(f"{name} must be a number in {valid}, got {value!r}")
    x = float(value)
    above_low = x > low if low_open else x >= low
    below_high = x < high if high_open else x <= high
    if not (math.isfinite(x) and above_low and below_high):
        raise OptimError(f"{name}={value!r} is out of range: must be in {valid}")
    return x


def _check_lr(value: Any) -> float:
    """A learning rate is a finite number > 0."""
    return _check_float("lr", value, 0.0, math.inf, low_open=True, high_open=True)


def _check_unit(name: str, value: Any) -> float:
    """A decay or momentum coefficient lies in [0, 1)."""
    return _check_float(name, value, 0.0, 1.0, low_open=False, high_open=True)


def _check_eps(value: Any) -> float:
    """``eps`` is a finite number > 0."""
    return _check_float("eps", value, 0.0, math.inf, low_open=True, high_open=True)


# --------------------------------------------------------------------------- optimisers


class Optimizer:
    """Base class: applies an update rule to every parameter of a model.

    Subclasses set ``name`` (the config name) and ``state_names`` (the keys their rule keeps
    in each parameter's state dict), store their hyperparameters in ``__init__`` and define
    ``hyperparams()`` and ``_update(w, dw, state)``.

    ``lr`` is a mutable, checked attribute: a trainer sets it every epoch from a schedule.
    """

    name: ClassVar[str] = ""
    state_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, lr: float) -> None:
        self.lr = lr  # goes through the checking setter below
        self.state: dict[str, State] = {}  # parameter name -> that parameter's rule state

    @property
    def lr(self) -> float:
        """The current learning rate (a finite float > 0)."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _check_lr(value)

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
        for pname, w in params.items():
            dw = self._gradient_for(pname, w, grads)
            state = self.state.setdefault(pname, {})
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
        """Refuse loaded state whose arrays do not match the parameter's shape and dtype."""
        for key, arr in state.items():
            if key == "t":
                continue
            if arr.shape != w.shape or arr.dtype != w.dtype:
                raise OptimError(
                    f"state '{key}:{pname}' is {arr.dtype} {arr.shape}, but the parameter "
                    f"is {w.dtype} {w.shape}"
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
        """Build an optimiser from its name and hyperparameters (see :func:`make_optimizer`)."""
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

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(lr)
        self.momentum = _check_unit("momentum", momentum)
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

    def __init__(self, lr: float, decay: float = 0.99, eps: float = 1e-8) -> None:
        super().__init__(lr)
        self.decay = _check_unit("decay", decay)
        self.eps = _check_eps(eps)

    def hyperparams(self) -> dict[str, float | bool]:
        return {"lr": self.lr, "decay": self.decay, "eps": self.eps}

    def _update(self, w: np.ndarray, dw: np.ndarray, state: State) -> None:
        rmsprop_step(w, dw, state, lr=self.lr, decay=self.decay, eps=self.eps)


class Adam(Optimizer):
    """Adam (see :func:`adam_step`)."""

    name = "adam"
    state_names = ("m", "v", "t")

    def __init__(
        self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ) -> None:
        super().__init__(lr)
        self.beta1 = _check_unit("beta1", beta1)
        self.beta2 = _check_unit("beta2", beta2)
        self.eps = _check_eps(eps)

    def hyperparams(self) -> dict[str, float | bool]:
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def _update(self, w: np.ndarray, dw: np.ndarray, state: State) -> None:
        adam_step(w, dw, state, lr=self.lr, beta1=self.beta1, beta2=self.beta2, eps=self.eps)


OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in (SGD, RMSProp, Adam)}


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
    _check_kwargs(f"optimiser {name!r}", inspect.signature(cls), hyperparams)
    return cls(**hyperparams)


def _check_kwargs(what: str, signature: inspect.Signature, kwargs: dict[str, Any]) -> None:
    """Refuse keyword arguments the signature does not take, or required ones left out."""
    params = signature.parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise OptimError(f"{what} has no hyperparameter(s) {unknown}; it takes {list(params)}")
    missing = [p for p, spec in params.items() if spec.default is spec.empty and p not in kwargs]
    if missing:
        raise OptimError(f"{what} needs hyperparameter(s) {missing}")


# --------------------------------------------------------------------------- schedules


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
        _check_kwargs(f"schedule {cls.name!r}", inspect.signature(cls), args)
        return cls(**args)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def _check_epoch(epoch: int) -> None:
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise OptimError(f"epoch must be an integer >= 0, got {epoch!r}")


def _check_gamma(gamma: Any) -> float:
    """A decay factor lies in (0, 1]; 1 means no decay."""
    return _check_float("gamma", gamma, 0.0, 1.0, low_open=True, high_open=False)


class StepDecay(Schedule):
    """Multiply the learning rate by ``gamma`` every ``every`` epochs.

    ``lr = base_lr * gamma ** (epoch // every)``
    """

    name = "step"

    def __init__(self, every: int, gamma: float) -> None:
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise OptimError(f"every={every!r} is out of range: must be an integer >= 1")
        self.every = int(every)
        self.gamma = _check_gamma(gamma)

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
        self.gamma = _check_gamma(gamma)

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
