"""Chunk files written through the page cache against past it (ingest.direct_io).

Writes ``--chunks`` new files of ``--mb`` MB each (the size of one Blosc-encoded chunk of
the real format: 24 frames x 190 000 int16 samples, ~6.5 MB at lz4 + bit shuffle) from
``--threads`` threads, into a fresh folder, three ways, alternating ``--repeat`` times:

- ``page cache``: ``open(.., "wb").write`` (the baseline: what the two-pass ingest does);
- ``direct``: :func:`ratag_xr.store.direct_io.write_file` (O_DIRECT from an aligned buffer);
- ``direct, background``: each thread submits its files to a
  :class:`~ratag_xr.store.direct_io.DirectWrites` (as a read-once file task does).

Prints wall time, MB/s and the process's CPU time (user + system) per way, and the
ratios against the page-cache baseline.  Before each way the previous files are deleted
and written back (``os.sync``), then ``--settle`` seconds pass (3: a command's start-up,
while the system hands the memory those files held back to the host; 0: the files are
written into pages freed a moment before, which is cheaper).

    python benchmarks/bench_direct_io.py [--dir DIR] [--chunks 88] [--mb 6.5] [--threads 2]
                                         [--settle 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ratag_xr.store.direct_io import DirectWrites, write_file


def page_cache(path: Path, data: bytes, _writes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def direct(path: Path, data: bytes, _writes) -> None:
    write_file(path, data)


def background(path: Path, data: bytes, writes: DirectWrites) -> None:
    writes.submit(path.with_name(path.name + ".partial"), data, path)


WAYS = {"page cache": page_cache, "direct": direct, "direct, background": background}


def one(way, folder: Path, data: bytes, chunks: int, threads: int, settle: float
        ) -> tuple[float, float]:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.sync()
    time.sleep(settle)

    def work(k: int) -> None:
        with DirectWrites() as writes:
            for i in range(k, chunks, threads):
                way(folder / f"c{i}", data, writes)

    cpu0, t0 = os.times(), time.perf_counter()
    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall, cpu1 = time.perf_counter() - t0, os.times()
    return wall, (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, help="where to write (default: a temporary dir)")
    ap.add_argument("--chunks", type=int, default=88)
    ap.add_argument("--mb", type=float, default=6.5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds between deleting the previous files and writing (a run's "
                         "start-up: the memory they freed is handed back meanwhile)")
    args = ap.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="ratag-direct-"))
    data = np.random.default_rng(0).integers(0, 256, int(args.mb * 1e6), np.uint8).tobytes()
    total = args.chunks * len(data) / 1e6
    got: dict[str, list[tuple[float, float]]] = {w: [] for w in WAYS}
    try:
        for _ in range(args.repeat):
            for name, way in WAYS.items():
                got[name].append(one(way, base / "out", data, args.chunks, args.threads,
                                      args.settle))
    finally:
        shutil.rmtree(base / "out", ignore_errors=True)
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    print(f"{args.chunks} new files x {args.mb} MB = {total:.0f} MB from {args.threads} "
          f"thread(s), {args.settle:g} s after the previous ones were deleted, median of "
          f"{args.repeat}:")
    wall0 = statistics.median(w for w, _ in got["page cache"])
    cpu0 = statistics.median(c for _, c in got["page cache"])
    for name, runs in got.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"  {name:20s} {wall:6.3f} s  {total / wall:6.0f} MB/s  CPU {cpu:5.2f} s   "
              f"x{wall0 / wall:4.2f} speed, x{cpu / cpu0:4.2f} CPU of the page cache")


if __name__ == "__main__":
    main()
