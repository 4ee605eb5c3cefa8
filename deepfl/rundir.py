"""A run folder's OS lock and its clean-up of half-written files.

Two runs writing one folder interleave their metrics and checkpoints into a result that matches
neither, so a run holds an exclusive ``fcntl.flock`` on ``RUN_DIR/run.lock`` for its whole life and
writes its pid into the file. A second run on the same folder fails at once with ``RUN_DIR is in
use by pid N``. The kernel drops the lock when its process dies, however it dies, so a lock left by
a killed run is never stale: the next run simply takes it over (the leftover file and its old pid
are overwritten). The file itself is never deleted: deleting it would let two processes lock two
different files of the same name.

Atomic writes (``fldata.atomic``) leave ``.NAME.*.tmp`` files behind only when killed mid-write;
:func:`remove_leftover_temps` deletes them once the lock is held (no writer can be active then).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from fldata.cli import InputOutputError, writable_dir

LOCK_NAME = "run.lock"
LOGGER = logging.getLogger("deepfl")
_HELD: dict[Path, int] = {}  # resolved run folder -> nesting depth of hold_run_dir in this process


class RunDirInUse(InputOutputError):
    """Another live process holds the run folder's lock."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _holder_pid(lock_path: Path) -> int | None:
    """The pid written in the lock file by its live holder; waits briefly for a holder still writing
    it.
    """
    for _ in range(20):
        try:
            text = lock_path.read_text().strip()
        except OSError:
            text = ""
        if text.isdigit() and _pid_alive(int(text)):
            return int(text)
        time.sleep(0.05)
    return None


def _acquire(folder: Path) -> int:
    """Open and lock ``folder/run.lock`` without blocking; write our pid. Returns the file
    descriptor.
    """
    lock_path = folder / LOCK_NAME
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise InputOutputError(
            f"cannot open the lock file {lock_path}: {error.strerror or error}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise InputOutputError(f"cannot lock {lock_path}: {error.strerror or error}") from None
        pid = _holder_pid(lock_path)
        raise RunDirInUse(
            f"{folder} is in use by pid {pid if pid is not None else '(unknown)'}"
        ) from None
    previous = os.pread(fd, 32, 0).decode(errors="replace").strip()
    if previous and previous != str(os.getpid()):
        LOGGER.info("taking over %s, left by pid %s (no longer running)", lock_path, previous)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@contextlib.contextmanager
def hold_run_dir(run_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the run folder's lock for the ``with`` block (creating the folder); re-entrant in one
    process.

    Raises :class:`RunDirInUse` at once if another live process holds it, and
    :class:`~fldata.cli.InputOutputError` if the folder cannot be created or written.
    """
    folder = writable_dir(run_dir, "run folder")
    key = folder.resolve()
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield folder
        finally:
            _HELD[key] -= 1
        return
    fd = _acquire(folder)
    _HELD[key] = 1
    try:
        yield folder
    finally:
        del _HELD[key]
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def remove_leftover_temps(folder: Path) -> list[Path]:
    """Delete ``.*.tmp`` files that killed atomic writes left in ``folder``; returns what was
    removed.

    Call only while holding the folder's lock, so no live writer owns one of them.
    """
    removed = []
    for leftover in sorted(folder.glob(".*.tmp")):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed.append(leftover)
    if removed:
        LOGGER.warning(
            "removed %d temporary file(s) left by a killed write in %s: %s",
            len(removed),
            folder,
            ", ".join(path.name for path in removed),
        )
    return removed
