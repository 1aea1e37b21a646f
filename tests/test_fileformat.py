"""The .gx format: golden bytes, round trips, canonical encoding, atomic saves, and hostile files."""

import json
import os
import struct
import time

import msgpack
import numpy as np
import pytest

import graphexec as gx
from graphexec.fileformat import MAGIC, Header, read_header
from graphexec.fileformat.codec import PREAMBLE, align

from conftest import MODELS, ROOT


def header_of(data: bytes) -> tuple[dict, int]:
    _, _, _, hlen = PREAMBLE.unpack(data[:24])
    return msgpack.unpackb(data[24:24 + hlen]), hlen


def rebuild(h: dict, tensors: bytes = b"") -> bytes:
    hb = msgpack.packb(h)
    pad = bytes(align(24 + len(hb)) - 24 - len(hb))
    return PREAMBLE.pack(MAGIC, 1, 0, len(hb)) + hb + pad + tensors


def test_preamble_golden_bytes():
    data = (MODELS / "add_mul.gx").read_bytes()
    assert data[:8] == b"\x89GXF\r\n\x1a\n"
    assert data[8:16] == b"\x01\x00\x00\x00\x00\x00\x00\x00"
    h, hlen = header_of(data)
    assert list(h) == sorted(h)  # canonical: keys sorted
    assert h["nodes"][0] == {"attrs": {}, "inputs": ["x", "y"], "name": "q", "op": "add", "version": 1}
    assert h["ops"][0] == {"dist": "graphexec", "dist_version": gx.__version__, "op": "add", "version": 1}
    assert len(data) == align(24 + hlen)


def test_tensor_section_layout():
    data = (MODELS / "wx_norm.gx").read_bytes()
    h, hlen = header_of(data)
    start = align(24 + hlen)
    (p,) = h["params"]
    assert p == {"dtype": "float64", "name": "W", "nbytes": 32, "offset": 0, "shape": [2, 2]}
    np.testing.assert_array_equal(np.frombuffer(data[start:start + 32], "<f8"), [0.1, 0.5, -0.3, 0.8])
    assert len(data) == start + 32


@pytest.mark.parametrize("name", ["add_mul.gx", "add_mul_sum.gx", "sigmoid_neuron.gx", "wx_norm.gx"])
def test_save_load_reproduces_the_file_byte_for_byte(name, tmp_path):
    src = MODELS / name
    gx.save(gx.load(src), tmp_path / name)
    assert (tmp_path / name).read_bytes() == src.read_bytes()
    assert gx.dumps(gx.loads(src.read_bytes())) == src.read_bytes()


def test_round_trip_of_every_dtype_and_alignment(tmp_path):
    b = gx.GraphBuilder("dtypes", metadata={"note": "ünïcode ok\nline two"})
    x = b.input("x", shape=(None, 3), dtype="float32")
    b.input("labels", shape=(None,), dtype="int64")
    arrays = {
        "a": np.arange(3, dtype=np.float32), "b": np.arange(5, dtype=np.float64).reshape(5, 1),
        "c": np.array([1, -2], dtype=np.int32), "d": np.array(7, dtype=np.int64),
        "e": np.array([True, False, True]), "f": np.zeros((0, 4), dtype=np.float32),
    }
    for k, v in arrays.items():
        b.param(k, v)
    b.output(b.op("leaky_relu", b.op("add", x, "a"), alpha=0.25), "y")
    g = b.build()
    data = gx.dumps(g)
    h, hlen = header_of(data)
    assert all(p["offset"] % 64 == 0 for p in h["params"])
    g2 = gx.loads(data)
    for k, v in arrays.items():
        assert g2.params[k].dtype == v.dtype and g2.params[k].flags.writeable
        np.testing.assert_array_equal(g2.params[k], v)
    assert g2.metadata == {"note": "ünïcode ok\nline two"}
    assert g2.nodes[1].attrs == {"alpha": 0.25}
    assert gx.dumps(g2) == data


def test_json_schema_is_current():
    committed = json.loads((ROOT / "docs" / "format.schema.json").read_text())
    assert committed == Header.model_json_schema(), "regenerate docs/format.schema.json"


def test_committed_version_2_json_schema_is_current():
    from graphexec.fileformat.schema import HeaderV2

    committed = json.loads((ROOT / "docs" / "format-v2.schema.json").read_text())
    assert committed == HeaderV2.model_json_schema(), "regenerate docs/format-v2.schema.json"


