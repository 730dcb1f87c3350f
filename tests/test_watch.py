"""``ratag-xr watch`` beside ``ratag-xr simulate --live``: no partial file is ever taken,
progress and ETA are printed, the final outputs equal a batch ``run`` of the finished
folder, the time from the last complete file to the final outputs is printed and short;
kill -9 of the follow and a restart end with identical outputs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import xarray as xr

from ratag_xr.pipeline import load_results
from ratag_xr.store.layout import manifest_path
from ratag_xr.store.manifest import Manifest, content_hash

SIM = ["--files-per-set", "4", "--frames-per-file", "20", "--sets", "100:1600,200:1700",
       "--sampling-rate", "1", "--record-start", "-4", "--record-end", "26", "--seed", "4"]
ESTIMATES = "prepare:\n  s1_frames: 30\n  s2_window_frames: 30\n"
WATCH = ["--expect-files", "4", "--idle-timeout", "20", "--poll", "0.3", "--refresh", "2"]


def _start(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "ratag_xr", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def outputs(out):
    found = {}
    for path in sorted(p for p in out.glob("*/*.json") if p.parent.suffix != ".zarr"):
        doc = json.loads(path.read_text())
        doc.pop("lineage", None)
        found[str(path.relative_to(out))] = doc
    return found


@pytest.fixture(scope="module")
def followed(tmp_path_factory):
    root = tmp_path_factory.mktemp("watch")
    config = root / "live.yaml"
    config.write_text(f"run:\n  run_dir: {root / 'raw' / 'RUN1'}\n{ESTIMATES}")
    sim = _start("simulate", root / "raw", *SIM, "--live", "1.2", "--quiet")
    time.sleep(0.5)
    follow = _start("watch", config, "--out", root / "out", *WATCH)
    _, err = follow.communicate(timeout=600)
    sim.wait(timeout=60)
    assert follow.returncode == 0, err[-3000:]
    batch = root / "batch"
    proc = subprocess.run([sys.executable, "-m", "ratag_xr", "run", config, "--out", batch,
                           "--quiet"], capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    return root, err


def test_no_partial_file_is_ever_taken(followed):
    root, _ = followed
    manifest = Manifest.load(manifest_path(root / "out" / "waveforms.zarr"))
    assert {e["status"] for e in manifest.entries.values()} == {"ok"}
    assert len(manifest.entries) == 8
    for (set_name, name), event in manifest.entries.items():
        path = root / "raw" / "RUN1" / set_name / name
        assert event["hash"] == content_hash(path)  # what was read is the finished file
        assert event["fingerprint"]["size"] == path.stat().st_size


def test_progress_eta_and_latency_are_printed(followed):
    _, err = followed
    lines = [line for line in err.splitlines() if line.startswith("watch: ")]
    assert any(re.search(r"FieldScan_Gate100_Anode1600: \d/4 files, \d+ frames", line)
               for line in lines), lines
    assert any("files/min, ETA" in line for line in lines), lines
    latency = [float(m.group(1)) for line in lines
               if (m := re.search(r"final outputs ([\d.]+) s after the last", line))]
    assert latency and latency[0] < 10.0, lines


def test_final_outputs_equal_a_batch_run(followed):
    root, _ = followed
    a, b = load_results(root / "out"), load_results(root / "batch")
    xr.testing.assert_identical(a.frames, b.frames)
    xr.testing.assert_identical(a.sets, b.sets)
    xr.testing.assert_identical(a.run, b.run)
    assert outputs(root / "out") == outputs(root / "batch")
    page = (root / "out" / "report.html").read_text()
    assert 'http-equiv="refresh"' not in page  # the final page does not reload


def test_kill_and_restart_of_the_follow_ends_identical(followed, tmp_path):
    root, _ = followed
    config = tmp_path / "live.yaml"
    config.write_text(f"run:\n  run_dir: {tmp_path / 'raw' / 'RUN1'}\n{ESTIMATES}")
    sim = _start("simulate", tmp_path / "raw", *SIM, "--live", "1.2", "--quiet")
    time.sleep(0.5)
    out = tmp_path / "out"
    follow = _start("watch", config, "--out", out, *WATCH, start_new_session=True)
    deadline = time.monotonic() + 120
    manifest = manifest_path(out / "waveforms.zarr")
    while time.monotonic() < deadline:  # kill once a few files are in
        if manifest.exists() and manifest.read_text().count('"ok"') >= 3:
            break
        time.sleep(0.05)
    os.killpg(follow.pid, signal.SIGKILL)
    follow.wait()
    follow = _start("watch", config, "--out", out, *WATCH)
    _, err = follow.communicate(timeout=600)
    sim.wait(timeout=60)
    assert follow.returncode == 0, err[-3000:]
    a, b = load_results(out), load_results(root / "batch")
    xr.testing.assert_identical(a.frames.drop_attrs(), b.frames.drop_attrs())
    xr.testing.assert_identical(a.sets.drop_attrs(), b.sets.drop_attrs())
    assert outputs(out) == outputs(root / "batch")
