"""Throughput of the run simulator at the real data format (5 GS/s, int16, 190 000 samples).

Writes one set of ``--files`` FastFrame files of ``--frames`` frames each (default 2 x 400
frames, 304 MB) into a temporary directory with :func:`ratag_xr.simulate.simulate_run` and
prints MB/s of written file per core.  The simulator is single-threaded (numpy random
numbers, one numba kernel, the writer), so wall-clock MB/s is the per-core figure; the
process CPU time is printed too.  A tiny run first compiles/loads the numba kernel so that
compilation is not timed.

    python benchmarks/bench_simulate.py [--frames 400] [--files 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ratag_xr.simulate import FileSimulation, SimConfig, simulate_run

REAL_FORMAT = dict(
    sampling_rate_gs=5.0, record_start_us=-3.0, record_end_us=35.0, dtype="int16",
    sets=((200, 1700),),
)


def _stage_times(config: SimConfig) -> dict[str, float]:
    """Seconds per frame spent in the draws, the noise, the render (one 32-frame block)."""
    t0 = time.perf_counter()
    sim = FileSimulation(config, 0, 0)
    t1 = time.perf_counter()
    scratch = np.empty((32, config.n_samples), dtype=np.float32)
    rng = np.random.default_rng(0)
    for row in scratch:
        rng.standard_normal(dtype=np.float32, out=row)
    t2 = time.perf_counter()
    next(sim.blocks(32))  # noise + render of the first block
    t3 = time.perf_counter()
    n = config.frames_per_file
    return {
        "events (per frame)": (t1 - t0) / n,
        "noise (per frame)": (t2 - t1) / 32,
        "render incl. noise (per frame)": (t3 - t2) / 32,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=400, help="frames per file")
    ap.add_argument("--files", type=int, default=2, help="files in the set")
    ap.add_argument("--keep", type=Path, help="write here instead of a temporary directory")
    args = ap.parse_args()
    config = SimConfig(files_per_set=args.files, frames_per_file=args.frames, **REAL_FORMAT)

    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        simulate_run(Path(tmp) / "warmup", config.replace(files_per_set=1, frames_per_file=2))
        wall, cpu = time.perf_counter(), time.process_time()
        run_dir = simulate_run(out, config, overwrite=True)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        size = sum(p.stat().st_size for p in run_dir.rglob("*.wfm"))
        stages = _stage_times(config)

    n = args.files * args.frames
    print(f"simulated {n} frames x {config.n_samples} int16 samples at "
          f"{config.sampling_rate_gs:g} GS/s: {size / 1e6:.0f} MB of WFM files")
    print(f"  wall {wall:.2f} s, process CPU {cpu:.2f} s")
    print(f"  {size / 1e6 / wall:.0f} MB/s of written file (wall, one core; goal >= 50)")
    print(f"  {size / 1e6 / cpu:.0f} MB/s of written file per CPU-second")
    for name, seconds in stages.items():
        print(f"  {name:32s} {seconds * 1e3:6.2f} ms")


if __name__ == "__main__":
    main()