def test_info_reads_only_the_header(tmp_path):
    b = gx.GraphBuilder("big")
    x = b.input("x", shape=(None, 1000))
    b.output(b.op("matmul", x, b.param("W", np.zeros((1000, 1000)))), "y")
    path = tmp_path / "big.gx"
    gx.save(b.build(), path)
    h = read_header(path)
    assert h.params[0].shape == [1000, 1000]
    with open(path, "r+b") as f:  # corrupt the tensor bytes' padding: header reading does not notice
        f.seek(-8, os.SEEK_END)
        f.write(b"\xff" * 8)
    read_header(path)


def test_atomic_save_leaves_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "m.gx"
    gx.save(gx.load(MODELS / "add_mul.gx"), path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="No space left"):
        gx.save(gx.load(MODELS / "wx_norm.gx"), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gx"]


def test_saved_file_has_normal_permissions(tmp_path):
    path = tmp_path / "m.gx"
    gx.save(gx.load(MODELS / "add_mul.gx"), path)
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)


# ---------------------------------------------------------------------------- hostile files
def valid() -> bytes:
    return (MODELS / "wx_norm.gx").read_bytes()


def mutate_header(fn) -> bytes:
    data = valid()
    h, hlen = header_of(data)
    fn(h)
    return rebuild(h, data[align(24 + hlen):])


