"""Strong scaling of ingest and of the full analysis with 1 and 2 Dask workers.

Simulates a run of >= 1 GB in the real format (5 GS/s, int16, −3 µs … 35 µs = 190 000
samples, 380 KB per frame; by default 5 sets x 3 files x 200 frames = 3000 frames,
1.14 GB) into ``--dir`` (default: a temporary directory, removed afterwards).  Then, for
each worker count (LocalCluster, 1 thread per worker, started and warmed up before the
clock starts):

- ingest: the raw files into a fresh Zarr store;
- analysis: every stage after ingest (prepare, integrate, classify, calibrate, export,
  plots), one at a time in order (each reuses the stored results of the stages before
  it, as one ``ratag-xr run`` does), timed stage by stage.

The worker counts alternate, ``--repeat`` times (default 3, each with a fresh cluster and
store), and the median of each phase is reported: on a shared 2-core machine single runs
scatter by ±10 %.  "Warmed up" means the package is imported in every worker (compiled
kernels from numba's cache, the pipeline, matplotlib), a once-per-worker cost.

Speed-up S = T(1) / T(n), efficiency S / n.  While a phase runs, a thread samples the
resident memory (RSS, psutil) of every worker process and of this (driver) process every
0.1 s; the peak per process is reported, and so are their CPU seconds (the driver's are
the serial part: planning, graph building, reductions and fits, plots).  Raw files are in
the page cache (just written), so ingest measures decoding and compression, not the disk.

    python benchmarks/bench_scaling.py [--dir DIR] [--files 3] [--frames 200] [--workers 1 2]
                                       [--repeat 3]
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil

from ratag_xr.cluster import close_client, make_client
from ratag_xr.config import Config
from ratag_xr.pipeline import load_results, run_pipeline
from ratag_xr.simulate import SimConfig, simulate_run
from ratag_xr.stages import ORDER

REAL_FORMAT = dict(sampling_rate_gs=5.0, record_start_us=-3.0, record_end_us=35.0,
                   dtype="int16")
ANALYSIS = ORDER  # every stage, in run order
GOAL_EFFICIENCY = 0.8
MB = 1e6


class Probe:
    """Peak resident memory (bytes) and CPU seconds of some processes during a phase; RSS
    is sampled in a thread, CPU time read at the start and the end."""

    def __init__(self, pids: dict[str, int], every: float = 0.1):
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak = dict.fromkeys(pids, 0)
        self.cpu = dict.fromkeys(pids, 0.0)
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _cpu(self) -> dict[str, float]:
        out = {}
        for name, proc in self.procs.items():
            try:
                t = proc.cpu_times()
                out[name] = t.user + t.system
            except psutil.Error:  # a worker restarted
                out[name] = float("nan")
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, proc in self.procs.items():
                try:
                    self.peak[name] = max(self.peak[name], proc.memory_info().rss)
                except psutil.Error:
                    pass
            self._stop.wait(self.every)

    def __enter__(self):
        self._cpu0 = self._cpu()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        end = self._cpu()
        self.cpu = {name: end[name] - self._cpu0[name] for name in end}


def _warm(client) -> None:
    """Import the package in every worker: the compiled kernels (numba cache), the
    pipeline and the plotting modules (matplotlib), each paid once per worker process."""

    def load():
        for name in ("ratag_xr.kernels", "ratag_xr.pipeline", "ratag_xr.plots"):
            importlib.import_module(name)

    client.run(load)


def measure(run_dir: Path, out: Path, n_workers: int, memory: str, config=None) -> dict:
    """Wall time, CPU seconds and peak RSS of ingest and of each analysis stage."""
    shutil.rmtree(out, ignore_errors=True)
    client = make_client("local", workers=n_workers, threads=1, memory=memory, quiet=True)
    try:
        _warm(client)
        pids = {f"worker {i}": pid for i, pid in enumerate(client.run(os.getpid).values())}
        pids["driver"] = os.getpid()
        phases = {}
        # each stage once, upstream results reused; read-once: ingest copies only the
        # estimate files (with prepare) and the frames stage reads the rest once
        read_once = config is not None
        for phase in ("ingest", *ANALYSIS):
            stages = ("ingest", phase) if read_once and phase != "ingest" else (phase,)
            if read_once and phase == "ingest":
                phases[phase] = {"wall": 0.0, "cpu": dict.fromkeys(pids, 0.0),
                                 "rss": dict.fromkeys(pids, 0)}
                continue
            with Probe(pids) as probe:
                t0 = time.perf_counter()
                run_pipeline(run_dir, out=out, client=client, stages=stages, progress=False,
                             config=config)
                wall = time.perf_counter() - t0
            phases[phase] = {"wall": wall, "cpu": probe.cpu, "rss": probe.peak}
    finally:
        close_client(client)
    analysis = {"wall": sum(phases[p]["wall"] for p in ANALYSIS),
                "cpu": {k: sum(phases[p]["cpu"][k] for p in ANALYSIS) for k in pids},
                "rss": {k: max(phases[p]["rss"][k] for p in ANALYSIS) for k in pids}}
    return {"workers": n_workers, "phases": phases, "ingest": phases["ingest"],
            "analysis": analysis}


def median_of(repeats: list[dict]) -> dict:
    """One measurement from repeated ones: per phase the median wall time and CPU seconds,
    the largest peak RSS."""
    phases = {}
    for phase in repeats[0]["phases"]:
        runs = [r["phases"][phase] for r in repeats]
        phases[phase] = {
            "wall": statistics.median(m["wall"] for m in runs),
            "cpu": {k: statistics.median(m["cpu"][k] for m in runs) for k in runs[0]["cpu"]},
            "rss": {k: max(m["rss"][k] for m in runs) for k in runs[0]["rss"]}}
    out = {"workers": repeats[0]["workers"], "phases": phases, "ingest": phases["ingest"]}
    for name in ("analysis",):
        runs = [r[name] for r in repeats]
        out[name] = {
            "wall": statistics.median(m["wall"] for m in runs),
            "walls": [m["wall"] for m in runs],
            "cpu": {k: statistics.median(m["cpu"][k] for m in runs) for k in runs[0]["cpu"]},
            "rss": {k: max(m["rss"][k] for m in runs) for k in runs[0]["rss"]}}
    out["ingest"]["walls"] = [r["ingest"]["wall"] for r in repeats]
    return out


def _cpu_text(cpu: dict) -> str:
    return ", ".join(f"{name} {value:.1f}" for name, value in cpu.items())


def _rss_text(peaks: dict) -> str:
    return ", ".join(f"{name} {value / MB:.0f} MB" for name, value in peaks.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, help="where to simulate (default: a temporary dir)")
    ap.add_argument("--files", type=int, default=3, help="files per set (5 sets)")
    ap.add_argument("--frames", type=int, default=200, help="frames per file")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--memory", default="4GiB", help="memory limit per worker")
    ap.add_argument("--repeat", type=int, default=3,
                    help="measurements per worker count; medians are reported")
    ap.add_argument("--read-once", type=int, metavar="N",
                    help="estimates from each set's first N frames: ingest copies only their "
                         "files, the frames stage reads every other raw byte once")
    args = ap.parse_args()

    base = args.dir or Path(tempfile.mkdtemp(prefix="ratag-scaling-"))
    try:
        config = SimConfig(files_per_set=args.files, frames_per_file=args.frames,
                           **REAL_FORMAT)
        t0 = time.perf_counter()
        run_dir = simulate_run(base / "raw", config, overwrite=True, progress=False)
        size = sum(p.stat().st_size for p in run_dir.rglob("*.wfm"))
        n_frames = len(config.sets) * config.n_frames_per_set
        print(f"run: {len(config.sets)} sets x {config.files_per_set} files x "
              f"{config.frames_per_file} frames = {n_frames} frames x {config.n_samples} "
              f"int16 = {size / 1e9:.2f} GB of WFM (simulated in "
              f"{time.perf_counter() - t0:.0f} s)")
        print(f"load average before: {os.getloadavg()[0]:.2f} (1 min), "
              f"{os.cpu_count()} cores")
        analysis_config = None
        if args.read_once:
            analysis_config = Config({"prepare": {"s1_frames": args.read_once,
                                                  "s2_window_frames": args.read_once}})
            print(f"read-once: estimates from each set's first {args.read_once} frames")
        repeats = {n: [] for n in args.workers}
        for _ in range(args.repeat):  # alternate, so slow spells of the machine hit both
            for n in args.workers:
                repeats[n].append(measure(run_dir, base / f"out-{n}", n, args.memory,
                                          analysis_config))
        results = [median_of(repeats[n]) for n in args.workers]
        first = load_results(base / f"out-{args.workers[0]}")
        for r in results[1:]:  # the figures only count when the results agree
            other = load_results(base / f"out-{r['workers']}")
            assert first.sets.identical(other.sets) and first.frames.identical(other.frames)
        ref = results[0]
        # read once: the frames stage ingests, so ingest is part of the analysis
        for phase in ("analysis",) if args.read_once else ("ingest", "analysis"):
            print(f"{phase} (ingest included: read once):" if args.read_once else f"{phase}:")
            for r in results:
                m = r[phase]
                speedup = ref[phase]["wall"] / m["wall"] * ref["workers"]
                print(f"  {r['workers']} worker(s): {m['wall']:6.1f} s  "
                      f"{size / MB / m['wall']:5.0f} MB/s  speed-up {speedup:4.2f}  "
                      f"efficiency {speedup / r['workers']:4.0%} "
                      f"(goal >= {GOAL_EFFICIENCY:.0%})")
                print(f"      runs: {', '.join(f'{w:.1f}' for w in m['walls'])} s")
                print(f"      CPU s: {_cpu_text(m['cpu'])}")
                print(f"      peak RSS: {_rss_text(m['rss'])}")
        passes = ("prepare", "frames")  # the passes over every frame
        t_ref = sum(ref["phases"][p]["wall"] for p in passes)
        for r in results:
            t = sum(r["phases"][p]["wall"] for p in passes)
            speedup = t_ref / t * ref["workers"]
            print(f"prepare + frames (the passes over the data), {r['workers']} worker(s): "
                  f"{t:5.1f} s  speed-up {speedup:4.2f}  efficiency {speedup / r['workers']:4.0%}")
        print("analysis stages, wall s (driver CPU s):")
        for r in results:
            stages = "  ".join(f"{k} {v['wall']:.1f} ({v['cpu']['driver']:.1f})"
                               for k, v in r["phases"].items() if k in ANALYSIS)
            print(f"  {r['workers']} worker(s): {stages}")
        print(f"load average after: {os.getloadavg()[0]:.2f} (1 min)")
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
