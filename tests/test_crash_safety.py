"""Saving is atomic: a kill at any point of a save leaves the old file or the new one; a failure
leaves the old file and no temp file; the temp file of a killed save is ignored by load and
removed by the next save of the same path, while a save in flight keeps its own.

Kills are deterministic: a forked child saves with one os function replaced by one that kills
the child (SIGKILL, so no cleanup runs) at a chosen call, before or after the real call."""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

import graphexec as gx
from graphexec import atomic

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL")


def graph(seed: int, n: int = 256) -> gx.Graph:
    """y = x @ W with W (n, n) float64 (512 KiB at the default n)."""
    b = gx.GraphBuilder(f"big{seed}", metadata={"version": str(seed)})
    x = b.input("x", shape=(None, n))
    w = b.param("W", np.random.default_rng(seed).standard_normal((n, n)))
    b.output(b.op("matmul", x, w), "y")
    return b.build(check_shapes=False)


def leftovers(folder, target: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != target)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def killer(name: str, call: int, after: bool):
    """A replacement for ``os.<name>`` that kills the process at its ``call``-th use (1-based),
    before the real call or right after it."""
    real, count = getattr(os, name), [0]

    def fake(*args, **kwargs):
        count[0] += 1
        if count[0] == call and not after:
            die()
        result = real(*args, **kwargs)
        if count[0] == call:
            die()
        return result
    return fake


def write_then_die(written: int):
    """A replacement for ``os.write`` that writes until ``written`` bytes of the save are on
    disk (cutting a chunk in the middle if need be), then kills the process."""
    real, total = os.write, [0]

    def fake(fd, data):
        room = written - total[0]
        view = memoryview(data).cast("B")[:room]
        n = real(fd, view) if view.nbytes else 0
        total[0] += n
        if total[0] >= written:
            die()
        return n
    return fake


