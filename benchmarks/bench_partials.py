"""Per-set histograms of a stored frames part: block by block against numpy on it all.

Writes a frames part of ``--sets`` x ``--frames`` float64 S2 areas and a ``valid`` mask
as the results store keeps it (blocks of FRAME_BLOCK frames, the store's Zarr defaults),
then, best of ``--repeat``:

(a) ``set_histograms`` on the lazily opened part (the stages' way: each block read,
    histogrammed, dropped), and
(b) the baseline: the whole variable and mask loaded, then ``numpy.histogram`` per set.

Prints each one's time, the ratio, and the peak memory each allocated (``tracemalloc``:
numpy's and zarr's buffers are traced).

    python benchmarks/bench_partials.py
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr

from ratag_xr.pipeline.partials import set_histograms
from ratag_xr.pipeline.results import FRAME_BLOCK, frame_blocks

RANGE = (0.0, 4.0, 100)


def _write(folder: Path, n_sets: int, n_frames: int) -> Path:
    rng = np.random.default_rng(1)
    path = folder / "frames.zarr"
    coords = {"set": [f"set{i}" for i in range(n_sets)]}
    ds = xr.Dataset(coords=coords)
    shape, chunks = (n_sets, n_frames), (n_sets, FRAME_BLOCK)
    ds["s2_area"] = (("set", "frame"), da.empty(shape, chunks=chunks), {"units": "mV·µs"})
    ds = ds.assign_coords(valid=(("set", "frame"), da.empty(shape, dtype=bool, chunks=chunks)))
    ds.to_zarr(path, mode="w", zarr_format=3, consolidated=False, compute=False,
               encoding=frame_blocks(ds))  # the arrays' metadata only
    step = 8 * FRAME_BLOCK
    for start in range(0, n_frames, step):  # written in slabs: never all in memory
        stop = min(n_frames, start + step)
        part = xr.Dataset(coords=coords)
        part["s2_area"] = (("set", "frame"), rng.normal(1.5, 0.6, (n_sets, stop - start)))
        part = part.assign_coords(valid=(("set", "frame"),
                                         rng.random((n_sets, stop - start)) < 0.95))
        part.drop_vars("set").to_zarr(path, region={"frame": slice(start, stop)},
                                      zarr_format=3, consolidated=False)
    return path


def _lazy(path: Path) -> np.ndarray:
    ds = xr.open_zarr(path, consolidated=False, chunks={})
    return set_histograms(ds.s2_area, ds.valid, [RANGE] * ds.sizes["set"])


def _loaded(path: Path) -> np.ndarray:
    ds = xr.open_zarr(path, consolidated=False, chunks=None)
    values, valid = ds.s2_area.values, ds.valid.values
    out = np.zeros((values.shape[0], RANGE[2]), dtype=np.int64)
    for i in range(values.shape[0]):
        kept = values[i][valid[i]]
        out[i] = np.histogram(kept[np.isfinite(kept)], bins=RANGE[2], range=RANGE[:2])[0]
    return out


def _measure(fn, path: Path, repeat: int) -> tuple[float, int, np.ndarray]:
    best, peak, result = np.inf, 0, None
    for _ in range(repeat):
        tracemalloc.start()
        t0 = time.perf_counter()
        result = fn(path)
        best = min(best, time.perf_counter() - t0)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return best, peak, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=10)
    parser.add_argument("--frames", type=int, default=2_000_000, help="frames per set")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the temporary part goes")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-partials-", dir=args.dir))
    try:
        path = _write(folder, args.sets, args.frames)
        n = args.sets * args.frames
        values_mb = n * 9 / 1e6  # float64 area + bool mask
        print(f"frames part: {args.sets} sets x {args.frames} frames = {n:.3g} frames, "
              f"{values_mb:.0f} MB of areas and mask in memory; blocks of {FRAME_BLOCK} frames")
        t_lazy, m_lazy, lazy = _measure(_lazy, path, args.repeat)
        t_np, m_np, loaded = _measure(_loaded, path, args.repeat)
        assert np.array_equal(lazy, loaded), "block histograms differ from numpy's"
        print(f"  (a) block by block (set_histograms)  {t_lazy:6.2f} s  peak "
              f"{m_lazy / 2**20:7.1f} MiB allocated")
        print(f"  (b) loaded + numpy.histogram        {t_np:6.2f} s  peak "
              f"{m_np / 2**20:7.1f} MiB allocated")
        print(f"  time ratio (a)/(b) {t_lazy / t_np:.2f}; memory ratio (a)/(b) "
              f"{m_lazy / m_np:.3f}; histograms identical")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
