"""One writer per output folder: an advisory lock held for a whole command.

``OUT/.ratag_xr.lock`` is locked with :func:`fcntl.flock`.  The operating system drops the
lock when its holder exits, however it exits (kill -9 included), so a stale lock never
blocks; the file itself stays and only records who held it last (pid, command, start
time) for the message a second command prints.

A second command on the same folder waits for the first to finish, saying so once
(``wait=False``: it refuses at once with a :class:`~ratag_xr.errors.BusyError`).  Within
one process the lock is re-entrant: a stage function called by the runner does not wait
for the runner.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ratag_xr.errors import BusyError, OutputError

LOCK_NAME = ".ratag_xr.lock"

_held: dict[Path, int] = {}  # lock file -> depth of nested holds in this process
_guard = threading.Lock()


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def writable_folder(folder: Path, what: str = "output folder") -> Path:
    """Create ``folder`` if needed; an :class:`OutputError` when that is impossible."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{folder}: the {what} exists and is not a folder") from None
    except OSError as err:
        raise OutputError(f"{folder}: cannot create the {what}: {err.strerror}; "
                          "choose another with --out") from None
    return folder


def _open_lock(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise OutputError(f"{path.parent}: cannot write into the output folder "
                              f"({err.strerror}); put the outputs elsewhere with --out") from None
        raise


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode("utf-8", "replace").strip()
    except OSError:
        return "another ratag-xr command"
    return text or "another ratag-xr command"


@contextlib.contextmanager
def output_lock(out: str | Path, *, wait: bool = True,
                say: Callable[[str], None] = _say) -> Iterator[Path]:
    """Hold the lock of the output folder ``out`` (created if needed) for the block."""
    folder = writable_folder(Path(out))
    path = (folder / LOCK_NAME).resolve()
    with _guard:
        if path in _held:
            _held[path] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield folder
        finally:
            with _guard:
                _held[path] -= 1
        return
    fd = _open_lock(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                raise BusyError(f"{folder}: another ratag-xr command is writing here "
                                f"({holder}); wait for it or drop --no-wait") from None
            say(f"ratag-xr: waiting for {holder} to finish with {folder} ...")
            t0 = time.monotonic()
            fcntl.flock(fd, fcntl.LOCK_EX)
            say(f"ratag-xr: waited {time.monotonic() - t0:.1f} s; going on")
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:3]]) if sys.argv else "python"
        me = f"pid {os.getpid()} ({command}, since {time.strftime('%H:%M:%S')})"
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, me.encode() + b"\n", 0)
        with _guard:
            _held[path] = 1
        try:
            yield folder
        finally:
            with _guard:
                _held.pop(path, None)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
