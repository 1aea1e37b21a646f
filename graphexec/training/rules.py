"""Update rules, one pure function each: ``rule(w, dw, state, *, hyperparameters...) -> None``.

A rule changes ``w`` in place and keeps what it remembers between steps as ndarrays in ``state``
(see :mod:`graphexec.training.optim`, whose classes call them).

A float16 parameter keeps its state, and gets its update computed, in float32 (the step is
rounded to float16 only when it is written into ``w``): in float16, eps = 1e-8 is 0 and
dw² overflows for |dw| > 256, so Adam and RMSProp would divide 0 by 0 or ∞ by ∞ (NaN) — what
mixed-precision training (PyTorch's AMP, optax's ``mu_dtype``) avoids the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["State", "adam_step", "momentum_step", "nesterov_step", "rmsprop_step", "sgd_step",
           "state_dtype"]

State = dict[str, np.ndarray]


def state_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype of the state kept for a parameter of ``dtype``: float32 for float16 (see the
    module docstring), else the parameter's own."""
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)


def _zeros_like_state(state: State, key: str, w: np.ndarray) -> np.ndarray:
    """Return ``state[key]``, first creating it as zeros shaped like ``w``, of
    ``state_dtype(w.dtype)`` (float16 state saved before is widened to float32)."""
    arr, want = state.get(key), state_dtype(w.dtype)
    if arr is None:
        state[key] = np.zeros(w.shape, dtype=want)
    elif arr.dtype != want:
        state[key] = arr.astype(want)
    return state[key]


def _wide(w: np.ndarray, dw: np.ndarray) -> np.ndarray:
    """``dw`` in the state dtype of ``w`` (float32 for a float16 parameter; else ``dw``)."""
    want = state_dtype(w.dtype)
    return dw if dw.dtype == want else dw.astype(want)


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
    cache, dw = _zeros_like_state(state, "cache", w), _wide(w, dw)
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
    m, dw = _zeros_like_state(state, "m", w), _wide(w, dw)
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
