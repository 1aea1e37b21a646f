"""Bytes of a ``.gx`` file ⇄ (:class:`Header`, tensors). See ``docs/format.md``.

Layout: 24-byte preamble (magic, format version, flags, header length), msgpack header,
zero padding to a 64-byte boundary, then the tensor section: each tensor little-endian in C order
at a 64-byte aligned offset, zero padding between tensors, the section ending at end of file.
"""

from __future__ import annotations

import io
import math
import os
import stat
import struct
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import msgpack
import numpy as np
import pydantic

from graphexec.dtypes import DTYPE_SINCE, DTYPES
from graphexec.errors import GraphFileError, ScanError, first_problem
from graphexec.fileformat.scan import passes, scan
from graphexec.fileformat.schema import (
    HEADERS,
    MAX_NESTING,
    Header,
    HeaderV2,
    TensorEntry,
    version_of,
)
from graphexec.gcpause import collector_paused

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "Limits",
    "decode",
    "encode",
    "read_file",
    "read_header",
    "tensor_entries",
    "write_file",
]

MAGIC = b"\x89GXF\r\n\x1a\n"
FORMAT_VERSION = max(HEADERS)  # the newest version this reader knows
PREAMBLE = struct.Struct("<8sIIQ")  # magic, format version, flags (0), header length
ALIGN = 64
MAX_ARRAY_BYTES = 2**63 - 1  # numpy's limit: shape product (zeros as ones) times itemsize


#: No process holds a tensor past 2**48 bytes (256 TiB: more than the 128 TiB a process can address
#: on x86-64 and arm64), so a declared shape beyond it is absurd even when a dimension is 0.
MAX_TENSOR_BYTES = 2**48
#: What the header may cost beyond its bytes before the derived limits refuse it: the fixed part.
BASE_BUDGET = 64 << 20


