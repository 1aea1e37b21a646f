"""Atomic file writes, shared by graph files, checkpoints, drawings, plots and ONNX exports.

One writer for every file graphexec produces: the bytes go to a temp file ``.NAME.<16 hex>.tmp``
in the target's folder, which is fsynced and renamed over the target. The target keeps its
permission bits, a symbolic link keeps pointing where it pointed (its target is replaced), and
anything that is not a regular file is refused. The writer holds an exclusive ``flock`` on its
temp file until the rename, so a later save can tell a killed save's leftover (nobody holds its
lock: the kernel drops the locks of a dead process) from a save in flight, and remove it at once.
Errors name the target and what is wrong with its folder, never the temp file.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import suppress

__all__ = ["atomic_write", "remove_stale_temps", "temp_name_pattern", "STALE_TEMP_SECONDS"]

_Flock = Callable[[int, int], None]
try:
    import fcntl

    _FLOCK: _Flock | None = fcntl.flock
    _LOCK, _LOCK_NOW = fcntl.LOCK_EX, fcntl.LOCK_EX | fcntl.LOCK_NB
except ImportError:  # pragma: no cover - Windows: an open file cannot be deleted there anyway
    _FLOCK, _LOCK, _LOCK_NOW = None, 0, 0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()

#: Where a temp file's writer cannot be asked (no ``flock`` on this platform or file system, or
#: the file is empty: its writer may not have locked it yet), a temp file untouched this long
#: counts as abandoned. A live save writes its temp file continuously and renames it right after
#: its fsync, so it is never this old.
STALE_TEMP_SECONDS = 60.0

#: Symbolic links followed from the target before giving up (the kernel's own limit is 40).
MAX_LINKS = 40

_LIVE: set[str] = set()  # temp files this process is writing (fcntl-emulated locks are per process)
_LIVE_LOCK = threading.Lock()


def temp_name_pattern(path: str | os.PathLike[str]) -> re.Pattern[str]:
    """The names of the temp files that saves of ``path`` use: ``.NAME.<16 hex>.tmp``."""
    return re.compile(r"\." + re.escape(os.path.basename(os.fspath(path))) + r"\.[0-9a-f]{16}\.tmp")


def _try_lock(fd: int) -> bool | None:
    """Take an exclusive lock without waiting: True if taken, False if another open file holds
    it, None if this platform or file system has no such locks."""
    if _FLOCK is None:  # pragma: no cover - Windows
        return None
    try:
        _FLOCK(fd, _LOCK_NOW)
    except BlockingIOError:
        return False
    except OSError:  # ENOLCK, EOPNOTSUPP, EINVAL: no locks here
        return None
    return True


def _remove_if_abandoned(path: str, older_than: float) -> bool:
    """Unlink the temp file ``path`` if its writer is gone; True if it was removed."""
    with _LIVE_LOCK:
        if path in _LIVE:
            return False
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        return False
    old = time.time() - st.st_mtime >= older_than
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    try:
        locked = _try_lock(fd)
        if locked is False:  # its writer is alive
            return False
        if (locked is None or st.st_size == 0) and not old:  # unknown, or maybe not locked yet
            return False
        os.unlink(path)  # still holding the lock: no writer can be using it
        return True
    finally:
        os.close(fd)


def remove_stale_temps(path: str | os.PathLike[str], older_than: float = STALE_TEMP_SECONDS) -> list[str]:
    """Delete the temp files that killed saves of ``path`` left beside it; returns their names.

    A temp file is removed when it matches :func:`temp_name_pattern` and its writer is gone: no
    process holds its lock, or (where locks cannot tell, and for an empty file) it has not been
    touched for ``older_than`` seconds. Files this process is writing are never touched.
    """
    target = _resolve(os.fspath(path))
    folder = os.path.dirname(os.path.abspath(target))
    pattern, removed = temp_name_pattern(target), []
    with suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if pattern.fullmatch(entry.name):
                with suppress(OSError):
                    if _remove_if_abandoned(entry.path, older_than):
                        removed.append(entry.name)
    return removed


def _check_link_owner(link: str) -> None:
    """Refuse, as Linux's ``fs.protected_symlinks`` does for ``open``, a link planted by another
    user in a shared sticky folder such as /tmp: following it would overwrite a file of ours."""
    if not hasattr(os, "geteuid"):  # pragma: no cover - Windows
        return
    folder = os.stat(os.path.dirname(os.path.abspath(link)))
    shared = folder.st_mode & stat.S_ISVTX and folder.st_mode & stat.S_IWOTH
    owner = os.lstat(link).st_uid
    if shared and owner not in (os.geteuid(), folder.st_uid):
        raise PermissionError(errno.EACCES, f"{link!r} is a symbolic link of another user (uid "
                              f"{owner}) in a shared folder; it is not followed")


def _resolve(path: str) -> str:
    """``path`` with symbolic links in its last component followed: the file a save replaces."""
    for _ in range(MAX_LINKS):
        try:
            link = os.readlink(path)
        except OSError:  # not a link, or nothing there: the caller's checks say which
            return path
        _check_link_owner(path)
        path = os.path.join(os.path.dirname(path), link)
    raise OSError(errno.ELOOP, f"more than {MAX_LINKS} symbolic links to follow")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"  # pragma: no cover - door, whiteout, ...


def _mode_for(target: str, shown: str, folder: str) -> int:
    """Permission bits for the new file: the replaced file's, or 0666 minus the umask."""
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return 0o666 & ~_UMASK
    except OSError as e:  # the folder cannot be searched, or is not one
        raise _explain(e, shown, folder) from e
    if stat.S_ISREG(st.st_mode):
        return stat.S_IMODE(st.st_mode) & 0o777
    cls = IsADirectoryError if stat.S_ISDIR(st.st_mode) else FileExistsError
    err = cls(f"cannot write {shown}: it is {_kind(st.st_mode)}, and a save only replaces a "
              "regular file; choose a file name")
    err.errno = errno.EISDIR if cls is IsADirectoryError else errno.EEXIST
    raise err


