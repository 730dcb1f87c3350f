"""Throughput of the per-frame kernels on one realistic chunk, single thread.

A chunk of ``--frames`` int16 frames in the real format (5 GS/s, −3 µs … 35 µs = 190 000
samples) is simulated in memory with :func:`ratag_xr.simulate.simulate_file_frames`
(baseline, noise, S1, ion S2, X-rays, dark counts).  Pass 1 (pedestal, S2 window
crossings, X-ray classification) runs with the set's t_s1 and time_drift; pass 2 (ion S2
area) with the median S2 window of pass 1, as the pipeline does.  Both are timed warm
(compiled before timing), best of ``--repeats``, and compared with ``numpy.sum`` of the
same array (int16 summed into int64) in the same run.  numba gufuncs and numpy.sum are
single-threaded, so wall-clock MB/s is the per-core figure.  Then both passes from two
threads at once, the gufuncs called directly against the features' block callers (the
interpreter lock held against released).  ``--set KEY=VALUE`` runs the
kernels with a config value other than its default (e.g. the §15 options:
``--set prepare.s2_timing=clean --set xray.max_area_s1=1e5``).

    python benchmarks/bench_kernels.py [--frames 64] [--repeats 7] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import threading

import numpy as np
import xarray as xr
import yaml
from _timing import best_time

from ratag_xr.config import Config
from ratag_xr.driver import KernelRef, call_kernel
from ratag_xr.features import arguments, select
from ratag_xr.kernels import frame_pass1, frame_pass2
from ratag_xr.simulate import SimConfig, simulate_file_frames
from ratag_xr.simulate.physics import set_model
from ratag_xr.vocabulary import XrayOutcome

REAL_FORMAT = dict(sampling_rate_gs=5.0, record_start_us=-3.0, record_end_us=35.0,
                   dtype="int16", sets=((200, 1700),))
GOAL_MB_S = 1000.0
GOAL_RATIO = 0.2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=64, help="frames in the chunk")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config value for the kernels (YAML), e.g. prepare.s2_timing=clean")
    args = ap.parse_args()

    config = SimConfig(files_per_set=1, frames_per_file=args.frames, **REAL_FORMAT)
    raw, _ = simulate_file_frames(config)
    model = set_model(config, 0)
    scale = -config.y_scale_mv  # negative polarity: pulses go down
    t0, dt = config.record_start_us, config.x_spacing_us
    # the declared defaults of every kernel parameter, but those given with --set
    given = dict(item.split("=", 1) for item in args.set)
    defaults = Config().replace({k: yaml.safe_load(v) for k, v in given.items()})

    def kernel_args(feature: str, per_set: dict) -> tuple:
        got = arguments(select([feature]), defaults, xr.Dataset(per_set))[feature]
        return (scale, config.y_offset_mv, t0, dt, *(float(v) for v in got.values()))

    args1 = kernel_args("s2_window_xray", {"t_s1": model.t_s1,
                                           "time_drift": model.time_drift})
    out1 = frame_pass1(raw, *args1)  # warm-up (kernels are compiled or loaded at import)
    window = (np.nanmedian(out1[1]), np.nanmedian(out1[2]))
    args2 = kernel_args("s2_area", {"s2_window_start": window[0],
                                    "s2_window_end": window[1]})
    area = frame_pass2(raw, *args2)

    mb = raw.nbytes / 1e6
    t_pass1 = best_time(lambda: frame_pass1(raw, *args1), args.repeats)
    t_pass2 = best_time(lambda: frame_pass2(raw, *args2), args.repeats)
    t_sum = best_time(lambda: raw.sum(), args.repeats)
    both = t_pass1 + t_pass2
    codes = {o.meaning: int(np.count_nonzero(out1[4] == o)) for o in XrayOutcome}

    if given:
        print("config: " + ", ".join(f"{k} = {v}" for k, v in given.items()))
    print(f"chunk: {raw.shape[0]} frames x {raw.shape[1]} {raw.dtype} samples = {mb:.1f} MB "
          f"(5 GS/s, simulated set gate 200 V: t_s1 {model.t_s1} µs, "
          f"time_drift {model.time_drift:.2f} µs)")
    print(f"  frames with an S2 crossing {np.isfinite(out1[1]).sum()}/{raw.shape[0]}, "
          f"S2 window {window[0]:.2f} .. {window[1]:.2f} µs, "
          f"mean s2_area {np.nanmean(area):.2f} mV·µs")
    print(f"  X-ray outcomes {codes}")
    print(f"  pass 1 (pedestal, S2 crossings, X-ray)  {mb / t_pass1:7.0f} MB/s  "
          f"({t_pass1 / raw.shape[0] * 1e3:.3f} ms per frame)")
    print(f"  pass 2 (S2 area)                        {mb / t_pass2:7.0f} MB/s  "
          f"({t_pass2 / raw.shape[0] * 1e3:.3f} ms per frame)")
    print(f"  pass 1 + pass 2                         {mb / both:7.0f} MB/s per core "
          f"(goal >= {GOAL_MB_S:.0f})")
    print(f"  numpy.sum (int16 -> int64)              {mb / t_sum:7.0f} MB/s")
    print(f"  ratio (pass 1 + pass 2) / numpy.sum      {t_sum / both:6.2f}  "
          f"(goal >= {GOAL_RATIO})")
    print(f"  best of {args.repeats}, single thread, warm")

    # From two threads at once, as the threads of one Dask worker run them: the gufunc
    # called on one chunk holds the interpreter lock; the features' block callers
    # (Feature.frames, what the driver calls) release it.
    kernels = [(KernelRef(f.kernel, f.frames), a, [o.dtype for o in f.outputs])
               for f, a in ((select(["s2_window_xray"])[0], args1),
                            (select(["s2_area"])[0], args2))]

    def chunk(via_block: bool) -> None:
        for ref, a, dtypes in kernels:
            if via_block:
                call_kernel(ref, raw, a, dtypes)
            else:
                ref.kernel(raw, *a)

    print("  two threads, each running passes 1 + 2 over the chunk "
          "(aggregate MB/s, speed-up over one thread):")
    for label, via_block in (("gufunc called directly", False),
                             ("block caller (GIL released)", True)):
        one = best_time(lambda v=via_block: chunk(v), args.repeats)
        two = best_time(lambda v=via_block: _in_threads(lambda: chunk(v), 2), args.repeats)
        print(f"    {label:28s} 1 thread {mb / one:6.0f} MB/s, 2 threads "
              f"{2 * mb / two:6.0f} MB/s ({one * 2 / two:.2f}x)")


def _in_threads(work, n: int) -> None:
    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