def creating_temp_dies():
    real = os.open

    def fake(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and os.path.basename(os.fspath(path)).endswith(".tmp"):
            die()
        return real(path, flags, *args, **kwargs)
    return fake


SIZE = len(gx.dumps(graph(2)))

#: point of the save -> (what replaces which os function, the version on disk after the kill)
KILL_POINTS = {
    "before the temp file is created": (lambda: ("open", creating_temp_dies()), "old"),
    "temp file created, nothing written": (lambda: ("write", killer("write", 1, False)), "old"),
    "1 byte written": (lambda: ("write", write_then_die(1)), "old"),
    "in the middle of the header": (lambda: ("write", write_then_die(40)), "old"),
    "in the middle of the parameter": (lambda: ("write", write_then_die(SIZE // 2)), "old"),
    "all but the last byte written": (lambda: ("write", write_then_die(SIZE - 1)), "old"),
    "all written, before the fsync": (lambda: ("fsync", killer("fsync", 1, False)), "old"),
    "after the fsync, before the chmod": (lambda: ("chmod", killer("chmod", 1, False)), "old"),
    "after the chmod, before the rename": (lambda: ("replace", killer("replace", 1, False)), "old"),
    "right after the rename": (lambda: ("replace", killer("replace", 1, True)), "new"),
    "after the folder's fsync": (lambda: ("fsync", killer("fsync", 2, True)), "new"),
}


def save_killed(g: gx.Graph, path, point: str) -> None:
    """Fork a child that saves ``g`` to ``path`` and is killed at ``point``."""
    make, _ = KILL_POINTS[point]
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            name, fake = make()
            setattr(os, name, fake)
            gx.save(g, path)
        finally:
            os._exit(3)  # reached only if the kill did not happen
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, \
        f"the save was not killed at {point!r} (status {status})"


@needs_fork
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_at_each_point_of_a_save_leaves_old_or_new_file(point, tmp_path):
    old, new = graph(1), graph(2)
    versions = {gx.dumps(old): "old", gx.dumps(new): "new"}
    path = tmp_path / "model.gx"
    gx.save(old, path)
    save_killed(new, path, point)
    data = path.read_bytes()
    assert versions.get(data) == KILL_POINTS[point][1]
    assert gx.dumps(gx.load(path)) == data  # loading never looks at the temp file
    rest = leftovers(tmp_path, path.name)
    pattern = atomic.temp_name_pattern(path)
    assert all(pattern.fullmatch(n) for n in rest), rest
    killed_while_writing = KILL_POINTS[point][1] == "old" and point != "before the temp file is created"
    assert len(rest) == killed_while_writing
    gx.save(old, path)  # the next save removes a killed save's non-empty temp file at once
    kept = leftovers(tmp_path, path.name)
    if point == "temp file created, nothing written":
        assert kept == rest  # empty: its writer may not have locked it yet, so it waits for its age
    else:
        assert kept == []
    assert path.read_bytes() == gx.dumps(old)


def hold_temp_in_child(path, name: str, content: bytes = b"partial"):
    """A child process that writes and locks a temp file the way a save in flight does; returns
    its pid and a pipe end that releases it when closed."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(go_w)  # else the child's own copy keeps the pipe open
            os.close(ready_r)
            fd = os.open(path.parent / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            atomic._try_lock(fd)
            os.write(fd, content)
            os.write(ready_w, b"x")
            os.read(go_r, 1)  # until the parent closes go_w
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(go_r)
    assert os.read(ready_r, 1) == b"x"
    os.close(ready_r)
    return pid, go_w


@needs_fork
@pytest.mark.parametrize("content", [b"partial", b""], ids=["written", "empty"])
def test_a_save_in_flight_in_another_process_keeps_its_temp_file(tmp_path, content):
    path = tmp_path / "m.gx"
    name = ".m.gx.0123456789abcdef.tmp"
    pid, release = hold_temp_in_child(path, name, content)
    try:
        os.utime(tmp_path / name, (time.time() - 3600,) * 2)  # however old it looks
        gx.save(graph(1, 8), path)
        assert (tmp_path / name).exists()  # locked: its writer is alive
    finally:
        os.close(release)
        os.waitpid(pid, 0)
    gx.save(graph(2, 8), path)  # the writer is gone: its lock went with it
    assert leftovers(tmp_path, "m.gx") == []


def test_next_save_sweeps_only_abandoned_temp_files_of_the_same_target(tmp_path):
    path = tmp_path / "m.gx"
    gx.save(graph(1, 8), path)
    stale = tmp_path / ".m.gx.0123456789abcdef.tmp"       # a killed save's leftover
    empty_old = tmp_path / ".m.gx.1111111111111111.tmp"   # killed right after creating it
    empty_new = tmp_path / ".m.gx.2222222222222222.tmp"   # maybe a writer about to lock it
    keep = [tmp_path / n for n in (".m.gx.bak.0123456789abcdef.tmp", ".other.gx.0123456789abcdef.tmp",
                                   "m.gx.0123456789abcdef.tmp", ".m.gx.0123456789ABCDEF.tmp")]
    for p in [stale, *keep]:
        p.write_bytes(b"partial")
    for p in (empty_old, empty_new):
        p.write_bytes(b"")
    an_hour_ago = time.time() - 3600
    for p in [*keep, empty_old]:
        os.utime(p, (an_hour_ago, an_hour_ago))
    os.mkdir(tmp_path / ".m.gx.3333333333333333.tmp")  # not a file: never touched
    gx.load(path)  # loading never looks at temp files
    gx.save(graph(2, 8), path)
    assert not stale.exists() and not empty_old.exists()
    assert empty_new.exists() and all(p.exists() for p in keep)
    assert (tmp_path / ".m.gx.3333333333333333.tmp").is_dir()
    assert gx.load(path).metadata == {"version": "2"}


def test_without_locks_temp_files_are_swept_by_age_and_never_our_own(tmp_path, monkeypatch):
    """Where flock is missing (Windows, some network file systems) only age tells; a save never
    removes the temp file this process is writing, however old it looks."""
    monkeypatch.setattr(atomic, "_FLOCK", None)
    path = tmp_path / "m.gx"
    old_one, fresh = tmp_path / ".m.gx.0123456789abcdef.tmp", tmp_path / ".m.gx.fedcba9876543210.tmp"
    for p in (old_one, fresh):
        p.write_bytes(b"partial")
    os.utime(old_one, (time.time() - 3600,) * 2)
    seen: list[list[str]] = []

    def chunks():
        yield b"first half, "
        (ours,) = [p for p in leftovers(tmp_path, "m.gx") if p not in (old_one.name, fresh.name)]
        os.utime(tmp_path / ours, (time.time() - 3600,) * 2)
        seen.append(atomic.remove_stale_temps(path))  # as another thread's save would
        yield b"second half"

    atomic.atomic_write(path, chunks())
    assert seen == [[]]
    assert path.read_bytes() == b"first half, second half"
    assert sorted(leftovers(tmp_path, "m.gx")) == [fresh.name]


def test_saves_of_one_path_from_many_threads_never_remove_each_others_temp_files(tmp_path):
    path = tmp_path / "m.gx"
    graphs = [graph(i, 32) for i in range(4)]
    versions = {gx.dumps(g) for g in graphs}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(10):
                gx.save(graphs[i], path)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert path.read_bytes() in versions
    assert leftovers(tmp_path, "m.gx") == []


def full_disk(room: int):
    """A replacement for ``os.write`` that fails with ENOSPC once ``room`` bytes are written."""
    real, left = os.write, [room]

    def write(fd, data):
        n = memoryview(data).nbytes
        if n > left[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        left[0] -= n
        return real(fd, data)
    return write


def fail_first_fsync(real):
    """The first fsync of a save is the temp file's: it fails (EIO), like a dying disk."""
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.EIO, "Input/output error")
        return real(fd)
    return fsync


def raising(exc: BaseException):
    def fake(*args, **kwargs):
        raise exc
    return lambda real: fake


FAILURES = {
    "disk full": ("write", lambda real: full_disk(100_000), OSError, "No space left"),
    "disk full at once": ("write", lambda real: full_disk(0), OSError, "No space left"),
    "replace fails": ("replace", raising(OSError(errno.EACCES, "Permission denied")), OSError,
                      "Permission denied"),
    "replace across devices": ("replace", raising(OSError(errno.EXDEV, "Invalid cross-device link")),
                               OSError, "cross-device"),
    "fsync fails": ("fsync", fail_first_fsync, OSError, "Input/output"),
    "interrupted": ("write", raising(KeyboardInterrupt()), KeyboardInterrupt, None),
    "chmod fails": ("chmod", raising(OSError(errno.EPERM, "Operation not permitted")), OSError,
                    "not permitted"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_failed_save_keeps_old_file_and_leaves_no_temp(case, tmp_path, monkeypatch):
    path = tmp_path / "m.gx"
    gx.save(graph(1), path)
    before = path.read_bytes()
    name, make, err, msg = FAILURES[case]
    monkeypatch.setattr(os, name, make(getattr(os, name)))
    with pytest.raises(err, match=msg) as info:
        gx.save(graph(2), path)
    monkeypatch.undo()
    if err is OSError:  # the message names the target, never the temp file
        assert str(info.value).startswith(f"cannot write {str(path)!r}: ")
        assert ".tmp" not in str(info.value)
    assert path.read_bytes() == before
    assert leftovers(tmp_path, "m.gx") == []
    gx.save(graph(2), path)  # and the next save works
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
    g.params["W"] = g.params["W"].astype(np.complex64)
    with pytest.raises(gx.GraphError, match=r"parameter 'W'.*complex64"):
        gx.save(g, tmp_path / "m.gx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_failed_save_in_read_only_folder_keeps_old_file(tmp_path, monkeypatch):
    """A folder where no file can be created (here simulated, so that it holds for root too)."""
    path = tmp_path / "m.gx"
    gx.save(graph(1, 8), path)
    before = path.read_bytes()
    real = os.open

    def no_create(p, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(p))
        return real(p, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_create)
    with pytest.raises(PermissionError, match="no permission to create files in the folder"):
        gx.save(graph(2, 8), path)
    monkeypatch.undo()
    assert path.read_bytes() == before


def test_checkpoint_write_failure_during_fit_keeps_previous_checkpoint(tmp_path, monkeypatch):
    """Training checkpoints go through the same atomic save."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 2)), rng.integers(0, 3, 32)
    ck = tmp_path / "ck.gx"
    gx.fit(gx.nn.mlp([2, 4, 3], seed=0), X, y, epochs=1, batch_size=16, seed=0, checkpoint=str(ck),
           optimizer=gx.optim.SGD(lr=0.1))
    before = ck.read_bytes()
    real = os.replace

    def replace(a, b):
        if os.fspath(b) == os.fspath(ck):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(a, b)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        gx.fit(gx.load(ck), X, y, epochs=3, batch_size=16, seed=0, checkpoint=str(ck), resume=True,
               optimizer=gx.optim.SGD(lr=0.1))
    assert ck.read_bytes() == before
    assert leftovers(tmp_path, "ck.gx") == []
