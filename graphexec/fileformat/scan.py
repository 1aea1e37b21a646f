"""A structural pre-scan of msgpack bytes, before anything is decoded.

``msgpack.unpackb`` allocates each array or map as soon as it reads its declared length, checks
nesting only against its own compile-time stack (1024 levels), and builds every object before we
could look at it. A few kilobytes of hostile header can therefore make it allocate tens of
megabytes, and a megabyte of one-byte empty containers becomes a hundred. This scan walks the
bytes once, without building anything, and rejects what the format forbids *before* decoding:

- a type outside the allowed set (``bin``, extension types, the reserved byte ``0xc1``);
- a string, array or map longer than its limit, or declaring more items than bytes remain;
- nesting deeper than ``max_depth``; more than ``max_items`` objects, or ``max_containers``
  arrays and maps, in all (a one-byte empty container decodes to 56-72 bytes of Python);
- strings whose decoded size passes ``max_text_bytes`` in all: a string with any non-ASCII
  byte counts four bytes a byte, since one emoji widens the whole Python str to UCS-4;
- a map key that is not a string;
- bytes after the single top-level object, or an object cut short.

After it passes, decoding allocates at most one Python object per scanned item. UTF-8 validity
and duplicate keys are left to the decoder, which checks them as it builds each string and map.

The walk costs about half a microsecond per item, 0.5 s for a 100,000-node header, so
:func:`passes` first tries to prove, with passes over the bytes in C, that the walk would find
nothing wrong in a header that then decodes and validates; the reader walks only when that
proof fails (see ``docs/security.md``, "Bounded time and memory").
"""

from __future__ import annotations

import msgpack

from graphexec.errors import ScanError

__all__ = ["ScanError", "passes", "scan"]


SCALAR, STR, ARRAY, MAP, FORBIDDEN = range(5)
_NAMES = {STR: "string", ARRAY: "array", MAP: "map"}


def _table() -> tuple[list[int], list[int], list[int]]:
    """Per type byte: kind, header size (type byte included), and length: the length itself for
    fix types, or minus the width of the big-endian length that follows."""
    kind, size, length = [FORBIDDEN] * 256, [1] * 256, [0] * 256
    for b in range(256):
        if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
            kind[b] = SCALAR
        elif b <= 0x8F:
            kind[b], length[b] = MAP, b & 0x0F
        elif b <= 0x9F:
            kind[b], length[b] = ARRAY, b & 0x0F
        elif b <= 0xBF:
            kind[b], length[b] = STR, b & 0x1F
    for b, n in {0xCA: 5, 0xCB: 9, 0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9,
                 0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9}.items():
        kind[b], size[b] = SCALAR, n
    for b, k, width in ((0xD9, STR, 1), (0xDA, STR, 2), (0xDB, STR, 4), (0xDC, ARRAY, 2),
                        (0xDD, ARRAY, 4), (0xDE, MAP, 2), (0xDF, MAP, 4)):
        kind[b], size[b], length[b] = k, 1 + width, -width
    return kind, size, length


_KIND, _SIZE, _LENGTH = _table()


def _forbidden(b: int, pos: int) -> ScanError:
    if b in (0xC4, 0xC5, 0xC6):
        what = "bin"
    elif b in (0xC7, 0xC8, 0xC9) or 0xD4 <= b <= 0xD8:
        what = "an extension type"
    else:
        what = f"the reserved type byte {b:#04x}"
    return ScanError(f"{what} at byte {pos} is not allowed")


