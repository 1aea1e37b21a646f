"""The ``.gx`` file format, version 1: bytes ⇄ validated header model + raw tensors.

This stage never sees gates, executors or networkx. ``docs/format.md`` is its normative spec.
"""

from graphexec.fileformat.codec import (
    FORMAT_VERSION,
    MAGIC,
    Limits,
    decode,
    encode,
    read_file,
    read_header,
    tensor_entries,
    write_file,
)
from graphexec.fileformat.schema import Header

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "Header",
    "Limits",
    "decode",
    "encode",
    "read_file",
    "read_header",
    "tensor_entries",
    "write_file",
]
