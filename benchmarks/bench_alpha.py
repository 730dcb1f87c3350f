"""Throughput of the alpha-energy kernel (ALGORITHMS.md §12) on realistic frames, one thread.

A chunk of ``--frames`` int16 alpha-channel frames of ``--samples`` samples is made in
memory: baseline (a few mV off zero), Gaussian noise (~20 mV), one alpha pulse per frame
(4.5–9 V, fast rise, slow decay, at a random time) in a ±10 V range (0.305 mV per code).
Three ways to get the same per-frame numbers are timed warm, best of ``--repeats``:

* ``frame_alpha_energy`` (the kernel, compiled before timing);
* ``numpy.sum`` of the same array (int16 summed into int64) and ``numpy.max`` along time:
  the cost of merely reading the chunk;
* the scipy route of the reference: volts, baseline per frame, ``savgol_filter(v, 501, 3)``
  along time (applied to the whole 2-D chunk at once, its fastest form), maximum.  It is
  timed on the first ``--scipy-frames`` frames only (it is slow) and reported per MB.

numba gufuncs, numpy reductions and ``savgol_filter`` run on one thread, so wall-clock
MB/s of raw input is the per-core figure.  The kernel's and scipy's energies are compared.

    python benchmarks/bench_alpha.py [--frames 300] [--samples 20000 50000] [--repeats 7]
"""

from __future__ import annotations

import argparse

import numpy as np
from _timing import best_time
from scipy.signal import savgol_filter

from ratag_xr.kernels.alpha import frame_alpha_energy

SCALE_MV = 20000.0 / 65536  # ±10 V in int16 codes
THRESHOLD_MV, WINDOW, SCA = 300.0, 501, 1.058
GOAL_MB_S = 1000.0
GOAL_VS_SCIPY = 50.0


def alpha_chunk(n_frames: int, n_samples: int, seed: int = 0):
    """int16 frames (codes) with one alpha pulse each, and the pulse heights (V)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples, dtype=np.float32)
    raw = np.empty((n_frames, n_samples), np.int16)
    heights = rng.uniform(4500.0, 9000.0, n_frames)  # mV
    for f in range(n_frames):
        mv = rng.normal(rng.uniform(-5.0, 5.0), 20.0, n_samples).astype(np.float32)
        x = t - rng.uniform(0.1, 0.6) * n_samples
        rise, decay = rng.uniform(20.0, 80.0), rng.uniform(0.2, 0.5) * n_samples
        pulse = np.where(x < 0, np.exp(-0.5 * (x / rise) ** 2), np.exp(-x / decay))
        mv += np.float32(heights[f]) * pulse.astype(np.float32)
        raw[f] = np.clip(np.round(mv / SCALE_MV), -32768, 32767)
    return raw, heights / 1000.0


def scipy_route(raw):
    """§12 with numpy and scipy for a 2-D chunk: baseline, savgol_filter, max / SCA."""
    v = raw.astype(np.float64) * SCALE_MV / 1000.0  # V
    below = v < THRESHOLD_MV / 1000.0
    n_below = below.sum(axis=-1)
    mean_below = np.where(below, v, 0.0).sum(axis=-1) / np.maximum(n_below, 1)
    baseline = np.where(n_below >= 10, mean_below, np.median(v[:, :200], axis=-1))
    smooth = savgol_filter(v - baseline[:, None], WINDOW, 3, axis=-1)
    return smooth.max(axis=-1) / SCA


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300, help="frames in the chunk")
    ap.add_argument("--samples", type=int, nargs="+", default=[20000, 50000])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--scipy-frames", type=int, default=30)
    args = ap.parse_args()

    params = (SCALE_MV, 0.0, 0.0, 8e-4, THRESHOLD_MV, float(WINDOW), SCA)
    for n_samples in args.samples:
        raw, heights = alpha_chunk(args.frames, n_samples)
        mb = raw.nbytes / 1e6
        energy = frame_alpha_energy(raw, *params)  # warm-up (compiled or loaded at import)
        sub = raw[:args.scipy_frames]
        expected = scipy_route(sub)
        t_kernel = best_time(lambda raw=raw: frame_alpha_energy(raw, *params), args.repeats)
        t_sum = best_time(lambda raw=raw: raw.sum(), args.repeats)
        t_max = best_time(lambda raw=raw: raw.max(axis=-1), args.repeats)
        t_scipy = best_time(lambda sub=sub: scipy_route(sub), max(1, args.repeats // 3))
        mb_scipy = sub.nbytes / 1e6
        rel = np.max(np.abs(energy[:sub.shape[0]] / expected - 1.0))
        k, s, x, sp = mb / t_kernel, mb / t_sum, mb / t_max, mb_scipy / t_scipy

        print(f"chunk: {raw.shape[0]} frames x {n_samples} int16 samples = {mb:.1f} MB, "
              f"savgol window {WINDOW}, pulses {heights.min():.1f}-{heights.max():.1f} V")
        print(f"  frame_alpha_energy                {k:8.0f} MB/s per core "
              f"({t_kernel / raw.shape[0] * 1e3:.3f} ms per frame; goal >= {GOAL_MB_S:.0f})")
        print(f"  numpy.sum (int16 -> int64)        {s:8.0f} MB/s   ratio kernel / sum "
              f"{k / s:5.2f}")
        print(f"  numpy.max along time              {x:8.0f} MB/s   ratio kernel / max "
              f"{k / x:5.2f}")
        print(f"  scipy savgol_filter route         {sp:8.1f} MB/s   ratio kernel / scipy "
              f"{k / sp:5.0f}  (goal >= {GOAL_VS_SCIPY:.0f}; {sub.shape[0]} frames)")
        print(f"  kernel vs scipy energies: max relative difference {rel:.1e}; "
              f"mean energy {np.mean(energy):.3f} SCA-scale MeV")
    print(f"  best of {args.repeats} (scipy: best of {max(1, args.repeats // 3)}), "
          "single thread, warm")


if __name__ == "__main__":
    main()
