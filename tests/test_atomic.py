"""The one atomic writer: what a save keeps of the file it replaces (mode, symbolic links), what
it refuses to replace, and errors that name the target and its folder, never the temp file."""

from __future__ import annotations

import errno
import os
import stat
import sys

import numpy as np
import pytest

import graphexec as gx
from graphexec.atomic import atomic_write
from graphexec.cli.main import main

posix = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes, links and FIFOs")


def small(seed: int = 0) -> gx.Graph:
    b = gx.GraphBuilder(f"g{seed}")
    b.output(b.op("mul", b.input("x"), b.param("w", np.array(float(seed)))), "y")
    return b.build()


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@posix
@pytest.mark.parametrize("bits", [0o600, 0o640, 0o444, 0o755])
def test_saving_over_a_file_keeps_its_permission_bits(tmp_path, bits):
    path = tmp_path / "m.gx"
    gx.save(small(1), path)
    os.chmod(path, bits)
    gx.save(small(2), path)
    assert mode(path) == bits
    assert gx.load(path).name == "g2"


@posix
def test_a_new_file_gets_0666_minus_the_umask(tmp_path):
    gx.save(small(), tmp_path / "m.gx")
    assert mode(tmp_path / "m.gx") == 0o666 & ~umask()


@posix
def test_saving_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path):
    real_dir = tmp_path / "store"
    real_dir.mkdir()
    target = real_dir / "real.gx"
    gx.save(small(1), target)
    os.chmod(target, 0o600)
    link = tmp_path / "current.gx"
    link.symlink_to(os.path.join("store", "real.gx"))  # relative, as `ln -s` makes them
    gx.save(small(2), link)
    assert link.is_symlink() and os.readlink(link) == os.path.join("store", "real.gx")
    assert gx.load(target).name == "g2" and mode(target) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current.gx", "store"]
    assert sorted(p.name for p in real_dir.iterdir()) == ["real.gx"]  # temp was beside the target


@posix
def test_a_chain_of_links_and_a_dangling_link_are_followed(tmp_path):
    (tmp_path / "a.gx").symlink_to(tmp_path / "b.gx")
    (tmp_path / "b.gx").symlink_to("c.gx")  # dangling: the save creates c.gx, as open() would
    gx.save(small(3), tmp_path / "a.gx")
    assert not (tmp_path / "c.gx").is_symlink()
    assert gx.load(tmp_path / "a.gx").name == "g3"
    assert (tmp_path / "a.gx").is_symlink() and (tmp_path / "b.gx").is_symlink()


@posix
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to lchown")
def test_another_users_link_in_a_sticky_shared_folder_is_not_followed(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    victim = tmp_path / "victim.gx"
    victim.write_bytes(b"precious")
    link = shared / "m.gx"
    link.symlink_to(victim)
    os.lchown(link, 54321, 54321)  # planted by someone else
    with pytest.raises(PermissionError, match=r"symbolic link of another user \(uid 54321\) in a "
                                              r"shared folder; it is not followed"):
        gx.save(small(), link)
    assert victim.read_bytes() == b"precious" and link.is_symlink()
    os.lchown(link, os.geteuid(), -1)  # our own link there is followed
    gx.save(small(4), link)
    assert gx.load(victim).name == "g4"


@posix
def test_a_symlink_loop_is_refused_in_one_line(tmp_path):
    (tmp_path / "a.gx").symlink_to("b.gx")
    (tmp_path / "b.gx").symlink_to("a.gx")
    with pytest.raises(OSError, match=r"cannot write '.*a\.gx': more than 40 symbolic links") as e:
        gx.save(small(), tmp_path / "a.gx")
    assert e.value.errno == errno.ELOOP


@posix
def test_a_folder_or_fifo_at_the_path_is_refused_not_replaced(tmp_path):
    (tmp_path / "d.gx").mkdir()
    with pytest.raises(IsADirectoryError, match=r"'.*d\.gx': it is a folder, and a save only "
                                                r"replaces a regular file; choose a file name"):
        gx.save(small(), tmp_path / "d.gx")
    os.mkfifo(tmp_path / "p.gx")
    with pytest.raises(FileExistsError, match=r"it is a named pipe \(FIFO\)"):
        gx.save(small(), tmp_path / "p.gx")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "p.gx").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.gx", "p.gx"]


def test_missing_folder_is_named_not_the_temp_file(tmp_path):
    path = tmp_path / "no" / "such" / "m.gx"
    with pytest.raises(FileNotFoundError) as e:
        gx.save(small(), path)
    assert str(e.value) == (f"cannot write {str(path)!r}: the folder {str(path.parent)!r} does not "
                            "exist; create it first, or choose another folder")
    assert e.value.errno == errno.ENOENT


def test_a_file_where_a_folder_should_be_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(NotADirectoryError, match=r"'.*notes\.txt' is not a folder; choose a path "
                                                  r"inside a folder$"):
        gx.save(small(), tmp_path / "notes.txt" / "sub" / "m.gx")


@pytest.mark.parametrize("err, expected", [
    (PermissionError(errno.EACCES, "Permission denied"), "no permission to create files in the folder"),
    (OSError(errno.EROFS, "Read-only file system"), "is on a read-only file system"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "Disk quota exceeded"),
])
def test_a_folder_that_takes_no_new_file_is_named(tmp_path, monkeypatch, err, expected):
    """Simulated, so that it holds for root (who ignores permissions) and any file system."""
    real = os.open

    def fake(p, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise type(err)(err.errno, err.strerror, os.fspath(p))  # as the OS names the temp file
        return real(p, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake)
    with pytest.raises(type(err)) as e:
        atomic_write(tmp_path / "m.gx", [b"data"])
    assert expected in str(e.value) and ".tmp" not in str(e.value)
    assert str(e.value).startswith(f"cannot write {str(tmp_path / 'm.gx')!r}: ")
    assert e.value.errno == err.errno


def test_cli_names_the_missing_folder_in_one_line(tmp_path, capsys):
    src = tmp_path / "m.gx"
    gx.save(small(), src)
    assert main(["draw", str(src), "-o", str(tmp_path / "nowhere" / "m.dot")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: cannot write {str(tmp_path / 'nowhere' / 'm.dot')!r}: the folder "
                   f"{str(tmp_path / 'nowhere')!r} does not exist; create it first, or choose "
                   "another folder\n")


def test_chunks_may_be_any_buffer_and_are_written_whole(tmp_path):
    arr = np.arange(12, dtype="<f8").reshape(3, 4)
    atomic_write(tmp_path / "x.bin", [b"ab", memoryview(arr), b"", memoryview(b"cd")])
    assert (tmp_path / "x.bin").read_bytes() == b"ab" + arr.tobytes() + b"cd"


def test_an_exception_from_the_chunks_leaves_nothing(tmp_path):
    def chunks():
        yield b"part"
        raise ValueError("encoder broke")

    with pytest.raises(ValueError, match="encoder broke"):
        atomic_write(tmp_path / "x.bin", chunks())
    assert list(tmp_path.iterdir()) == []
