"""Read every raw byte once (prepare.s1_frames, prepare.s2_window_frames): the results equal
the two-pass path run with the same estimates, frame for frame; kill -9 and rerun equal
too; a rerun reuses everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr

from ratag_xr.pipeline import load_results
from ratag_xr.simulate import SimConfig, simulate_run
from ratag_xr.stages import ORDER
from ratag_xr.store.layout import manifest_path
from ratag_xr.store.manifest import Manifest

SIM = SimConfig(sets=((200, 1700), (400, 1900)), files_per_set=5, frames_per_file=24,
                sampling_rate_gs=1.0, record_start_us=-4.0, record_end_us=26.0,
                xray_fraction=0.6, seed=17)
ESTIMATES = "prepare:\n  s1_frames: 30\n  s2_window_frames: 40\n"
CLUSTER = ["--workers", "2", "--threads", "1", "--quiet"]


def ratag(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "ratag_xr", *map(str, args)],
                          capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode in (0, 1), proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("read_once")
    raw = simulate_run(root / "raw", SIM, progress=False)
    config = root / "estimates.yaml"
    config.write_text(f"run:\n  run_dir: {raw}\n{ESTIMATES}")
    once = root / "once"
    first = ratag("run", config, "--out", once, *CLUSTER)
    # the two-pass path with the same estimates: every file ingested before the analysis
    twice = root / "twice"
    ratag("ingest", raw, "--out", twice, *CLUSTER)
    ratag("run", config, "--out", twice, *CLUSTER)
    return raw, config, once, twice, first


def test_read_once_equals_the_two_pass_path(runs):
    raw, _, once, twice, first = runs
    assert "left to be read once" in first.stderr
    a, b = load_results(once), load_results(twice)
    xr.testing.assert_identical(a.frames, b.frames)
    xr.testing.assert_identical(a.sets.drop_attrs(), b.sets.drop_attrs())
    xr.testing.assert_identical(a.run.drop_attrs(), b.run.drop_attrs())
    assert int(a.frames.valid.sum()) == len(SIM.sets) * SIM.files_per_set * SIM.frames_per_file
    for name in (str(n) for n in a.sets.set.values):
        assert (once / name / "s2_areas.npy").read_bytes() == (
            twice / name / "s2_areas.npy").read_bytes()
        # the waveform figure picks its frames among all of the set's, not among those in
        # the store when prepare ended (the estimate files)
        figure = f"plots/{name}_waveform_validation.png"
        assert (once / figure).read_bytes() == (twice / figure).read_bytes()
    # every raw file ended up in the store, ingested by the analysis itself
    manifest = Manifest.load(manifest_path(once / "waveforms.zarr"))
    assert {e["status"] for e in manifest.entries.values()} == {"ok"}
    assert len(manifest.entries) == len(SIM.sets) * SIM.files_per_set


def test_read_once_chunk_files_equal_the_ingested_ones(runs):
    """The read-once file tasks write their chunks past the page cache (ingest.direct_io:
    auto), ingest through it: the same files, byte for byte."""
    _, _, once, twice, _ = runs
    chunks = {p.relative_to(once / "waveforms.zarr"): p
              for p in (once / "waveforms.zarr").glob("*/waveform/c/**/*") if p.is_file()}
    assert len(chunks) >= len(SIM.sets) * SIM.files_per_set
    for rel, path in chunks.items():
        assert path.read_bytes() == (twice / "waveforms.zarr" / rel).read_bytes(), rel
    assert {p.relative_to(twice / "waveforms.zarr") for p in
            (twice / "waveforms.zarr").glob("*/waveform/c/**/*") if p.is_file()} == set(chunks)
    assert not list((once / "waveforms.zarr").rglob("*.partial"))


def test_the_estimates_come_from_the_first_frames(runs):
    _, _, once, _, _ = runs
    lineage = load_results(once).lineage
    assert lineage["prepare"]["input"]["first_frames"] == 40
    assert lineage["frames"]["input"]["first_frames"] is None
    # the first two files of each set (24 frames each) hold the first 40 frames: only their
    # change would redo prepare
    sets = load_results(once).sets
    assert (sets.n_s2_frames <= 40).all() and (sets.n_s2_frames > 20).all()


def test_a_rerun_reuses_everything_and_starts_no_cluster(runs):
    _, config, once, _, _ = runs
    proc = ratag("run", config, "--out", once, *CLUSTER)
    assert "Dask:" not in proc.stderr
    assert proc.stderr.count("reused (lineage unchanged)") == len(ORDER), proc.stderr


def test_kill_during_the_read_once_pass_then_rerun_is_identical(runs, tmp_path):
    raw, config, once, _, _ = runs
    out = tmp_path / "killed"
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, "-m", "ratag_xr", "run", str(config),
                                 "--out", str(out), *CLUSTER], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        manifest = manifest_path(out / "waveforms.zarr")
        while proc.poll() is None and time.monotonic() < deadline:
            if manifest.exists():
                lines = [json.loads(line) for line in manifest.read_text().splitlines()
                         if line.strip()]
                ok = sum(e["status"] == "ok" for e in lines)
                if ok >= 5:  # the estimate files and at least one file of the read-once pass
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.02)
        proc.wait()
    ratag("run", config, "--out", out, *CLUSTER)
    a, b = load_results(out), load_results(once)
    xr.testing.assert_identical(a.frames, b.frames)
    np.testing.assert_array_equal(a.sets.s2_area_mean, b.sets.s2_area_mean)
