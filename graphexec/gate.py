"""The gate contract: a small class with a local forward and backward.

A gate instance holds only its validated attributes (``self.attrs``); everything a run needs
to remember between forward and backward goes on ``ctx``, a fresh scratch object per node and run.
That keeps one loaded graph usable by many executors and threads at once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from graphexec.errors import GraphError

__all__ = ["Attrs", "Ctx", "Gate", "NoAttrs", "Spec", "describe_attrs", "input_names", "unbroadcast"]


class Attrs(BaseModel):
    """Base of every gate's attribute model: unknown keys are refused and a model is frozen.

    ``extra="forbid"`` makes a misspelled attribute (``kk=3.0``) an error instead of a silent
    fall-back to the default; ``frozen=True`` keeps a gate's attributes fixed during a run.
    Registry validation refuses an ``Attrs`` that allows extra keys.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoAttrs(Attrs):
    """Attribute model of a gate that takes no attributes."""


class Ctx:
    """Scratch space of one node for one run (the lecture's cache).

    ``needs_grad`` holds one bool per input: a gate may skip (and return ``None`` for) a gradient
    that nobody asked for. It is set by the executor before ``backward`` is called.
    """

    needs_grad: tuple[bool, ...]
    #: True in a training-mode forward (``ex.forward(..., training=True)``); gates such as
    #: dropout and batchnorm behave differently then. Evaluation mode is the default.
    training: bool = False

    @property
    def rng(self) -> np.random.Generator:
        """This node's random generator in a training-mode forward: a pure function of
        ``(seed, step, node)``, ``np.random.default_rng([seed, step, stable_hash(name)])``
        (see ``docs/architecture.md``), made on first use."""
        rng: np.random.Generator | None = self.__dict__.get("_rng")
        if rng is None:
            key = self.__dict__.get("rng_key")
            if key is None:
                raise GraphError("ctx.rng exists only in a training-mode forward: "
                                 "ex.forward(..., training=True, seed=S, step=K)")
            rng = self.__dict__["_rng"] = np.random.default_rng(list(key))
        return rng

    @rng.setter
    def rng(self, value: np.random.Generator) -> None:
        self.__dict__["_rng"] = value

    def update(self, i: int, value: np.ndarray) -> None:
        """Propose ``value`` as the new content of input ``i``, which must be a buffer.

        A gate never writes a buffer itself (not ``self``, not the input array): it proposes,
        and the executor applies every proposal only after the whole forward has succeeded,
        and only in training mode.
        """
        updates: dict[int, np.ndarray] | None = self.__dict__.get("updates")
        if updates is None:
            updates = self.__dict__["updates"] = {}
        updates[i] = value

    if TYPE_CHECKING:  # gates put whatever backward needs on ctx

        def __getattr__(self, name: str) -> Any: ...

        def __setattr__(self, name: str, value: Any) -> None: ...


class Gate:
    """Base class of every op.

    Subclasses set ``name`` and ``version``, optionally an ``Attrs`` pydantic model, and define
    ``forward(self, ctx, *inputs) -> ndarray`` and ``backward(self, ctx, dout) -> tuple``
    returning one gradient per input, each shaped like that input (or ``None`` for an input
    that takes no gradient, such as integer labels).
    """

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    Attrs: ClassVar[type[BaseModel]] = NoAttrs
    #: The one explanation of ``fresh_grads`` (everything else refers here): True if
    #: ``backward`` always returns new, writeable arrays that the gate keeps no reference to,
    #: and never one array for two inputs; the executor may then add other gradients into them
    #: in place at fan-out instead of making a new sum. Leave it False if backward can return
    #: ``dout`` itself, a view of it, an input, or anything kept on ``ctx`` or ``self`` (add,
    #: sub, sum, mean and reshape do). ``graphexec.testing.check_gate`` verifies the claim.
    fresh_grads: ClassVar[bool] = False
    #: Optional, for plugin authors: write this gate as standard ONNX ops instead of a
    #: custom-domain node (``docs/plugins.md``). A staticmethod ``onnx_export(em, attrs, inputs,
    #: out, dtype)``: ``em.node(op, inputs, out=None, **onnx_attrs)`` appends an ONNX node and
    #: returns its output's name, ``em.const(value, dtype, hint)`` adds a constant and returns
    #: its name, ``em.opset`` is the opset written; the last node must compute ``out``.
    onnx_export: ClassVar[Callable[..., None] | None] = None

    __slots__ = ("attrs",)
    attrs: Any  # an instance of this gate's own ``Attrs`` model

    def __init__(self, attrs: BaseModel | None = None) -> None:
        self.attrs = attrs if attrs is not None else self.Attrs()

    if TYPE_CHECKING:  # each gate fixes its own arity: forward(self, ctx, x, y) and so on
        forward: Callable[..., np.ndarray]
        backward: Callable[..., tuple[Any, ...]]
    else:

        def forward(self, ctx, *inputs):
            raise NotImplementedError

        def backward(self, ctx, dout):
            raise NotImplementedError

    def __repr__(self) -> str:
        return f"<gate {self.name!r} v{self.version} {self.attrs!r}>"


def input_names(cls: type[Gate]) -> list[str]:
    """The input names of ``cls.forward(self, ctx, *inputs)`` (``*xs`` for a variadic one).

    Raises ValueError or TypeError if ``forward`` has no inspectable signature.
    """
    params = list(inspect.signature(cls.forward).parameters.values())[2:]
    return [f"*{p.name}" if p.kind is p.VAR_POSITIONAL else p.name for p in params]


def _type_text(annotation: Any) -> str:
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return repr(annotation).replace("typing.", "")


def attr_fields(cls: type[Gate]) -> list[tuple[str, str, Any]]:
    """``(name, type, default)`` of each attribute of ``cls``, in declaration order."""
    return [(name, _type_text(f.annotation), f.get_default(call_default_factory=True))
            for name, f in cls.Attrs.model_fields.items()]


def describe_attrs(cls: type[Gate]) -> str:
    """One line for messages: ``"leaky_relu takes alpha: float = 0.01"``."""
    fields = attr_fields(cls)
    if not fields:
        return f"{cls.name} takes no attributes"
    return f"{cls.name} takes " + ", ".join(f"{n}: {t} = {d!r:.40}" for n, t, d in fields)


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` back down to ``shape`` after numpy broadcasting.

    Broadcasting copies a value along new or size-1 axes; the gradient of a copy is the sum
    of the gradients of its copies (the lecture's "gradient adder" pattern).
    """
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    ones = tuple(lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
    if lead > 0 and not ones and shape:  # only new leading axes (a bias, say): the same sum
        return grad.sum(axis=tuple(range(lead)))  # as with keepdims, minus the reshape
    axes = tuple(range(lead)) + ones
    out = grad.sum(axis=axes, keepdims=True) if axes else grad
    return out.reshape(shape)


@dataclass(frozen=True)
class Spec:
    """What is known about a value before running: its shape and dtype.

    ``shape`` None: the rank is unknown; a None dimension: any size (the batch, say).
    ``dtype`` None: unknown. A gate's optional ``infer(self, *specs) -> Spec`` maps its inputs'
    specs to its output's; a gate without one gives ``Spec()`` (nothing known).
    """

    shape: tuple[int | None, ...] | None = None
    dtype: np.dtype[Any] | None = None

    def __post_init__(self) -> None:
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(None if d is None else int(d) for d in self.shape))
        if self.dtype is not None:
            object.__setattr__(self, "dtype", np.dtype(self.dtype))

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)
