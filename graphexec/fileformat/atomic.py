"""Atomic file writes, shared by graph files, checkpoints, drawings and exports."""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterable
from contextlib import suppress

__all__ = ["atomic_write", "remove_stale_temps", "temp_name_pattern", "STALE_TEMP_SECONDS"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


#: A temp file of a save that was killed (SIGKILL, power loss) and left untouched this long is
#: removed by the next save of the same path. A live save rewrites its temp file continuously and
#: renames it right after its fsync, so it is never this old.
STALE_TEMP_SECONDS = 60.0


def temp_name_pattern(path: str | os.PathLike[str]) -> re.Pattern[str]:
    """The names of the temp files that saves of ``path`` use: ``.NAME.<16 hex>.tmp``."""
    return re.compile(r"\." + re.escape(os.path.basename(os.fspath(path))) + r"\.[0-9a-f]{16}\.tmp")


def remove_stale_temps(path: str | os.PathLike[str], older_than: float = STALE_TEMP_SECONDS) -> list[str]:
    """Delete temp files left beside ``path`` by killed saves; returns the names removed."""
    folder = os.path.dirname(os.path.abspath(path))
    pattern, now, removed = temp_name_pattern(path), time.time(), []
    with suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if not pattern.fullmatch(entry.name):
                continue
            with suppress(OSError):
                if entry.is_file(follow_symlinks=False) and \
                        now - entry.stat(follow_symlinks=False).st_mtime >= older_than:
                    os.unlink(entry.path)
                    removed.append(entry.name)
    return removed


def _open_temp(path: str) -> tuple[int, str]:
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(8)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                           0o600), tmp
        except FileExistsError:  # pragma: no cover - 64 random bits
            continue


def atomic_write(path: str | os.PathLike[str], chunks: Iterable[bytes | memoryview]) -> None:
    """Write ``chunks`` to ``path`` atomically: temp file in the same folder, fsync, rename over
    ``path``, fsync the folder; the file gets normal permissions (0666 minus the umask).

    A failure (disk full, fsync or rename error) leaves the old file and no temp file. A kill
    (SIGKILL, power loss) leaves the old file or the new one, and possibly a temp file
    ``.NAME.<16 hex>.tmp``, which the next save of ``path`` removes once it is stale.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    remove_stale_temps(path)
    fd, tmp = _open_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    with suppress(OSError):  # make the rename itself durable; not possible on every platform
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
