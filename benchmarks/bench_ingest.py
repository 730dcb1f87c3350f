"""Ingest throughput on a realistic simulated run, against a plain copy of the same bytes.

Simulates a run in the real format (5 GS/s, -3..35 µs = 190 000 samples per frame) with
int16 and with int8 codes (>= 1 GB each by default), then measures in the same process:

* the baseline: a plain read-and-write copy of every raw file (read into a buffer, write
  to another folder; page cache, no fsync, like ingest);
* ``ratag_xr.ingest`` of the run into a fresh Zarr store on a LocalCluster of 2 workers
  x 1 thread;
* the store's compression ratio, and the peak resident memory of the driver and of each
  worker during ingest (psutil, sampled every 20 ms);
* Blosc codecs on one chunk (single thread), which is how the default codec was chosen.

``--alpha`` makes it a two-channel run (ALGORITHMS.md §11): every PMT file has an alpha
twin (``..._Ch1.wfm`` / ``..._Ch4.wfm``, -1..5 µs = 30 000 samples per frame), both are
copied by the baseline and ingested into one node (``waveform`` and ``alpha_waveform``).

    python benchmarks/bench_ingest.py [--dir DIR] [--gb 1.0] [--dtypes int16 int8] [--alpha]
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil


def simulate(root: Path, dtype: str, gb: float, alpha: bool = False):
    from ratag_xr.simulate import SimConfig, simulate_run

    samples = 190_000 + (30_000 if alpha else 0)  # PMT (+ alpha twin) per trigger
    frame_bytes = samples * np.dtype(dtype).itemsize
    frames_per_file = 200
    files = max(1, math.ceil(gb * 1e9 / frame_bytes / frames_per_file / 4))
    config = SimConfig(sampling_rate_gs=5.0, record_start_us=-3.0, record_end_us=35.0,
                       dtype=dtype, files_per_set=files, frames_per_file=frames_per_file,
                       sets=((200, 1700), (300, 1800), (400, 1900), (500, 2000)),
                       run_name=f"BENCH_{dtype}{'_alpha' if alpha else ''}", alpha=alpha)
    return simulate_run(root, config)


def plain_copy(run_dir: Path, dest: Path) -> tuple[float, int]:
    start, total = time.perf_counter(), 0
    buffer = bytearray(16 * 2**20)
    for src in sorted(run_dir.glob("*/*.wfm")):
        target = dest / src.parent.name / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(src, "rb", buffering=0) as fin, open(target, "wb", buffering=0) as fout:
            view = memoryview(buffer)
            while n := fin.readinto(view):
                fout.write(view[:n])
                total += n
    return time.perf_counter() - start, total


class PeakMemory(threading.Thread):
    """Peak RSS of this process and of each worker process (by pid) while running."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.procs = [psutil.Process()] + [psutil.Process(p) for p in pids]
        self.peak = {p.pid: 0 for p in self.procs}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for p in self.procs:
                try:
                    self.peak[p.pid] = max(self.peak[p.pid], p.memory_info().rss)
                except psutil.Error:
                    pass
            time.sleep(0.02)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def codec_table(store: Path):
    import zarr
    from numcodecs import Blosc

    arr = zarr.open_array(store=str(store), path="axis0/waveform", mode="r")
    chunk = np.ascontiguousarray(arr[0, : arr.chunks[1]])
    rows = []
    for cname in ("zstd", "lz4"):
        for clevel in (1, 3, 5):
            for shuffle, label in ((Blosc.SHUFFLE, "byte"), (Blosc.BITSHUFFLE, "bit")):
                codec = Blosc(cname=cname, clevel=clevel, shuffle=shuffle)
                Blosc.set_nthreads(1) if hasattr(Blosc, "set_nthreads") else None
                t = time.perf_counter()
                enc = codec.encode(chunk)
                t_enc = time.perf_counter() - t
                t = time.perf_counter()
                codec.decode(enc)
                t_dec = time.perf_counter() - t
                rows.append((cname, clevel, label, chunk.nbytes / len(enc),
                             chunk.nbytes / t_enc / 1e6, chunk.nbytes / t_dec / 1e6))
    print(f"  codecs on one chunk ({chunk.shape[0]} frames, {chunk.nbytes / 1e6:.1f} MB, "
          f"{chunk.dtype}), single thread:")
    print("    codec        shuffle   ratio   encode MB/s   decode MB/s")
    for cname, clevel, label, ratio, enc, dec in rows:
        print(f"    {cname:<4} {clevel:<7} {label:<8} {ratio:6.2f} {enc:12.0f} {dec:13.0f}")


def bench(root: Path, dtype: str, gb: float, alpha: bool = False):
    from distributed import Client, LocalCluster

    from ratag_xr.store import ingest

    t = time.perf_counter()
    run_dir = simulate(root, dtype, gb, alpha)
    kind = "two-channel (PMT + alpha twins)" if alpha else "PMT only"
    print(f"{dtype}, {kind}: simulated {du(run_dir) / 1e9:.2f} GB in "
          f"{time.perf_counter() - t:.1f} s ({run_dir})")
    copy_s, nbytes = plain_copy(run_dir, root / f"copy_{run_dir.name}")
    shutil.rmtree(root / f"copy_{run_dir.name}")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        pids = list(client.run(lambda: __import__("os").getpid()).values())
        monitor = PeakMemory(pids)
        monitor.start()
        store = root / f"{run_dir.name}.zarr"
        t = time.perf_counter()
        summary = ingest(run_dir, store, client=client, progress=False)
        ingest_s = time.perf_counter() - t
        monitor.stop.set()
        monitor.join()
    stored = du(store)
    print(f"  plain copy            {nbytes / copy_s / 1e6:8.0f} MB/s  ({copy_s:.2f} s)")
    print(f"  ingest, 2 workers     {nbytes / ingest_s / 1e6:8.0f} MB/s  ({ingest_s:.2f} s, "
          f"{summary.files_written} files, {summary.frames_written} frames)")
    print(f"  ratio ingest / copy   {copy_s / ingest_s:8.2f}  (goal >= 0.25)")
    print(f"  compression ratio     {nbytes / stored:8.2f}  ({stored / 1e6:.0f} MB stored)")
    peaks = list(monitor.peak.values())
    print(f"  peak RSS: driver {peaks[0] / 2**20:.0f} MiB, workers "
          + ", ".join(f"{p / 2**20:.0f} MiB" for p in peaks[1:]))
    codec_table(store)
    shutil.rmtree(run_dir)
    shutil.rmtree(store)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--dtypes", nargs="+", default=["int16", "int8"])
    parser.add_argument("--alpha", action="store_true",
                        help="two-channel run: an alpha twin of every PMT file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"machine: {psutil.cpu_count()} cores, load {psutil.getloadavg()}")
        for dtype in args.dtypes:
            bench(Path(tmp), dtype, args.gb, args.alpha)


if __name__ == "__main__":
    main()