@dataclass(frozen=True)
class Limits:
    """Bounds that keep loading a hostile file cheap. ``None`` (the default) means "derived from
    the size of the header that is actually present" (see :meth:`resolve`), so every file
    graphexec writes loads with the defaults, whatever its size; a number overrides it.

    ``max_header_items`` caps the number of msgpack objects in the header (every map, list,
    string and number counts one), ``max_containers`` the maps and lists among them,
    ``max_text_bytes`` the decoded size of its strings. See ``docs/security.md``.
    """

    max_file_bytes: int = 1 << 40  # 1 TiB
    max_header_bytes: int | None = None  # derived: the file's size
    max_str_len: int = 1 << 16
    max_array_len: int | None = None  # derived: max(2**20, header length)
    max_map_len: int = 1 << 16
    max_depth: int = 16
    max_header_items: int | None = None  # derived: the header's length
    max_containers: int | None = None  # derived: max(2**18, header length // 8)
    max_text_bytes: int | None = None  # derived: header length + 32 MiB
    allow_sparse: bool = False  # load a file with fewer bytes on disk than it declares

    def resolve(self, hlen: int) -> Limits:
        """Concrete limits for a header of ``hlen`` bytes: each ``None`` becomes its derived
        value. Every msgpack object takes at least one byte, so an item count of ``hlen`` (and
        a list of ``hlen`` items) is what the bytes present can hold; a graph graphexec writes
        has one map or list per 14 bytes or more (a node is a map, its inputs a list and its
        attrs a map in 40+ bytes), and ASCII strings of at most ``hlen`` bytes."""
        return Limits(
            max_file_bytes=self.max_file_bytes,
            max_header_bytes=self.max_header_bytes,
            max_str_len=self.max_str_len,
            max_array_len=_or(self.max_array_len, max(1 << 20, hlen)),
            max_map_len=self.max_map_len,
            max_depth=self.max_depth,
            max_header_items=_or(self.max_header_items, hlen),
            max_containers=_or(self.max_containers, max(1 << 18, hlen // 8)),
            max_text_bytes=_or(self.max_text_bytes, hlen + (BASE_BUDGET >> 1)),
            allow_sparse=self.allow_sparse,
        )


def _or(value: int | None, derived: int) -> int:
    return derived if value is None else value


DEFAULT_LIMITS = Limits()


def align(n: int) -> int:
    """The first multiple of 64 at or after ``n``."""
    return -(-n // ALIGN) * ALIGN


def tensor_entries(named: Sequence[tuple[str, np.ndarray]], start: int = 0,
                   entry: type[TensorEntry] = TensorEntry) -> list[TensorEntry]:
    """Lay tensors end to end at 64-byte aligned offsets, starting after ``start`` bytes
    (``entry``: the format version's entry model, :class:`TensorEntryV2` for version 2)."""
    out, pos = [], start
    for name, arr in named:
        pos = align(pos)
        out.append(entry(name=name, dtype=arr.dtype.name,  # type: ignore[arg-type]
                               shape=list(arr.shape),
                               offset=pos, nbytes=arr.nbytes))
        pos += arr.nbytes
    return out


# ---------------------------------------------------------------------------- encoding
def _canonical(obj: Any) -> Any:
    """Sort every dict by key so that equal headers give equal bytes."""
    if isinstance(obj, dict):
        return {k: _canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    return obj


def _header_bytes(header: Header) -> bytes:
    data = header.model_dump()
    if data["training"] is None:
        del data["training"]
    return msgpack.packb(_canonical(data), use_bin_type=True, use_single_float=False)


def _raw(arr: np.ndarray) -> memoryview:
    le = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    return memoryview(le.reshape(-1).view(np.uint8))  # type: ignore[arg-type]


def encode(header: Header, tensors: Sequence[np.ndarray]) -> Iterator[bytes | memoryview]:
    """The file's bytes in chunks (tensors are not copied on little-endian machines)."""
    hb = _header_bytes(header)
    start = align(PREAMBLE.size + len(hb))
    yield PREAMBLE.pack(MAGIC, version_of(header), 0, len(hb))
    yield hb
    yield bytes(start - PREAMBLE.size - len(hb))
    pos = 0
    for entry, arr in zip(_all_entries(header), tensors, strict=True):
        yield bytes(entry.offset - pos)
        yield _raw(arr)
        pos = entry.offset + entry.nbytes


def write_file(path: str | os.PathLike[str], header: Header, tensors: Sequence[np.ndarray]) -> None:
    """Write a graph file atomically (see :func:`graphexec.atomic.atomic_write`)."""
    from graphexec.atomic import atomic_write  # only for writing: reading stays lighter

    atomic_write(path, encode(header, tensors))


# ---------------------------------------------------------------------------- decoding
def _all_entries(header: Header) -> list[TensorEntry]:
    """Tensor entries in section order: parameters, buffers (version 2), training tensors."""
    buffers = header.buffers if isinstance(header, HeaderV2) else []
    return header.params + buffers + (header.training.tensors if header.training else [])


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise GraphFileError(f"file is truncated: {what} needs {n} bytes, found {len(data)}")
    return data


def _check_preamble(f: BinaryIO, size: int, limits: Limits) -> tuple[int, int]:
    """Size cap → magic → version → header length cap; returns (format version, header length)."""
    if size > limits.max_file_bytes:
        raise GraphFileError(f"file is {size} bytes, over the limit of {limits.max_file_bytes}")
    head = f.read(PREAMBLE.size)
    if head[:8] != MAGIC[: len(head[:8])] or not head:
        raise GraphFileError("not a graphexec file: wrong magic bytes (expected a .gx file)")
    if len(head) < PREAMBLE.size:
        raise GraphFileError(f"file is truncated: {size} bytes, shorter than the 24-byte preamble")
    _, version, flags, hlen = PREAMBLE.unpack(head)
    if version > FORMAT_VERSION:
        raise GraphFileError(
            f"file format version {version} is newer than this graphexec supports "
            f"(version {FORMAT_VERSION}); upgrade graphexec to read it"
        )
    if version < 1 or flags != 0:
        raise GraphFileError(f"invalid preamble: format version {version}, flags {flags:#x}")
    if limits.max_header_bytes is not None and hlen > limits.max_header_bytes:
        raise GraphFileError(f"header length {hlen} is over the limit of {limits.max_header_bytes}")
    if PREAMBLE.size + hlen > size:
        raise GraphFileError(f"file is truncated: header of {hlen} bytes runs past end of file")
    return int(version), int(hlen)


def _pairs_no_duplicates(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key in a map")
    return out


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed")


def _decode_header(raw: bytes, limits: Limits, version: int = 1) -> Header:
    with collector_paused():  # see graphexec.gcpause: a big header is many objects, no garbage
        return _decode(raw, limits.resolve(len(raw)), version)


def _decode(raw: bytes, limits: Limits, version: int) -> Header:
    assert limits.max_array_len is not None and limits.max_header_items is not None
    assert limits.max_containers is not None and limits.max_text_bytes is not None
    if passes(raw, max_str_len=limits.max_str_len, max_depth=limits.max_depth,
              max_items=limits.max_header_items, max_containers=limits.max_containers,
              max_text_bytes=limits.max_text_bytes, nesting=MAX_NESTING):
        try:  # the scan would accept what decodes and validates: skip its walk
            return _validated(_unpacked(raw, limits), version)
        except GraphFileError:
            pass  # the path below names the problem, exactly as without the shortcut
    try:  # structure first, so that decoding allocates nothing the scan has not counted
        scan(raw, max_str_len=limits.max_str_len, max_array_len=limits.max_array_len,
             max_map_len=limits.max_map_len, max_depth=limits.max_depth,
             max_items=limits.max_header_items, max_containers=limits.max_containers,
             max_text_bytes=limits.max_text_bytes)
    except ScanError as e:
        raise GraphFileError(f"header is not valid msgpack: {e}") from e
    return _validated(_unpacked(raw, limits), version)


def _unpacked(raw: bytes, limits: Limits) -> Any:
    try:
        return msgpack.unpackb(
            raw, raw=False, strict_map_key=True, use_list=True,
            object_pairs_hook=_pairs_no_duplicates, ext_hook=_no_ext,
            max_str_len=limits.max_str_len, max_bin_len=0, max_ext_len=0,
            max_array_len=limits.max_array_len, max_map_len=limits.max_map_len,
        )
    except Exception as e:  # msgpack raises several types; all mean "bad header"
        raise GraphFileError(f"header is not valid msgpack: {type(e).__name__}: {e}") from e


def _validated(obj: Any, version: int) -> Header:
    try:
        header = HEADERS[version].model_validate(obj)
    except pydantic.ValidationError as e:
        where, what = first_problem(e)
        what = _newer_dtype(e, version) or what
        more = f" (and {e.error_count() - 1} more problems)" if e.error_count() > 1 else ""
        raise GraphFileError(f"invalid header at {where}: {what}{more}") from e
    if isinstance(header, HeaderV2) and not (header.buffers or header.frozen or _newer_dtypes(header)):
        raise GraphFileError("format version 2 file holds nothing version 2 adds (no buffers, no "
                             "frozen parameters, no dtype beyond version 1's); such a graph MUST "
                             "be written as version 1")
    return header


def _newer_dtypes(header: Header) -> bool:
    """Whether an input or tensor of the header has a dtype that version 1 lacks."""
    named = [i.dtype for i in header.inputs] + [e.dtype for e in _all_entries(header)]
    return any(DTYPE_SINCE[d] > 1 for d in named)


def _newer_dtype(e: pydantic.ValidationError, version: int) -> str | None:
    """What to say when the first problem is a dtype of the table that ``version`` cannot hold."""
    err = e.errors(include_url=False)[0]
    found = err.get("input")
    if err["loc"][-1:] != ("dtype",) or not isinstance(found, str) or found not in DTYPE_SINCE:
        return None
    return (f"dtype {found!r} needs format version {DTYPE_SINCE[found]}, but this file is version "
            f"{version} (which holds {', '.join(n for n, v in DTYPE_SINCE.items() if v <= version)})")


def _check_tensor_index(header: Header, data_start: int, size: int) -> None:
    """Each tensor: byte length = shape product × itemsize, at the next aligned offset; the
    section ends exactly at end of file. Python ints, so no overflow."""
    pos, seen = 0, set()
    for e in _all_entries(header):
        if e.name in seen:
            raise GraphFileError(f"tensor {e.name!r} appears twice in the tensor index")
        seen.add(e.name)
        want = math.prod(e.shape) * np.dtype(DTYPES[e.dtype]).itemsize
        if e.nbytes != want:
            raise GraphFileError(
                f"tensor {e.name!r}: {e.nbytes} bytes given, but {e.dtype} {tuple(e.shape)} "
                f"needs {want}"
            )
        _check_extent(f"tensor {e.name!r}", e.dtype, e.shape)
        if e.offset != align(pos):
            raise GraphFileError(
                f"tensor {e.name!r} starts at offset {e.offset}, expected {align(pos)} "
                "(tensors lie end to end at 64-byte aligned offsets, no gaps or overlaps)"
            )
        pos = e.offset + e.nbytes
    if data_start + pos != size:
        raise GraphFileError(
            f"file is {size} bytes but its header describes {data_start + pos} "
            f"({'trailing bytes' if size > data_start + pos else 'truncated'})"
        )


def _check_extent(what: str, dtype: str, shape: Sequence[int | None]) -> None:
    """Refuse a declared shape no process could hold: its dimensions, a 0 or an unknown size
    counted as 1, times the itemsize, past :data:`MAX_TENSOR_BYTES`. An empty tensor or an
    input of such a shape would make any tool that allocates "one of it" fail (a gradient
    check, a random example input)."""
    extent = math.prod(max(d or 1, 1) for d in shape) * np.dtype(DTYPES[dtype]).itemsize
    if extent > MAX_TENSOR_BYTES:
        raise GraphFileError(
            f"{what}: shape {tuple(shape)} is too large for an array: its dimensions (0 counted "
            f"as 1) need {extent} bytes of {dtype}, over the limit of {MAX_TENSOR_BYTES} (2**48)"
        )


def _check_inputs(header: Header) -> None:
    for i in header.inputs:
        if i.shape is not None:
            _check_extent(f"input {i.name!r}", i.dtype, i.shape)


def _check_zero(pad: bytes, where: str) -> None:
    if pad.count(0) != len(pad):
        raise GraphFileError(f"padding {where} must be zero bytes")


def _read_section(f: BinaryIO, entries: list[TensorEntry]) -> np.ndarray:
    """The whole tensor section in one read, into one new buffer (its size is already checked
    against the file size). One allocation: four fresh arrays cost 1.6x one read in page faults."""
    end = entries[-1].offset + entries[-1].nbytes if entries else 0
    try:
        buf = np.empty(end, dtype=np.uint8)
    except MemoryError:
        raise GraphFileError(f"the tensor section needs {end} bytes of memory, which this "
                             "process cannot allocate") from None
    view, got = memoryview(buf), 0  # type: ignore[arg-type]
    while got < end:
        n = f.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            inside = next(e for e in entries if got < e.offset + e.nbytes)
            raise GraphFileError(f"file is truncated inside tensor {inside.name!r}")
        got += n
    return buf


def _tensor_at(buf: np.ndarray, e: TensorEntry) -> np.ndarray:
    """Tensor ``e`` as a view of the section buffer (C order, 64-byte aligned; read-only when
    ``buf`` is, as a mapped file's section is; on a big-endian machine a byte-swapped copy)."""
    raw = buf[e.offset:e.offset + e.nbytes]
    if e.dtype == "bool" and raw.size and int(raw.max()) > 1:
        raise GraphFileError(f"tensor {e.name!r}: bool bytes must be 0 or 1")
    arr = raw.view(DTYPES[e.dtype]).reshape(e.shape)
    if sys.byteorder == "big":
        arr = arr.byteswap().view(arr.dtype.newbyteorder())
    return arr


def _check_stored(stored: int | None, size: int, limits: Limits) -> None:
    """A sparse file declares bytes it does not hold: refuse it before allocating them.
    ``stored`` is the bytes the file takes on disk (None when unknown, as for bytes in memory);
    64 MiB of slack covers filesystems that store small tails or compress."""
    if stored is not None and not limits.allow_sparse and size > stored + BASE_BUDGET:
        raise GraphFileError(
            f"file is {size} bytes long but only {stored} bytes are stored on disk (a sparse "
            "file: its declared tensors are not present); if it is honest, load it with "
            "limits=Limits(allow_sparse=True)"
        )


def read_index(f: BinaryIO, size: int, limits: Limits) -> tuple[Header, int]:
    """Preamble → header → tensor index, all validated; returns the header and ``D``, the
    offset of the tensor section. ``f`` is left just after the header. Both readers (the
    copying one here and the mapping one in :mod:`graphexec.fileformat.mapped`) start with it,
    so a check added here guards both."""
    version, hlen = _check_preamble(f, size, limits)
    header = _decode_header(_read_exact(f, hlen, "the header"), limits, version)
    data_start = align(PREAMBLE.size + hlen)
    _check_tensor_index(header, data_start, size)
    _check_inputs(header)
    return header, data_start


def section_tensors(buf: np.ndarray, header: Header) -> list[np.ndarray]:
    """The tensors of a tensor section ``buf`` (uint8, from ``D`` to end of file) as views of it,
    after checking the zero padding between them and each bool tensor's bytes."""
    arrays, pos = [], 0
    for e in _all_entries(header):
        _check_zero(buf[pos:e.offset].tobytes(), f"before tensor {e.name!r}")
        arrays.append(_tensor_at(buf, e))
        pos = e.offset + e.nbytes
    return arrays


def _read(f: BinaryIO, size: int, limits: Limits, tensors: bool,
          stored: int | None = None) -> tuple[Header, list[np.ndarray]]:
    header, data_start = read_index(f, size, limits)
    if not tensors:
        return header, []
    _check_stored(stored, size, limits)
    _check_zero(_read_exact(f, data_start - f.tell(), "padding"), "after the header")
    return header, section_tensors(_read_section(f, _all_entries(header)), header)


def decode(data: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[Header, list[np.ndarray]]:
    """Validate ``data`` and return its header and tensors (params first, then training)."""
    return _read(io.BytesIO(data), len(data), limits, tensors=True)


def read_file(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS, *,
              tensors: bool = True) -> tuple[Header, list[np.ndarray]]:
    """Read and validate a file; with ``tensors=False`` only the header is read."""
    f = _open_regular(path)
    with f:
        st = os.fstat(f.fileno())
        blocks = getattr(st, "st_blocks", None)
        return _read(f, st.st_size, limits, tensors, None if blocks is None else blocks * 512)


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))


def _open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for reading if it is a regular file, else refuse naming what it is.

    The open is non-blocking, so a FIFO with no writer cannot hang it; the check is made on the
    opened descriptor (``fstat``), so the path cannot be swapped between check and read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise GraphFileError(f"cannot open {os.fspath(path)!r}: {e.strerror}") from e
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        what = next((name for test, name in _KINDS if test(mode)), "of an unknown kind")
        raise GraphFileError(f"{os.fspath(path)!r} is {what}, not a regular file; "
                             "give the path of a .gx file")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_header(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Header:
    """Only the validated header; the tensor bytes are never read."""
    return read_file(path, limits, tensors=False)[0]
