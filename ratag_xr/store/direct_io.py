"""Chunk files written past the page cache (``O_DIRECT``), by a background thread, while
the task that encoded them goes on with its next block.

In the read-once path each raw file's chunks are written once and not read again by the
run.  Written through the page cache, every byte is first copied into a page of memory
the system has to find (on a virtual machine, memory the host hands back page by page),
then written back to the disk later: measured on the 2-core VM, 1.2-1.5 s of CPU per
572 MB of chunks.  Written with ``O_DIRECT`` from one reused page-aligned buffer per I/O
thread, the device takes the bytes from that buffer: ~0.1 s of CPU for the same bytes,
at 1.7x the speed (``benchmarks/bench_direct_io.py``, ``benchmarks/README.md``).  The
write then waits for the device instead, so it runs in one of :data:`IO_THREADS`
background threads and the task only waits at the end of its file
(:meth:`DirectWrites.close`), for at most :data:`DEPTH` chunks in flight per task (memory
stays a few chunks per task).

A chunk file is written as before: a temporary file, renamed into place once complete;
its length is the encoded chunk's (the padding to the alignment is truncated away).
Where the system has no ``O_DIRECT`` (macOS, Windows) or a filesystem refuses it
(``EINVAL``: some FUSE and network filesystems), the same bytes are written through the
page cache, and that filesystem is not asked again in this process.

``ingest.direct_io`` (``auto``, ``on``, ``off``) decides who writes this way: ``auto``
the read-once file tasks only (the two-pass path reads the chunks again right after
ingest, from the page cache the writes filled), ``on`` every ingest, ``off`` none.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

#: alignment of an O_DIRECT buffer, offset and length: a page (covers 512-byte and
#: 4 KiB logical blocks)
ALIGN = 4096
#: background threads per process that write chunk files
IO_THREADS = 2
#: chunks a task may have in flight before it waits for the oldest
DEPTH = 2
#: the values of ``ingest.direct_io``
MODES = ("auto", "on", "off")

_FLAG = getattr(os, "O_DIRECT", 0)
_refused: set[int] = set()  # st_dev of filesystems that refused O_DIRECT
_local = threading.local()  # each I/O thread's aligned buffer
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def use_direct(mode: str, read_once: bool) -> bool:
    """Whether chunk files are written with O_DIRECT: ``mode`` is ``ingest.direct_io``,
    ``read_once`` whether the writer is a read-once file task."""
    if mode not in MODES:
        raise ValueError(f"ingest.direct_io must be one of {', '.join(MODES)}, got {mode!r}")
    return bool(_FLAG) and (mode == "on" or (mode == "auto" and read_once))


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="ratag-chunk-io")
        return _pool


def _aligned(n: int) -> mmap.mmap:
    """This thread's page-aligned buffer of at least ``n`` bytes (reused: its pages are
    touched once)."""
    buf = getattr(_local, "buffer", None)
    if buf is None or len(buf) < n:
        if buf is not None:
            buf.close()
        # a quarter more than asked: the next chunks' encoded sizes differ a little
        buf = _local.buffer = mmap.mmap(-1, max(ALIGN, -(-(n + n // 4) // ALIGN) * ALIGN))
    return buf


def write_file(path: Path, data, direct: bool = True) -> None:
    """Write ``data`` (bytes-like) as the new file ``path``: with O_DIRECT where
    ``direct`` and the filesystem takes it, else through the page cache.  A folder removed
    since the writer made it is made again."""
    if direct and _FLAG and _written_direct(path, data):
        return
    try:
        f = open(path, "wb")
    except FileNotFoundError:  # its folder went since the writer made it
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "wb")
    with f:
        f.write(data)


def write_and_rename(tmp: Path, data, target: Path, direct: bool = True) -> None:
    """``data`` written to ``tmp`` (:func:`write_file`), then renamed to ``target``."""
    write_file(tmp, data, direct)
    os.replace(tmp, target)


def _written_direct(path: Path, data) -> bool:
    """``data`` written as the new file ``path`` with O_DIRECT; False (nothing written)
    where its filesystem refuses O_DIRECT or its alignment, which is then not asked again."""
    try:
        dev = os.stat(path.parent).st_dev
    except FileNotFoundError:  # its folder went since the writer made it
        path.parent.mkdir(parents=True, exist_ok=True)
        dev = os.stat(path.parent).st_dev
    if dev in _refused:
        return False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FLAG, 0o666)
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise
        _refused.add(dev)
        return False
    try:
        if _write_aligned(fd, data):
            return True
    finally:
        os.close(fd)
    _refused.add(dev)  # the device wants a larger alignment: page cache from now
    os.unlink(path)
    return False


def _write_aligned(fd: int, data) -> bool:
    """The whole of ``data`` written to ``fd`` (O_DIRECT) from an aligned buffer, the
    padding cut off again; False where the device refused the alignment (nothing kept)."""
    view = memoryview(data).cast("B")
    n = view.nbytes
    padded = -(-n // ALIGN) * ALIGN
    buf = _aligned(padded)
    buf[:n] = view
    buf[n:padded] = bytes(padded - n)
    out = memoryview(buf)[:padded]
    try:
        done = 0
        while done < padded:
            wrote = os.write(fd, out[done:])
            if wrote <= 0 or wrote % ALIGN:
                raise OSError(errno.EIO, "short O_DIRECT write")
            done += wrote
    except OSError as err:
        if err.errno == errno.EINVAL:
            return False
        raise
    finally:
        out.release()
    os.ftruncate(fd, n)
    return True


class DirectWrites:
    """The chunk files of one task, written in the background (see the module doc).

    ``submit(tmp, data, target)`` writes ``data`` to ``tmp`` and renames it to
    ``target``; :meth:`close` (or leaving the ``with`` block) waits for every write and
    raises the first error (an ``OSError`` such as a full disk, as the task's own)."""

    def __init__(self, depth: int = DEPTH):
        self._depth = depth
        self._pending: deque[Future] = deque()

    def submit(self, tmp: Path, data, target: Path) -> None:
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()
        self._pending.append(_executor().submit(write_and_rename, tmp, data, target))

    def close(self) -> None:
        error = None
        while self._pending:
            try:
                self._pending.popleft().result()
            except BaseException as err:  # wait for the others, then raise the first
                error = error or err
        if error is not None:
            raise error

    def __enter__(self) -> DirectWrites:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.close()
            return
        try:  # the block's own error is the one reported; the writes still finish
            self.close()
        except BaseException:
            pass
