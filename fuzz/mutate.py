"""Byte-level mutation fuzzing of ``graphexec.loads`` over the seed files in ``models/``.

Every case takes a seed file, applies one to four random mutations (bit flips, interesting
bytes, interesting 1/2/4/8-byte integers, huge msgpack length prefixes spliced in, deleted,
duplicated or spliced spans, truncation) and loads the result. The property: the outcome is a
valid graph (which then saves to canonical bytes that load again to the same bytes) or a
``graphexec.GraphexecError`` subclass; never another exception, never more than a second, never
more memory (tracemalloc peak) than twice the file plus 64 MB.

Long run (prints cases, outcomes, crashes, hangs, the slowest case and the peak memory)::

    python fuzz/mutate.py --cases 100000 --jobs 2
    python fuzz/mutate.py --cases 2000 --seed 7 --save-failures fuzz/failures

The test suite runs a few thousand cases of the same loop (``tests/test_fuzz.py``).
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import os
import random
import signal
import struct
import sys
import time
import traceback
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

import graphexec as gx
from graphexec.fileformat import MAGIC
from graphexec.fileformat.codec import align, decode

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"

TIME_LIMIT = 1.0              # seconds per case
MEMORY_SLACK = 64 << 20       # bytes: the budget is 2 * len(file) + MEMORY_SLACK
HANG_ALARM = 20               # seconds before a case is interrupted and counted as a hang

INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC7, 0xCA,
                     0xCB, 0xCF, 0xD3, 0xD4, 0xD9, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0x90, 0x9F,
                     0x8F, 0xA0, 0xBF, 0xE0)
INTERESTING_INTS = (0, 1, 2, 7, 8, 16, 24, 63, 64, 65, 127, 128, 255, 256, 4096, 65535, 65536,
                    2**20, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53, 2**62, 2**63 - 1, 2**63,
                    2**64 - 1)
HUGE_PREFIXES = (b"\xdd\xff\xff\xff\xff", b"\xdd\x00\x10\x00\x00", b"\xdc\xff\xff",
                 b"\xdf\xff\xff\xff\xff", b"\xde\xff\xff", b"\xdb\xff\xff\xff\xff",
                 b"\xdb\x00\x01\x00\x00", b"\xda\xff\xff", b"\xc6\xff\xff\xff\xff",
                 b"\xc9\x7f\xff\xff\xff\x01", b"\x9f" * 16, b"\x91" * 64, b"\x81\xa1a" * 20)

#: Values that a structure-aware mutation puts into the header in place of another.
INTERESTING_VALUES: tuple[object, ...] = (
    None, True, False, 0, 1, -1, 2, 3, 7, 64, 2**31, 2**32, 2**62, 2**62 + 1, 2**63 - 1, -2**63,
    2**64 - 1, 0.0, -0.0, 0.5, 1e308, float("nan"), float("inf"), "", "x", "W", "f", "q", "x/../y",
    "a" * 129, "\x1b[31mred", "line\nbreak", "\x9b2J", "\u202eevil", "float64", "float16", ">f8",
    "object", "bool", "int64", "graphexec", "add", "matmul", "relu", "frobnicate", [], [0], [2, 2],
    [0, 2**62], [2**62, 2**62, 0], [[1, 2], [3]], {}, {"k": 1}, [None], [-1],
)

Mutator = Callable[[random.Random, bytes], bytes]


def _pos(rng: random.Random, data: bytes, header_bias: bool = True) -> int:
    """A position, half of the time inside the preamble and header (where parsing happens)."""
    if not data:
        return 0
    if header_bias and rng.random() < 0.5:
        return rng.randrange(min(len(data), 24 + int.from_bytes(data[16:24], "little") % 4096 + 1))
    return rng.randrange(len(data))


def bit_flips(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if b:
            b[_pos(rng, data)] ^= 1 << rng.randrange(8)
    return bytes(b)


def interesting_byte(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    if b:
        b[_pos(rng, data)] = rng.choice(INTERESTING_BYTES)
    return bytes(b)


def interesting_int(rng: random.Random, data: bytes) -> bytes:
    """Overwrite 1, 2, 4 or 8 bytes with an interesting integer, either byte order."""
    width = rng.choice((1, 2, 4, 8))
    value = rng.choice(INTERESTING_INTS + (len(data), len(data) + 1, len(data) - 24))
    raw = (value % (1 << (8 * width))).to_bytes(width, rng.choice(("little", "big")))
    p = _pos(rng, data)
    return data[:p] + raw + data[p + width:]


def overwrite_u64(rng: random.Random, data: bytes) -> bytes:
    """Overwrite an 8-byte little-endian integer at an aligned spot: version, flags, length."""
    p = rng.choice((8, 12, 16, 16, 16) + tuple(range(24, max(25, len(data) - 8), 8)))
    value = rng.choice(INTERESTING_INTS + (len(data), len(data) - 24, len(data) - 23))
    return data[:p] + struct.pack("<Q", value % 2**64) + data[p + 8:]


def huge_prefix(rng: random.Random, data: bytes) -> bytes:
    """Splice in (insert or overwrite) a msgpack prefix declaring a gigantic length or depth."""
    blob, p = rng.choice(HUGE_PREFIXES), _pos(rng, data)
    return data[:p] + blob + data[p + (len(blob) if rng.random() < 0.5 else 0):]


def delete_span(rng: random.Random, data: bytes) -> bytes:
    p = _pos(rng, data)
    return data[:p] + data[p + rng.choice((1, 2, 4, 8, rng.randint(1, 256))):]


def duplicate_span(rng: random.Random, data: bytes) -> bytes:
    p, q = _pos(rng, data), _pos(rng, data)
    span = data[p:p + rng.choice((1, 4, 8, rng.randint(1, 512)))]
    return data[:q] + span + data[q:]


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[:rng.randrange(len(data) + 1)]


def append_bytes(rng: random.Random, data: bytes) -> bytes:
    return data + bytes(rng.choice((1, 7, 64))) if rng.random() < 0.5 else data + rng.randbytes(8)


# ---------------------------------------------------------------------------- header-aware
def split(data: bytes) -> tuple[object, bytes] | None:
    """(decoded header, tensor section) of a well-formed file, else None."""
    if len(data) < 24:
        return None
    hlen = int.from_bytes(data[16:24], "little")
    try:
        header = msgpack.unpackb(data[24:24 + hlen], raw=False, strict_map_key=False)
    except Exception:
        return None
    return header, data[align(24 + hlen):]


def join(header: object, tensors: bytes, prefix: bytes = MAGIC + b"\x01\0\0\0\0\0\0\0") -> bytes:
    """A file around ``header`` (re-encoded, padding recomputed) and ``tensors``."""
    hb = msgpack.packb(header, use_bin_type=True)
    pad = align(24 + len(hb)) - 24 - len(hb)
    return prefix[:16] + struct.pack("<Q", len(hb)) + hb + bytes(pad) + tensors


def _containers(obj: object) -> list[object]:
    out, stack = [], [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, (dict, list)):
            out.append(node)
            stack.extend(node.values() if isinstance(node, dict) else node)
    return out


def header_edit(rng: random.Random, data: bytes) -> bytes:
    """Decode the header, change one map or list (set, delete, insert, duplicate, swap), re-encode."""
    parts = split(data)
    if parts is None:
        return interesting_byte(rng, data)
    header, tensors = parts
    containers = _containers(header)
    if not containers:
        return interesting_byte(rng, data)
    target = rng.choice(containers)
    value = rng.choice(INTERESTING_VALUES)
    if isinstance(target, dict):
        keys = list(target)
        action = rng.choice(("set", "set", "set", "delete", "insert"))
        if action == "insert" or not keys:
            target[rng.choice(("extra", "name", "value", "op", "shape", 1, "\x00"))] = value
        elif action == "delete":
            del target[rng.choice(keys)]
        else:
            target[rng.choice(keys)] = value
    else:
        action = rng.choice(("set", "insert", "delete", "duplicate", "swap"))
        if action == "insert" or not target:
            target.insert(rng.randint(0, len(target)), value)
        elif action == "set":
            target[rng.randrange(len(target))] = value
        elif action == "delete":
            del target[rng.randrange(len(target))]
        elif action == "duplicate":
            target.append(target[rng.randrange(len(target))])
        else:
            i, j = rng.randrange(len(target)), rng.randrange(len(target))
            target[i], target[j] = target[j], target[i]
    try:
        return join(header, tensors, data)
    except (TypeError, ValueError, OverflowError):  # not encodable (e.g. a huge int): skip
        return data


def header_swap_values(rng: random.Random, data: bytes) -> bytes:
    """Copy one value of the header over another (names, shapes, offsets land in odd places)."""
    parts = split(data)
    if parts is None:
        return bit_flips(rng, data)
    header, tensors = parts
    slots = [(c, k) for c in _containers(header) for k in (c if isinstance(c, dict) else range(len(c)))]
    if len(slots) < 2:
        return data
    (c1, k1), (c2, k2) = rng.sample(slots, 2)
    c1[k1] = copy.deepcopy(c2[k2])
    try:
        return join(header, tensors, data)
    except (TypeError, ValueError, OverflowError, RecursionError):
        return data


MUTATORS: tuple[Mutator, ...] = (header_edit, header_edit, header_swap_values, bit_flips,
                                 interesting_byte, interesting_int, overwrite_u64, huge_prefix, delete_span,
                                 duplicate_span, truncate, append_bytes)


def mutate(rng: random.Random, data: bytes, seeds: Sequence[bytes] = ()) -> tuple[bytes, str]:
    """One to four stacked mutations; returns the bytes and a description of what was done."""
    steps = []
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        if seeds and rng.random() < 0.05:  # crossover: a head of this file, a tail of another
            other = rng.choice(seeds)
            p, q = _pos(rng, data, False), _pos(rng, other, False)
            data, name = data[:p] + other[q:], "splice"
        else:
            m = rng.choice(MUTATORS)
            data, name = m(rng, data), m.__name__
        steps.append(name)
    return data, "+".join(steps)


# ---------------------------------------------------------------------------- one case
class Hang(Exception):
    """Raised by the alarm when a case runs for HANG_ALARM seconds."""


@dataclass
class Outcome:
    kind: str              # "graph", an error class name, "crash", or "hang"
    seconds: float
    peak: int              # tracemalloc peak, bytes
    size: int              # len(data)
    detail: str = ""       # traceback of a crash, or a property failure

    @property
    def budget(self) -> int:
        return 2 * self.size + MEMORY_SLACK

    def problems(self) -> list[str]:
        out = []
        if self.kind in ("crash", "hang", "roundtrip"):
            out.append(self.kind)
        if self.seconds > TIME_LIMIT:
            out.append("slow")
        if self.peak > self.budget:
            out.append("memory")
        return out


def _load(data: bytes) -> tuple[str, str, gx.Graph | None]:
    try:
        return "graph", "", gx.loads(data)
    except gx.GraphexecError as e:
        return type(e).__name__, "", None
    except Hang:
        return "hang", "", None
    except Exception as e:
        return "crash", "".join(traceback.format_exception(e)), None


def check(data: bytes, *, measure_memory: bool = True) -> Outcome:
    """Load ``data`` and classify what happened. Time is measured on a plain run; memory on a
    second run under tracemalloc (which slows allocation-heavy code several times)."""
    t0 = time.perf_counter()
    kind, detail, g = _load(data)
    seconds = time.perf_counter() - t0
    peak = 0
    if measure_memory and kind != "hang":
        tracemalloc.start()
        tracemalloc.reset_peak()
        try:
            _load(data)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    if g is not None:
        detail = roundtrip_problem(data, g)
        kind = "roundtrip" if detail else kind
    return Outcome(kind, seconds, peak, len(data), detail)


def roundtrip_problem(data: bytes, g: gx.Graph) -> str:
    """What is wrong with a graph that loaded: it must keep everything its file holds (nothing
    dropped or merged), save to canonical bytes, and those bytes must be a fixpoint."""
    try:
        header, _ = decode(data)
        counts = {"inputs": (len(g.inputs), len(header.inputs)),
                  "params": (len(g.params), len(header.params)),
                  "nodes": (len(g.nodes), len(header.nodes)),
                  "outputs": (len(g.outputs), len(header.outputs)),
                  "metadata": (len(g.metadata), len(header.metadata))}
        lost = {k: v for k, v in counts.items() if v[0] != v[1]}
        if lost:
            return f"the loaded graph lost entries of its file (graph, file): {lost}"
        canon = gx.dumps(g)
        if gx.dumps(gx.loads(canon)) != canon:
            return "dumps(loads(dumps(g))) != dumps(g)"
    except BaseException as e:
        return "".join(traceback.format_exception(e))
    return ""


def seed_files(folder: Path = MODELS) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted(folder.glob("*.gx"))]


# ---------------------------------------------------------------------------- the loop
@dataclass
class Report:
    cases: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str, bytes, Outcome]] = field(default_factory=list)
    slowest: tuple[float, str] = (0.0, "")
    peak: tuple[int, int, str] = (0, 0, "")         # bytes, file size, case
    worst_ratio: tuple[float, str] = (0.0, "")     # peak / budget

    def add(self, label: str, data: bytes, out: Outcome) -> None:
        self.cases += 1
        self.outcomes[out.kind] += 1
        if out.seconds > self.slowest[0]:
            self.slowest = (out.seconds, label)
        if out.peak > self.peak[0]:
            self.peak = (out.peak, out.size, label)
        if out.peak / out.budget > self.worst_ratio[0]:
            self.worst_ratio = (out.peak / out.budget, label)
        if out.problems():
            self.failures.append((label, ",".join(out.problems()), data, out))

    def merge(self, other: Report) -> None:
        self.cases += other.cases
        self.outcomes.update(other.outcomes)
        self.failures += other.failures
        self.slowest = max(self.slowest, other.slowest)
        self.peak = max(self.peak, other.peak)
        self.worst_ratio = max(self.worst_ratio, other.worst_ratio)

    def summary(self) -> str:
        kinds = Counter(p for _, problems, _, _ in self.failures for p in problems.split(","))
        lines = [
            f"cases: {self.cases}",
            "outcomes: " + ", ".join(f"{k} {v}" for k, v in self.outcomes.most_common()),
            (f"crashes: {kinds['crash'] + kinds['roundtrip']}   hangs (> {TIME_LIMIT:g} s): "
            f"{kinds['slow'] + kinds['hang']}   over memory budget: {kinds['memory']}"),
            f"slowest case: {self.slowest[0] * 1000:.1f} ms ({self.slowest[1]})",
            (f"peak memory: {self.peak[0] / 2**20:.2f} MiB for a {self.peak[1]}-byte file "
            f"({self.peak[2]}); worst peak/budget {self.worst_ratio[0]:.4f}"),
        ]
        for label, problems, _, out in self.failures[:10]:
            lines.append(f"FAIL {problems}: {label}\n{out.detail}")
        return "\n".join(lines)


def _alarm(signum: int, frame: object) -> None:
    raise Hang()


def run(cases: int, seed: int, *, measure_memory: bool = True, worker: int = 0,
        progress: bool = False) -> Report:
    """``cases`` cases from ``random.Random(seed)``; labels say how to replay each one."""
    seeds = seed_files()
    blobs = [d for _, d in seeds]
    rng = random.Random(seed)
    rep = Report()
    use_alarm = hasattr(signal, "SIGALRM") and progress
    if use_alarm:
        signal.signal(signal.SIGALRM, _alarm)
    t0 = time.perf_counter()
    for i in range(cases):
        name, base = seeds[i % len(seeds)]
        data, how = mutate(rng, base, blobs)
        label = f"seed={seed} case={i} file={name} mutations={how}"
        if use_alarm:
            signal.alarm(HANG_ALARM)
        out = check(data, measure_memory=measure_memory)
        if use_alarm:
            signal.alarm(0)
        rep.add(label, data, out)
        if progress and (i + 1) % 5000 == 0:
            print(f"[worker {worker}] {i + 1}/{cases} cases, {len(rep.failures)} failures, "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return rep


def _job(args: tuple[int, int, int]) -> Report:
    cases, seed, worker = args
    return run(cases, seed, worker=worker, progress=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0, help="worker k uses seed + k")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--save-failures", metavar="DIR", help="write each failing input to DIR")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    shares = [args.cases // args.jobs + (k < args.cases % args.jobs) for k in range(args.jobs)]
    jobs = [(n, args.seed + k, k) for k, n in enumerate(shares)]
    if args.jobs == 1:
        reports = [_job(jobs[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            reports = pool.map(_job, jobs)
    total = Report()
    for r in reports:
        total.merge(r)
    print(f"command: python fuzz/mutate.py --cases {args.cases} --seed {args.seed} --jobs {args.jobs}")
    print(total.summary())
    print(f"wall time: {time.perf_counter() - t0:.0f} s")
    if args.save_failures and total.failures:
        out = Path(args.save_failures)
        out.mkdir(parents=True, exist_ok=True)
        for k, (label, problems, data, _) in enumerate(total.failures):
            (out / f"failure-{k:04d}.gx").write_bytes(data)
            (out / f"failure-{k:04d}.txt").write_text(f"{problems}: {label}\n")
    return 1 if total.failures else 0


if __name__ == "__main__":
    sys.exit(main())
