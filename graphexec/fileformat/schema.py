"""Strict pydantic models of a ``.gx`` header (format versions 1 and 2).

Every model forbids unknown fields, takes no type coercion (``strict``) and is frozen.
``docs/format.schema.json`` is generated from :class:`Header` and tested to be current.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from graphexec.dtypes import DType, DTypeV1

__all__ = [
    "HEADERS",
    "Header",
    "HeaderV2",
    "InputSpec",
    "InputSpecV2",
    "NodeSpec",
    "OpSpec",
    "OutputSpec",
    "TensorEntry",
    "TensorEntryV2",
    "TrainingSection",
    "TrainingSectionV2",
    "version_of",
    "clean_text",
]

MAX_RANK = 32
MAX_DIM = 2**62
#: The deepest a valid header nests maps and lists, the header map included: header → nodes →
#: node → attrs → a list attribute → a list in it. ``tests/test_fileformat.py`` derives it
#: from the JSON schema; the reader skips its walk of the bytes only for limits deeper than it.
MAX_NESTING = 6

#: Names of values, ops, attributes: no path separators, spaces, control characters or markup.
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,127}$")]
#: Distribution names and versions as PyPI spells them.
DistText = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.+!<>\-]{0,128}$")]
#: Free text (metadata values, string attributes): printable, bounded.
#: Tab and newline are allowed; C0 controls, DEL and the C1 controls (U+0080-U+009F, which
#: some terminals read as escape sequences: U+009B is CSI) are not.
#: This is the one definition of allowed text: the ONNX importer cleans with :func:`clean_text`.
FORBIDDEN_TEXT = "\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f"
MAX_TEXT = 65536
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT, pattern=f"^[^{FORBIDDEN_TEXT}]*$")]
_FORBIDDEN = re.compile(f"[{FORBIDDEN_TEXT}]")


def clean_text(text: str) -> str:
    """``text`` made acceptable as :data:`Text`: forbidden characters become spaces, cut to
    :data:`MAX_TEXT` characters."""
    return _FORBIDDEN.sub(" ", text)[:MAX_TEXT]
Dim = Annotated[int, Field(ge=0, le=MAX_DIM)]
Scalar = Union[bool, int, float, Text, None]
#: A list that stops validating at its first bad item: a hostile header of a million bad items
#: must cost one error, not a million (pydantic collects every error by default).
FailFast = Field(fail_fast=True)
ScalarList = Annotated[list[Scalar], FailFast]
#: Attribute values: scalars, lists of scalars, or lists of lists of scalars (depth is bounded).
AttrValue = Union[Scalar, ScalarList, Annotated[list[ScalarList], FailFast]]


def _dict_fail_fast(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Validate a map entry by entry and stop at the first bad one (dicts have no fail_fast)."""
    if isinstance(value, dict) and len(value) > 1:
        for k, v in value.items():
            handler({k: v})
    return handler(value)


FailFastDict = WrapValidator(_dict_fail_fast)
Attrs = Annotated[dict[Name, AttrValue], FailFastDict]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class InputSpec(_Strict):
    """A graph input: ``shape`` None means any shape; a None dimension means any size."""

    name: Name
    dtype: DTypeV1
    shape: Optional[Annotated[list[Optional[Dim]], Field(max_length=MAX_RANK), FailFast]]


class TensorEntry(_Strict):
    """Where one tensor's bytes lie, relative to the start of the tensor section."""

    name: Name
    dtype: DTypeV1
    shape: Annotated[list[Dim], Field(max_length=MAX_RANK), FailFast]
    offset: Dim
    nbytes: Dim


class NodeSpec(_Strict):
    """One gate application: ``op`` at ``version`` over named ``inputs`` with ``attrs``."""

    name: Name
    op: Name
    version: Annotated[int, Field(ge=1, le=2**31)]
    inputs: Annotated[list[Name], Field(max_length=4096), FailFast]
    attrs: Attrs


class OutputSpec(_Strict):
    """A graph output ``name`` showing the value named ``value``."""

    name: Name
    value: Name


class OpSpec(_Strict):
    """An op the graph needs, with the distribution and version that provided it when saved."""

    op: Name
    version: Annotated[int, Field(ge=1, le=2**31)]
    dist: DistText
    dist_version: DistText


class TrainingSection(_Strict):
    """Training spec (how to train) and state (where a run stopped), for checkpoints."""

    spec: Attrs
    state: Attrs
    tensors: Annotated[list[TensorEntry], FailFast]


class Header(_Strict):
    """The msgpack header of a version-1 ``.gx`` file. Tensors of ``params`` then of
    ``training`` lie end to end, in that order, in the tensor section."""

    name: Name
    inputs: Annotated[list[InputSpec], FailFast]
    params: Annotated[list[TensorEntry], FailFast]
    nodes: Annotated[list[NodeSpec], FailFast]
    outputs: Annotated[list[OutputSpec], FailFast]
    ops: Annotated[list[OpSpec], FailFast]
    metadata: Annotated[dict[Name, Text], FailFastDict]
    training: Optional[TrainingSection] = None


# Version 2 widens the dtype of every input and tensor entry to the whole table (float16, int8,
# ..., uint64 join). The fields are redeclared with the wider type, hence the ignores.
class InputSpecV2(InputSpec):
    """A version-2 graph input: any dtype of the table."""

    dtype: DType  # type: ignore[assignment]


class TensorEntryV2(TensorEntry):
    """A version-2 tensor entry: any dtype of the table."""

    dtype: DType  # type: ignore[assignment]


class TrainingSectionV2(TrainingSection):
    """A version-2 training section: its tensors may have any dtype of the table."""

    tensors: Annotated[list[TensorEntryV2], FailFast]  # type: ignore[assignment]


class HeaderV2(Header):
    """The header of a version-2 file: version 1's fields plus ``buffers`` (named non-trainable
    tensors, laid out after the parameters and before the training tensors) and ``frozen``
    (the names of parameters that training leaves alone), and the dtypes version 1 lacks. A
    version-2 file MUST use at least one of them: a graph that needs none is written as
    version 1."""

    inputs: Annotated[list[InputSpecV2], FailFast]  # type: ignore[assignment]
    params: Annotated[list[TensorEntryV2], FailFast]  # type: ignore[assignment]
    training: Optional[TrainingSectionV2] = None
    buffers: Annotated[list[TensorEntryV2], FailFast]
    frozen: Annotated[list[Name], FailFast]


#: The one place that maps a format version to its header model.
HEADERS: dict[int, type[Header]] = {1: Header, 2: HeaderV2}


def version_of(header: Header) -> int:
    """The format version whose model ``header`` is (the oldest that can hold it)."""
    return 2 if isinstance(header, HeaderV2) else 1