def _folder_problem(e: OSError, folder: str) -> str | None:
    """Why nothing can be created in ``folder``, from the error of creating a file there."""
    if e.errno == errno.ENOENT:
        return f"the folder {folder!r} does not exist; create it first, or choose another folder"
    if e.errno == errno.ENOTDIR:
        p = folder
        while p != os.path.dirname(p) and not os.path.lexists(p):
            p = os.path.dirname(p)
        return f"{p!r} is not a folder; choose a path inside a folder"
    if e.errno in (errno.EACCES, errno.EPERM):
        return (f"no permission to create files in the folder {folder!r} (a save writes a "
                "temporary file beside the target, then renames it); choose a folder you can write")
    if e.errno == errno.EROFS:
        return f"the folder {folder!r} is on a read-only file system; choose another folder"
    return None


def _explain(e: OSError, shown: str, folder: str | None) -> OSError:
    """The same kind of error, saying what is wrong without naming the temp file. ``folder`` is
    given when the error came from creating a file there."""
    reason = _folder_problem(e, folder) if folder is not None else None
    if reason is None:
        reason = e.strerror or str(e)
    err = type(e)(f"cannot write {shown}: {reason}")
    err.errno = e.errno
    return err


def _open_temp(target: str) -> tuple[int, str]:
    """Create and lock a new temp file beside ``target``; it is registered as live."""
    folder = os.path.dirname(os.path.abspath(target))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(folder, f".{os.path.basename(target)}.{secrets.token_hex(8)}.tmp")
        with _LIVE_LOCK:
            _LIVE.add(tmp)
        try:
            fd = os.open(tmp, flags, 0o600)
        except BaseException as e:
            with _LIVE_LOCK:
                _LIVE.discard(tmp)
            if isinstance(e, FileExistsError):  # pragma: no cover - 64 random bits
                continue
            raise
        if _FLOCK is not None:  # held until the fd is closed, after the rename; waits only
            with suppress(OSError):  # while a sweep looks at this new, empty file
                _FLOCK(fd, _LOCK)
        return fd, tmp


def _write_all(fd: int, chunks: Iterable[bytes | memoryview]) -> None:
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        while view.nbytes:
            view = view[os.write(fd, view):]


def _commit(fd: int, tmp: str, target: str, mode: int, chunks: Iterable[bytes | memoryview]) -> None:
    """Fill the temp file, make it durable, give it its mode and rename it over the target."""
    closed = False
    try:
        _write_all(fd, chunks)
        os.fsync(fd)
        os.chmod(tmp, mode)
        if _FLOCK is None:  # pragma: no cover - Windows cannot rename a file that is open
            os.close(fd)
            closed = True
        os.replace(tmp, target)
    finally:
        if not closed:
            os.close(fd)  # releases the lock only now: the temp name no longer exists


def _sync_folder(folder: str) -> None:
    with suppress(OSError):  # make the rename itself durable; not possible on every platform
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def atomic_write(path: str | os.PathLike[str], chunks: Iterable[bytes | memoryview]) -> None:
    """Write ``chunks`` to ``path`` atomically: temp file in the target's folder, fsync, rename
    over the target, fsync the folder.

    A symbolic link at ``path`` is followed (the link stays, the file it points to is replaced);
    an existing file keeps its permission bits, a new one gets 0666 minus the umask; a folder,
    FIFO, device or socket at ``path`` is refused. First, temp files that killed saves of the
    same target left behind are removed (see :func:`remove_stale_temps`).

    A failure (disk full, fsync or rename error, an exception from ``chunks``) leaves the old
    file and no temp file. A kill (SIGKILL, power loss) leaves the old file or the new one, and
    possibly a temp file ``.NAME.<16 hex>.tmp``, which the next save of ``path`` removes.

    Raises:
        OSError: the subclass of the cause (``FileNotFoundError`` for a missing folder,
            ``PermissionError``, ``IsADirectoryError``, ...), with a message that names ``path``
            and says what to do, never the temp file.
    """
    given = os.fspath(path)
    try:
        target = _resolve(given)
    except OSError as e:
        raise _explain(e, repr(given), None) from e
    shown = repr(given) if target == given else f"{given!r} (a link to {target!r})"
    folder = os.path.dirname(os.path.abspath(target))
    mode = _mode_for(target, shown, folder)
    remove_stale_temps(target)
    try:
        fd, tmp = _open_temp(target)
    except OSError as e:
        raise _explain(e, shown, folder) from e
    try:
        _commit(fd, tmp, target, mode, chunks)
    except BaseException as e:
        with suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _explain(e, shown, None) from e
        raise
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(tmp)
    _sync_folder(folder)
