"""Read throughput of the WFM reader against ``numpy.fromfile`` of the same file.

Writes an int16 FastFrame file (default 200 frames x 190 000 samples, 76 MB, no
pre/post-charge, as the oscilloscope records the PMT) and measures, best of ``--repeats``:

(a) ``read_wfm(path).frames()``: header parsing plus all frames as a contiguous array;
(b) ``numpy.fromfile(path, dtype=int16)``: the whole file, no parsing.

Both run on a warm page cache (the file was just written and nothing is dropped), so this
compares the reader's overhead with the cheapest possible read, not disk speed.  A second
pass with 32/32 pre/post-charge points per frame shows the cost of removing them.

    python benchmarks/bench_wfm_read.py [--dir DIR] [--frames N] [--samples N] [--repeats N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ratag_xr.io.wfm import read_wfm
from ratag_xr.io.wfm_writer import WfmWriter


def write_file(path: Path, n_frames: int, n_samples: int, charge: int) -> float:
    """Write the benchmark file block by block; returns the writer's MB/s."""
    rng = np.random.default_rng(0)
    block = rng.integers(-2000, 2000, (20, n_samples), dtype=np.int16)
    t0 = time.perf_counter()
    with WfmWriter(path, n_frames, n_samples, np.int16, y_scale=1e-4, x_spacing=2e-10,
                   x_start=-3e-6, pre_charge=charge, post_charge=charge) as writer:
        for start in range(0, n_frames, len(block)):
            writer.write_frames(block[: min(len(block), n_frames - start)])
    return path.stat().st_size / (time.perf_counter() - t0) / 1e6


def best_seconds(func, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - t0)
        del result
    return best


def read_with_reader(path: Path) -> np.ndarray:
    with read_wfm(path) as wfm:
        return wfm.frames()


def run(directory: Path, n_frames: int, n_samples: int, repeats: int, charge: int) -> float:
    path = directory / f"bench_{n_frames}x{n_samples}_charge{charge}.wfm"
    write_speed = write_file(path, n_frames, n_samples, charge)
    size_mb = path.stat().st_size / 1e6
    data_mb = n_frames * n_samples * 2 / 1e6
    # both sides are checked once, outside the timing
    codes = read_with_reader(path)
    assert codes.shape == (n_frames, n_samples) and codes.flags.c_contiguous
    t_reader = best_seconds(lambda: read_with_reader(path), repeats)
    t_fromfile = best_seconds(lambda: np.fromfile(path, dtype=np.int16), repeats)
    reader = data_mb / t_reader
    fromfile = size_mb / t_fromfile
    print(f"file {path.name}: {size_mb:.1f} MB ({n_frames} frames x {n_samples} int16, "
          f"pre/post-charge {charge}/{charge}), written at {write_speed:.0f} MB/s")
    print(f"  (a) read_wfm(p).frames()  {reader:8.0f} MB/s of frame data  "
          f"(best of {repeats}: {t_reader * 1e3:.1f} ms)")
    print(f"  (b) numpy.fromfile        {fromfile:8.0f} MB/s of file      "
          f"(best of {repeats}: {t_fromfile * 1e3:.1f} ms)")
    print(f"  ratio reader / fromfile   {reader / fromfile:8.2f}  (goal >= 0.8)")
    path.unlink()
    return reader / fromfile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="folder for the test file")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--samples", type=int, default=190_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print("warm-cache comparison: the file is read right after being written, nothing dropped")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for charge in (0, 32):
            run(Path(tmp), args.frames, args.samples, args.repeats, charge)


if __name__ == "__main__":
    main()
