"""Shared fixtures: a real Dask LocalCluster, the shared sample folder, tiny raw runs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ratag_xr.io.wfm_writer import write_wfm

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``../shared`` beside the repository, or ``$RATAG_SHARED``."""
    return Path(os.environ.get("RATAG_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def client():
    """A real two-worker LocalCluster (processes, like production) for the whole session."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0", memory_limit="2GiB")
    with Client(cluster) as c:
        yield c
    cluster.close()


def analysed_run(root: Path, client, sim, stages):
    """``sim`` (a SimConfig) simulated under ``root`` and ``stages`` of it run (ingest
    first) into ``root/out`` on ``client``: the opened analysis."""
    from ratag_xr.pipeline import run_pipeline
    from ratag_xr.pipeline.context import open_analysis
    from ratag_xr.simulate import simulate_run

    run_dir = simulate_run(root / "raw", sim, progress=False)
    out = root / "out"
    run_pipeline(run_dir, out=out, client=client, progress=False, stages=("ingest", *stages))
    return open_analysis(run_dir, out=out)


def write_random_set(folder: Path, name_fmt: str, n_files: int, n_frames: int, n_samples: int,
                     *, seed: int, dtype="int16", x_spacing=2e-10, x_start=-3e-8,
                     y_scale=1e-4, y_offset=0.0) -> list[np.ndarray]:
    """Write ``n_files`` FastFrame files of random codes; return the frames written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    info = np.iinfo(dtype)
    written = []
    for k in range(n_files):
        raw = rng.integers(info.min, info.max, size=(n_frames, n_samples), endpoint=True,
                           dtype=dtype)
        write_wfm(folder / name_fmt.format(k), raw, y_scale=y_scale, y_offset=y_offset,
                  x_spacing=x_spacing, x_start=x_start,
                  gmt_sec=1.7e9 + 10 * k + np.arange(n_frames),
                  gmt_frac=rng.uniform(0, 1, n_frames).round(6))
        written.append(raw)
    return written
