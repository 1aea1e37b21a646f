"""A ``.gx`` file mapped instead of read: the header is read and validated exactly as
:func:`graphexec.fileformat.read_file` does, and the tensors become read-only numpy views of an
``mmap`` of the file, so loading costs the header, not the tensor bytes. See ``docs/format.md``
("Loading by mapping") for what is and is not promised when the file changes while mapped.
"""

from __future__ import annotations

import mmap
import os

import numpy as np

from graphexec.errors import GraphFileError
from graphexec.fileformat.codec import (
    DEFAULT_LIMITS,
    Limits,
    _check_stored,
    _check_zero,
    _open_regular,
    read_index,
    section_tensors,
)
from graphexec.fileformat.schema import Header

__all__ = ["map_file"]


def map_file(path: str | os.PathLike[str],
             limits: Limits = DEFAULT_LIMITS) -> tuple[Header, list[np.ndarray]]:
    """Validate a file's header and return it with its tensors as read-only views of a map.

    The map is private to the returned arrays: it stays open while any of them (or a view of
    one) is alive and closes with the last. The checks on tensor bytes (zero padding, bool
    bytes 0 or 1) are made here, as the copying reader makes them; they touch the padding and
    the bool tensors only. On a big-endian machine the tensors are byte-swapped copies.

    Raises:
        GraphFileError: For every file the copying reader refuses, with the same message, and
            for a file whose size changed between validation and mapping.
    """
    with _open_regular(path) as f:
        st = os.fstat(f.fileno())
        size = st.st_size
        header, data_start = read_index(f, size, limits)
        header_end = f.tell()
        blocks = getattr(st, "st_blocks", None)
        _check_stored(None if blocks is None else blocks * 512, size, limits)
        mm = _map(f.fileno(), size)  # the map keeps its own handle: the file can close now
    _check_zero(mm[header_end:data_start], "after the header")
    section = np.frombuffer(mm, dtype=np.uint8, count=size - data_start, offset=data_start)
    return header, section_tensors(section, header)


def _map(fd: int, size: int) -> mmap.mmap:
    """A read-only map of the first ``size`` bytes, refusing a file that has changed size."""
    try:
        mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as e:  # ValueError: the file is now shorter than ``size``
        raise GraphFileError(f"cannot map the file: {e}; it may have changed while loading, "
                             "or this file system cannot map files: load it with mmap=False") from e
    now = os.fstat(fd).st_size
    if now != size:
        mm.close()
        raise GraphFileError(f"file changed size while loading: {size} bytes were validated, "
                             f"it now has {now}; load it again once it is written (a writer "
                             "should replace it atomically)")
    return mm
