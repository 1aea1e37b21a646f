"""Saving is atomic: a kill at any moment leaves the old file or the new one; a failure leaves the
old file and no temp file; temp files of killed saves are ignored by load and swept by the next
save of the same path once stale."""

from __future__ import annotations

import errno
import os
import random
import signal
import sys
import time

import numpy as np
import pytest

import graphexec as gx
from graphexec.fileformat import atomic

KILLS = 40


def graph(seed: int, n: int = 1024) -> gx.Graph:
    """y = x @ W with W (n, n) float64: 8 MiB of parameters, so a save takes a while."""
    b = gx.GraphBuilder(f"big{seed}", metadata={"version": str(seed)})
    x = b.input("x", shape=(None, n))
    w = b.param("W", np.random.default_rng(seed).standard_normal((n, n)))
    b.output(b.op("matmul", x, w), "y")
    return b.build(check_shapes=False)


def leftovers(folder, target: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != target)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL")
def test_sigkill_during_save_leaves_old_or_new_file(tmp_path):
    old, new = graph(1), graph(2)
    versions = {gx.dumps(old): "old", gx.dumps(new): "new"}
    path = tmp_path / "model.gx"
    gx.save(old, path)
    pattern = atomic.temp_name_pattern(path)
    rng = random.Random(7)
    seen, with_temp = set(), 0
    for _ in range(KILLS):
        pid = os.fork()
        if pid == 0:  # child: save the two versions in turn, forever
            try:
                for i in range(10**6):
                    gx.save(new if i % 2 == 0 else old, path)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.0, 0.12))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        data = path.read_bytes()
        assert data in versions, "a killed save left a file that is neither version"
        seen.add(versions[data])
        assert gx.dumps(gx.load(path)) == data
        rest = leftovers(tmp_path, path.name)
        assert all(pattern.fullmatch(n) for n in rest), rest
        assert len(rest) <= 1  # each save sweeps nothing fresh, and at most one was in flight
        with_temp += bool(rest)
        for n in rest:  # what the next save would sweep once stale; keep each round independent
            os.unlink(tmp_path / n)
    assert seen == {"old", "new"}  # kills landed at different moments of the loop
    assert with_temp > 0           # ... and some in the middle of writing a temp file


def test_next_save_sweeps_stale_temp_files_only(tmp_path):
    path = tmp_path / "m.gx"
    gx.save(graph(1, 8), path)
    stale = tmp_path / ".m.gx.0123456789abcdef.tmp"       # a killed save's leftover
    fresh = tmp_path / ".m.gx.fedcba9876543210.tmp"       # maybe a save in flight elsewhere
    keep = [tmp_path / n for n in (".m.gx.bak.0123456789abcdef.tmp", ".other.gx.0123456789abcdef.tmp",
                                   "m.gx.0123456789abcdef.tmp", ".m.gx.0123456789ABCDEF.tmp")]
    for p in [stale, fresh, *keep]:
        p.write_bytes(b"partial")
    an_hour_ago = time.time() - 3600
    for p in [stale, *keep]:
        os.utime(p, (an_hour_ago, an_hour_ago))
    gx.load(path)  # loading never looks at temp files
    gx.save(graph(2, 8), path)
    assert not stale.exists()
    assert fresh.exists() and all(p.exists() for p in keep)
    assert gx.load(path).metadata == {"version": "2"}


class FullDisk:
    """A file object whose writes fail with ENOSPC after ``room`` bytes."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, b) -> int:
        n = memoryview(b).nbytes
        if n > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= n
        return self.f.write(b)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def fail_first_fsync(real):
    """The first fsync of a save is the temp file's: it fails (EIO), like a dying disk."""
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.EIO, "Input/output error")
        return real(fd)
    return fsync


