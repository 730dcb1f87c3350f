"""Kill -9 of an ingest at random moments, then resume: the store equals an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import xarray as xr

from ratag_xr.store import ingest, open_run
from ratag_xr.store.layout import manifest_path
from tests.conftest import write_random_set


def _ingest_cmd(run, store):
    return [sys.executable, "-m", "ratag_xr", "ingest", str(run), "--out", str(store), "--quiet",
            "--workers", "2", "--threads", "1"]


def _kill_after(cmd, manifest, n_events, timeout=120):
    """Start ``cmd`` in its own process group and SIGKILL the group once the manifest has
    ``n_events`` lines (or the command ends).  Returns the command's exit status."""
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        seen = manifest.read_text().count("\n") if manifest.exists() else 0
        if seen >= n_events:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait()
    return proc.returncode


def test_kill_and_resume_equals_uninterrupted(tmp_path, client):
    run = tmp_path / "run"
    for i, gate in enumerate((200, 300)):
        write_random_set(run / f"FieldScan_Gate{gate}_Anode{gate + 1500}", "R_{:04d}.wfm",
                         8, n_frames=40, n_samples=20000, seed=i)
    n_files = 16
    reference = tmp_path / "reference.zarr"
    ingest(run, reference, client=client, progress=False)

    store = tmp_path / "killed.zarr"
    manifest = manifest_path(store)
    rng = np.random.default_rng(12)
    # Each file logs `planned` then `ok`: kill inside planning and at random points of the
    # copying phase (the manifest grows by one line per event, so these land mid-ingest).
    kill_points = [3, *sorted(rng.integers(n_files + 1, 2 * n_files, size=2))]
    statuses = [_kill_after(_ingest_cmd(run, store), manifest, k) for k in kill_points]
    assert statuses == [-signal.SIGKILL] * len(kill_points)  # every run died mid-ingest
    done = subprocess.run(_ingest_cmd(run, store), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "16 file(s)" in done.stdout

    got, want = open_run(store), open_run(reference)
    assert set(got.children) == set(want.children)
    for node in want.children:
        xr.testing.assert_identical(got[node].to_dataset().load(),
                                    want[node].to_dataset().load())