HOSTILE = {
    "empty": (b"", gx.GraphFileError, "wrong magic"),
    "random": (bytes(range(256)) * 4, gx.GraphFileError, "wrong magic"),
    "wrong magic": (b"PK\x03\x04" + valid()[4:], gx.GraphFileError, "wrong magic"),
    "future version": (valid()[:8] + struct.pack("<I", 7) + valid()[12:], gx.GraphFileError,
                       r"format version 7 is newer than this graphexec supports \(version 2\)"),
    "trailing bytes": (valid() + b"\0", gx.GraphFileError, "trailing bytes"),
    "header past end": (valid()[:16] + struct.pack("<Q", 10**6) + valid()[24:], gx.GraphFileError,
                        "runs past end of file"),
    "gigantic header": (valid()[:16] + struct.pack("<Q", 2**63) + valid()[24:], gx.GraphFileError,
                        "runs past end of file"),
    "bad dtype": (mutate_header(lambda h: h["params"][0].update(dtype="object")), gx.GraphFileError,
                  r"params\.0\.dtype"),
    "big endian": (mutate_header(lambda h: h["params"][0].update(dtype=">f8")), gx.GraphFileError,
                   r"params\.0\.dtype"),
    "byte length": (mutate_header(lambda h: h["params"][0].update(nbytes=24)), gx.GraphFileError,
                    r"24 bytes given, but float64 \(2, 2\) needs 32"),
    "shape overflow": (mutate_header(lambda h: h["params"][0].update(shape=[2**62, 2**62, 2**62])),
                       gx.GraphFileError, "needs"),
    "gap": (mutate_header(lambda h: h["params"][0].update(offset=64)), gx.GraphFileError,
            "expected 0"),
    "unknown field": (mutate_header(lambda h: h.update(extra=1)), gx.GraphFileError, "extra"),
    "bool as int": (mutate_header(lambda h: h["nodes"][0].update(version=True)), gx.GraphFileError,
                    r"nodes\.0\.version"),
    "path in name": (mutate_header(lambda h: h["nodes"][0].update(name="../etc")), gx.GraphFileError,
                     r"nodes\.0\.name"),
    "markup in name": (mutate_header(lambda h: h["inputs"][0].update(name="\x1b[31mx")),
                       gx.GraphFileError, r"inputs\.0\.name"),
    "dangling edge": (mutate_header(lambda h: h["nodes"][0].update(inputs=["W", "nope"])),
                      gx.GraphFileError, r"reads 'nope', which does not exist"),
    "cycle": (mutate_header(lambda h: h["nodes"][0].update(inputs=["W", "f"])), gx.GraphFileError,
              r"cycle: q -> q2 -> f -> q|cycle"),
    "duplicate name": (mutate_header(lambda h: h["nodes"][1].update(name="q")), gx.GraphFileError,
                       "duplicate name 'q'"),
    "output of nothing": (mutate_header(lambda h: h["outputs"][0].update(value="zz")),
                          gx.GraphFileError, "output 'f' shows 'zz', which nothing produces"),
    "unknown op": (mutate_header(lambda h: (h["nodes"][0].update(op="frobnicate"),
                                            h["ops"].append({"op": "frobnicate", "version": 1,
                                                             "dist": "frob-gates", "dist_version": "2.0"}))),
                   gx.UnknownOpError, r"op 'frobnicate' version 1 .*'frob-gates'.*pip install frob-gates"),
    "newer op version": (mutate_header(lambda h: h["nodes"][0].update(version=3)), gx.UnknownOpError,
                         r"needs version 3.*installed gate is version 1"),
    "bad attribute": (mutate_header(lambda h: h["nodes"][0].update(attrs={"bogus": 1})),
                      gx.GraphFileError, r"bad attribute 'bogus'"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_file(case):
    data, err, msg = HOSTILE[case]
    t0 = time.process_time()
    with pytest.raises(err, match=msg):
        gx.loads(data)
    assert time.process_time() - t0 < 5.0  # CPU seconds; each case takes a few ms


def test_every_truncation_is_a_clean_error():
    data = valid()
    for n in range(len(data)):
        with pytest.raises(gx.GraphFileError):
            gx.loads(data[:n])


def raw_header(payload: bytes) -> bytes:
    return PREAMBLE.pack(MAGIC, 1, 0, len(payload)) + payload


@pytest.mark.parametrize("payload, msg", [
    (b"\x91" * 100_000 + b"\xc0", "deeper|not valid msgpack"),      # deep nesting
    (b"\x81\x01\x02", "not valid msgpack"),                           # non-string key
    (b"\xd4\x05\x00", "not valid msgpack"),                           # ext type
    (b"\x82\xa1a\x01\xa1a\x02", "not valid msgpack"),                 # duplicate keys
    (b"\xa2\xff\xfe", "not valid msgpack"),                           # invalid UTF-8
    (b"\xdd\xff\xff\xff\xff", "not valid msgpack"),                   # gigantic declared array
    (b"\xdb\xff\xff\xff\xff", "not valid msgpack"),                   # gigantic declared string
    (b"\xc0\xc0", "not valid msgpack"),                               # two objects
])
def test_hostile_msgpack(payload, msg):
    with pytest.raises(gx.GraphFileError, match=msg):
        gx.loads(raw_header(payload))


def test_load_error_names_the_file(tmp_path):
    p = tmp_path / "bad.gx"
    p.write_bytes(b"nope")
    with pytest.raises(gx.GraphFileError, match=r"bad\.gx: not a graphexec file"):
        gx.load(p)
    with pytest.raises(gx.GraphFileError, match=r"cannot open"):
        gx.load(tmp_path / "missing.gx")


# ---------------------------------------------------------------------------- limits from size
def chain_file(n: int) -> bytes:
    """The canonical bytes graphexec writes for a chain of ``n`` neg nodes (no tensors)."""
    nodes = [{"attrs": {}, "inputs": ["a" if i == 0 else f"n{i - 1}"], "name": f"n{i}",
              "op": "neg", "version": 1} for i in range(n)]
    header = {"inputs": [{"dtype": "float64", "name": "a", "shape": [2]}], "metadata": {},
              "name": "chain", "nodes": nodes, "ops": [], "outputs": [{"name": "y", "value": f"n{n - 1}"}],
              "params": []}
    data = raw_header(msgpack.packb(header))
    return data + bytes(align(len(data)) - len(data))


def test_a_100k_node_graph_loads_with_the_default_limits():
    """It used to need raised limits: "more than 262144 objects (the limit max_header_items)".
    CPU time, never wall-clock: measured 1.5 s on a busy 2-core VM (it was 4-5 s before the
    scan's shortcut, one shape rule per distinct input and shared attribute models)."""
    data = chain_file(100_000)
    t0 = time.process_time()
    g = gx.loads(data)
    assert time.process_time() - t0 < 15.0  # 10x the measured
    assert len(g.nodes) == 100_000 and g.nodes[-1].name == "n99999"
    y = gx.Executor(g).forward(a=np.array([1.0, -2.0]))["y"]
    np.testing.assert_array_equal(y, [1.0, -2.0])  # an even number of negations


@pytest.mark.skipif(not os.environ.get("GRAPHEXEC_SLOW_TESTS"),
                    reason="about 60 s of CPU: set GRAPHEXEC_SLOW_TESTS=1")
def test_a_1m_node_graph_loads_with_the_default_limits():
    g = gx.loads(chain_file(1_000_000))
    assert len(g.nodes) == 1_000_000


def test_the_limits_derive_from_the_header_length():
    from graphexec.fileformat import Limits

    small, big = Limits().resolve(1000), Limits().resolve(80 << 20)
    assert (small.max_header_items, small.max_containers) == (1000, 1 << 18)
    assert (big.max_header_items, big.max_containers, big.max_array_len) == (80 << 20, 10 << 20, 80 << 20)
    assert big.max_text_bytes == (80 << 20) + (32 << 20)
    assert Limits(max_header_items=7).resolve(80 << 20).max_header_items == 7  # a number wins


# ---------------------------------------------------------------------------- not a regular file
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    """``load`` and ``info`` used to block forever in open() on a FIFO with no writer."""
    fifo = tmp_path / "m.gx"
    os.mkfifo(fifo)
    with pytest.raises(gx.GraphFileError, match=r"m\.gx' is a FIFO \(named pipe\), not a regular file"):
        gx.load(fifo)
    with pytest.raises(gx.GraphFileError, match="is a FIFO"):
        read_header(fifo)


def test_a_directory_is_refused_naming_it(tmp_path):
    with pytest.raises(gx.GraphFileError, match="is a directory, not a regular file"):
        gx.load(tmp_path)


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_a_device_is_refused_naming_it():
    with pytest.raises(gx.GraphFileError, match="is a character device, not a regular file"):
        gx.load("/dev/null")


# ---------------------------------------------------------------------------- declared vs present
def sparse_file(path, nbytes: int) -> None:
    """A valid-looking header declaring one float64 parameter of ``nbytes``, the file extended
    to the declared size without writing the bytes (a hole)."""
    h = msgpack.unpackb(valid()[24:24 + struct.unpack("<Q", valid()[16:24])[0]])
    n = nbytes // 8
    h["params"] = [{"dtype": "float64", "name": "W", "nbytes": 8 * n, "offset": 0, "shape": [n]}]
    h["nodes"], h["outputs"], h["ops"] = [], [], []
    head = raw_header(msgpack.packb(h))
    with open(path, "wb") as f:
        f.write(head + bytes(align(len(head)) - len(head)))
        f.truncate(align(len(head)) + 8 * n)


def test_a_sparse_file_declaring_100_gib_is_refused_before_allocating(tmp_path):
    """It used to raise numpy's MemoryError (or, with overcommit, fill 100 GiB of pages)."""
    import tracemalloc

    path = tmp_path / "sparse.gx"
    sparse_file(path, 100 << 30)
    st = os.stat(path)
    if getattr(st, "st_blocks", st.st_size) * 512 >= st.st_size:
        pytest.skip("this filesystem does not keep holes")
    tracemalloc.start()
    try:
        with pytest.raises(gx.GraphFileError,
                           match=(rf"file is {st.st_size} bytes long but only \d+ bytes are stored on "
                                  r"disk \(a sparse file")):
            gx.load(path)
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
    finally:
        tracemalloc.stop()
    assert read_header(path).params[0].nbytes == 100 << 30  # the header alone is fine (info)


def test_a_small_sparse_file_loads_and_allow_sparse_lifts_the_check(tmp_path):
    from graphexec.fileformat import Limits
    from graphexec.fileformat.codec import _check_stored

    path = tmp_path / "small.gx"
    sparse_file(path, 1 << 20)  # a hole well under the 64 MiB slack: zeros, honestly
    assert gx.load(path).params["W"].shape == (1 << 17,)
    _check_stored(0, 100 << 30, Limits(allow_sparse=True))  # no error
    with pytest.raises(gx.GraphFileError, match=r"limits=Limits\(allow_sparse=True\)"):
        _check_stored(0, 100 << 30, Limits())


# ---------------------------------------------------------------------------- the scan's shortcut
def _outcome(data: bytes) -> tuple[str, str]:
    try:
        return "graph", gx.dumps(gx.loads(data)).hex()
    except gx.GraphexecError as e:
        return type(e).__name__, str(e)


def _without_shortcut(monkeypatch: pytest.MonkeyPatch) -> None:
    from graphexec.fileformat import codec

    monkeypatch.setattr(codec, "passes", lambda raw, **limits: False)


def _schema_nesting(schema: dict, node: dict | None = None) -> int:
    """Arrays and objects nested in a JSON schema, following $ref (ours has no recursion)."""
    node = schema if node is None else node
    if "$ref" in node:
        return _schema_nesting(schema, schema["$defs"][node["$ref"].split("/")[-1]])
    own = 1 if node.get("type") in ("array", "object") else 0
    parts = [node[k] for k in ("items", "additionalProperties") if isinstance(node.get(k), dict)]
    parts += [*node.get("properties", {}).values(), *node.get("patternProperties", {}).values()]
    parts += [s for k in ("anyOf", "oneOf", "allOf") for s in node.get(k, [])]
    return own + max((_schema_nesting(schema, p) for p in parts), default=0)


def test_max_nesting_is_the_deepest_a_valid_header_nests():
    from graphexec.fileformat.schema import HEADERS, MAX_NESTING

    assert max(_schema_nesting(m.model_json_schema()) for m in HEADERS.values()) == MAX_NESTING


def test_a_valid_graph_loads_without_walking_its_bytes(monkeypatch):
    from graphexec.fileformat import codec

    walks = []
    monkeypatch.setattr(codec, "scan", lambda raw, **kw: walks.append(len(raw)))
    g = gx.loads(chain_file(2000))
    assert len(g.nodes) == 2000 and walks == []


def test_the_header_is_validated_in_one_pydantic_call_and_bound_without_one_per_node(monkeypatch):
    """Binding used to validate each node's (empty) attributes with its own pydantic call."""
    import pydantic

    calls = []
    original = pydantic.BaseModel.model_validate.__func__

    def counted(cls, obj, *args, **kw):
        calls.append(cls.__name__)
        return original(cls, obj, *args, **kw)

    monkeypatch.setattr(pydantic.BaseModel, "model_validate", classmethod(counted))
    g = gx.loads(chain_file(2000))
    assert len(g.nodes) == 2000
    assert calls.count("Header") == 1 and len(calls) <= 3, calls[:10]


def test_an_empty_bin_the_decoder_lets_through_is_still_refused_by_the_scan():
    """msgpack's max_bin_len=0 admits a zero-length bin; without the walk it decodes to b''."""
    h, hlen = header_of((MODELS / "add_mul.gx").read_bytes())
    first = dict(h["nodes"][0], attrs={"a": b""})
    for h2, problem in ((dict(h, metadata={"k": b""}), "bin at byte"),
                        (dict(h, nodes=[first, *h["nodes"][1:]]), "bin at byte"),
                        (dict(h, metadata={b"": "v"}), "map key at byte")):
        with pytest.raises(gx.GraphFileError) as info:
            gx.loads(rebuild(h2))
        assert str(info.value).startswith(f"header is not valid msgpack: {problem}")


def test_a_bad_node_deep_in_a_big_graph_is_named_as_before():
    data = chain_file(100_000)
    bad = data.replace(b"\xa6n54321", b"\xa6n5432/", 1)  # its name, as a node and as an input
    with pytest.raises(gx.GraphFileError) as info:
        gx.loads(bad)
    assert str(info.value).startswith("invalid header at nodes.54321.name: String should match "
                                      "pattern")


def test_the_shortcut_never_changes_an_outcome(monkeypatch):
    """Every hostile case, worst-case header and a few hundred mutations of a valid file load
    or fail exactly as they do when every header is walked."""
    import random
    import sys

    sys.path.insert(0, str(ROOT / "fuzz"))
    import mutate
    from test_hostile_corpus import CASES, WORST, header_with

    files = [make() for make, _, _ in CASES.values()]
    files += [header_with(make()) for make in WORST.values()]
    rng = random.Random(17)
    seeds = [(MODELS / name).read_bytes() for name in ("add_mul.gx", "wx_norm.gx")]
    files += [mutate.mutate(rng, rng.choice(seeds))[0] for _ in range(300)]
    fast = [_outcome(f) for f in files]
    _without_shortcut(monkeypatch)
    walked = [_outcome(f) for f in files]
    assert [k for k, _ in fast].count("graph") > 0
    assert fast == walked