def scan(raw: bytes, *, max_str_len: int, max_array_len: int, max_map_len: int,
         max_depth: int, max_items: int, max_containers: int, max_text_bytes: int) -> int:
    """Check the structure of one msgpack object filling ``raw`` exactly; return its item count.

    Iterative (no recursion), table-driven, linear in the number of items, each visited once.
    """
    end, pos, items, containers, text = len(raw), 0, 0, 0, 0
    left: list[int] = []     # items still to come in each open container (a map counts 2 per pair)
    is_map: list[bool] = []
    limit = {STR: max_str_len, ARRAY: max_array_len, MAP: max_map_len}
    while True:
        if pos >= end:
            raise ScanError(f"incomplete input: {end} bytes end inside an object")
        items += 1
        if items > max_items:
            raise ScanError(f"more than {max_items} objects (the limit max_header_items)")
        b = raw[pos]
        kind = _KIND[b]
        if left and is_map[-1] and not left[-1] & 1 and kind != STR:
            raise ScanError(f"map key at byte {pos} is not a string")
        if kind == SCALAR:
            pos += _SIZE[b]
        elif kind == FORBIDDEN:
            raise _forbidden(b, pos)
        else:
            n, start = _LENGTH[b], pos
            pos += _SIZE[b]
            if n < 0:
                if pos > end:
                    raise ScanError(f"incomplete input: the length at byte {start} runs past the end")
                n = int.from_bytes(raw[start + 1:pos], "big")
            if n > limit[kind]:
                unit = "bytes" if kind == STR else "items"
                raise ScanError(f"{_NAMES[kind]} of {n} {unit} at byte {start} is over the limit "
                                f"of {limit[kind]}")
            if kind == STR:
                text += n if raw[pos:pos + n].isascii() else 4 * n
                if text > max_text_bytes:
                    raise ScanError(f"strings decoding to more than {max_text_bytes} bytes "
                                    "(the limit max_text_bytes; non-ASCII text counts 4 bytes a byte)")
                pos += n
            else:
                containers += 1
                if containers > max_containers:
                    raise ScanError(f"more than {max_containers} arrays and maps "
                                    "(the limit max_containers)")
                if len(left) >= max_depth - (n > 0):
                    raise ScanError(f"nesting deeper than the limit of {max_depth} (max_depth)")
                if n:
                    if n * (1 + (kind == MAP)) > end - pos:
                        raise ScanError(f"incomplete input: {_NAMES[kind]} at byte {start} declares "
                                        f"{n} items but only {end - pos} bytes remain")
                    left.append(n << (kind == MAP))
                    is_map.append(kind == MAP)
                    continue
        # one object is complete: close every container it completes
        while left:
            left[-1] -= 1
            if left[-1]:
                break
            left.pop()
            is_map.pop()
        if not left:
            break
    if pos > end:
        raise ScanError(f"incomplete input: the last object runs past the end ({pos} > {end} bytes)")
    if pos != end:
        raise ScanError(f"{end - pos} extra bytes after the header's single object "
                        f"(it ends at byte {pos} of {end})")
    return items


#: Every type byte of an array or map, and every lead byte of a multi-byte UTF-8 character.
_CONTAINER_BYTES = bytes([*range(0x80, 0xA0), *range(0xDC, 0xE0)])
_LEAD_BYTES = bytes(range(0xC2, 0xF5))
_ALL = bytes(range(256))
_NOT_CONTAINER = _ALL.translate(None, _CONTAINER_BYTES)
_NOT_LEAD = _ALL.translate(None, _LEAD_BYTES)


def passes(raw: bytes, *, max_str_len: int, max_depth: int, max_items: int,
           max_containers: int, max_text_bytes: int, nesting: int) -> bool:
    """True if :func:`scan` would accept ``raw``, provided that msgpack then decodes it with the
    same length limits and the header model validates it; False means "walk to find out".

    ``nesting`` is the deepest a valid header nests arrays and maps. The proof, each step in C:

    - msgpack's ``skip`` reads exactly one complete object filling ``raw``: every declared
      length is present, so decoding allocates at most one object per item, as after a scan;
      incomplete input, ``0xc1`` and trailing bytes fail here;
    - items: each takes a byte at least, so ``len(raw) <= max_items`` bounds them;
    - arrays and maps: no more than the bytes that could be their type bytes;
    - text: strings hold at most ``len(raw)`` bytes, and a non-ASCII one (valid UTF-8: the
      decoder checks) holds a lead byte and at most ``max_str_len`` bytes, so the walk's count
      (4 bytes a byte for such strings) is at most ``len(raw) + 3 * min(len(raw), L *
      max_str_len)`` for ``L`` the bytes that could be lead bytes;
    - nesting, map keys, ``bin`` and extension types: the decoder refuses non-string keys and
      extension types, the model refuses ``bytes`` (an empty ``bin`` the decoder lets
      through) and anything nested deeper than ``nesting``, which must be below ``max_depth``.
    """
    size = len(raw)
    if nesting >= max_depth or size > max_items:
        return False
    if len(raw.translate(None, _NOT_CONTAINER)) > max_containers:
        return False
    if size + 3 * min(size, len(raw.translate(None, _NOT_LEAD)) * max_str_len) > max_text_bytes:
        return False
    unpacker = msgpack.Unpacker(max_buffer_size=max(size, 1))
    unpacker.feed(raw)
    try:
        unpacker.skip()
    except Exception:  # OutOfData, FormatError, StackError: the walk names the problem
        return False
    return bool(unpacker.tell() == size)