FAILURES = {
    "disk full": ("fdopen", lambda real: lambda fd, mode: FullDisk(real(fd, mode), 100_000),
                  OSError, "No space left"),
    "disk full at once": ("fdopen", lambda real: lambda fd, mode: FullDisk(real(fd, mode), 0),
                          OSError, "No space left"),
    "replace fails": ("replace", lambda real: lambda a, b: (_ for _ in ()).throw(
        OSError(errno.EACCES, "Permission denied")), OSError, "Permission denied"),
    "replace across devices": ("replace", lambda real: lambda a, b: (_ for _ in ()).throw(
        OSError(errno.EXDEV, "Invalid cross-device link")), OSError, "cross-device"),
    "fsync fails": ("fsync", fail_first_fsync, OSError, "Input/output"),
    "interrupted": ("fdopen", lambda real: lambda fd, mode: (_ for _ in ()).throw(KeyboardInterrupt()),
                    KeyboardInterrupt, None),
    "chmod fails": ("chmod", lambda real: lambda *a, **k: (_ for _ in ()).throw(
        OSError(errno.EPERM, "Operation not permitted")), OSError, "not permitted"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_failed_save_keeps_old_file_and_leaves_no_temp(case, tmp_path, monkeypatch):
    path = tmp_path / "m.gx"
    gx.save(graph(1, 256), path)
    before = path.read_bytes()
    name, make, err, msg = FAILURES[case]
    monkeypatch.setattr(os, name, make(getattr(os, name)))
    with pytest.raises(err, match=msg):
        gx.save(graph(2, 256), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert leftovers(tmp_path, "m.gx") == []
    gx.save(graph(2, 256), path)  # and the next save works
    assert gx.load(path).metadata == {"version": "2"}


def test_first_save_that_fails_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(errno.EIO, "EIO")))
    with pytest.raises(OSError):
        gx.save(graph(1, 8), tmp_path / "new.gx")
    assert list(tmp_path.iterdir()) == []


def test_folder_fsync_failure_does_not_fail_the_save(tmp_path, monkeypatch):
    real = os.fsync
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # the second fsync is the folder's
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    gx.save(graph(1, 8), tmp_path / "m.gx")
    assert len(calls) == 2
    assert gx.load(tmp_path / "m.gx").name == "big1"


def test_unsavable_graph_fails_before_touching_the_folder(tmp_path):
    g = graph(1, 8)
    g.params["W"] = g.params["W"].astype(np.float16)
    with pytest.raises(gx.GraphError, match=r"parameter 'W'.*float16"):
        gx.save(g, tmp_path / "m.gx")
    assert list(tmp_path.iterdir()) == []


def test_save_into_missing_folder_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        gx.save(graph(1, 8), tmp_path / "no" / "such" / "m.gx")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_failed_save_in_read_only_folder_keeps_old_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    path = tmp_path / "m.gx"
    gx.save(graph(1, 8), path)
    before = path.read_bytes()
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            gx.save(graph(2, 8), path)
    finally:
        tmp_path.chmod(0o700)
    assert path.read_bytes() == before


def test_checkpoint_write_failure_during_fit_keeps_previous_checkpoint(tmp_path, monkeypatch):
    """Training checkpoints go through the same atomic save."""
    fit = getattr(gx, "fit", None)
    nn = getattr(gx, "nn", None)
    if fit is None or nn is None:
        pytest.skip("training is not available")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 2)), rng.integers(0, 3, 32)
    ck = tmp_path / "ck.gx"
    fit(nn.mlp([2, 4, 3], seed=0), X, y, epochs=1, batch_size=16, seed=0, checkpoint=str(ck),
        optimizer=gx.optim.SGD(lr=0.1))
    before = ck.read_bytes()
    real = os.replace

    def replace(a, b):
        if os.fspath(b) == os.fspath(ck):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(a, b)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        fit(gx.load(ck), X, y, epochs=3, batch_size=16, seed=0, checkpoint=str(ck), resume=True,
            optimizer=gx.optim.SGD(lr=0.1))
    assert ck.read_bytes() == before
    assert leftovers(tmp_path, "ck.gx") == []
