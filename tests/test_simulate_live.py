"""``ratag-xr simulate --live``: the run written file by file, each file in pieces as the
oscilloscope writes it, ending byte for byte as the batch simulator's run; a follower that
polls the folder never sees a partial file as complete."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from ratag_xr.cli import build_parser
from ratag_xr.errors import ConfigError
from ratag_xr.io.wfm import expected_size, is_complete, read_wfm
from ratag_xr.simulate import SimConfig, simulate_run
from tests.conftest import REPO

#: two sets x 2 files x 9 frames, both channels: 9 frames go in 3 appends of 3
LIVE = SimConfig(sets=((100, 1600), (300, 1800)), files_per_set=2, frames_per_file=9, seed=3,
                 record_end_us=12.0, alpha=True)
SECONDS_PER_FILE = 1.0  # each piece stays on disk ~0.33 s: a busy poller still sees it


def _cli_args(out) -> list[str]:
    return [sys.executable, "-m", "ratag_xr", "simulate", str(out), "--live",
            str(SECONDS_PER_FILE), "--sets", "100:1600,300:1800", "--files-per-set", "2",
            "--frames-per-file", "9", "--record-end", "12", "--seed", "3", "--alpha",
            "--quiet"]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return simulate_run(tmp_path_factory.mktemp("batch"), LIVE)


def test_live_run_grows_in_pieces_and_ends_as_the_batch_run(batch, tmp_path):
    final = {p.relative_to(batch): p.read_bytes() for p in batch.rglob("*.wfm")}
    header = {}
    for rel in final:
        with read_wfm(batch / rel) as wfm:
            header[rel] = wfm._curve_offset  # the header and frame tables, no frame yet
    run = tmp_path / LIVE.run_name
    started = time.monotonic()
    proc = subprocess.Popen(_cli_args(tmp_path), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    sizes: dict = {}  # file -> sizes seen while polling
    complete_at: dict = {}  # file -> when it was first seen complete
    looks_after_exit = 0  # a file finished just before the exit is seen stable twice more
    try:
        while looks_after_exit < 2:
            if proc.poll() is not None:
                looks_after_exit += 1
            for path in run.rglob("*.wfm") if run.exists() else ():
                rel = path.relative_to(run)
                previous = sizes.get(rel, [None])[-1]
                size = path.stat().st_size
                sizes.setdefault(rel, []).append(size)
                if size >= 15:  # the header says the final size from the start
                    assert expected_size(path) == len(final[rel]), rel
                if is_complete(path, previous_size=previous):
                    # never a partial file: complete means every byte, as in the batch run
                    assert path.read_bytes() == final[rel], rel
                    complete_at.setdefault(rel, time.monotonic())
                elif size < len(final[rel]) and is_complete(path):
                    # complete since its size was read: then every byte is there
                    assert path.read_bytes() == final[rel], rel
            time.sleep(0.01)
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, err
    assert "simulated run written to" in out
    # the same bytes at the end: every file, and the truth (written last)
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*.wfm")} == final
    assert (run / "truth.json").read_bytes() == (batch / "truth.json").read_bytes()
    with np.load(run / "truth_frames.npz") as a, np.load(batch / "truth_frames.npz") as b:
        assert a.files == b.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
    assert not list(run.rglob(".*"))  # no temporary names: the scope writes in place
    # file by file, each in pieces: the header alone first, then growing, then complete
    assert set(sizes) == set(final) and len(final) == 8  # 4 PMT files and their twins
    for rel, seen in sizes.items():
        assert header[rel] in seen, (rel, seen)
        partial = sorted({s for s in seen if s < len(final[rel])})
        assert len(partial) >= 3, (rel, seen)  # header, then at least two appends seen
        assert seen == sorted(seen), rel  # it only grows
        assert rel in complete_at, rel
    pmt = sorted((t, rel) for rel, t in complete_at.items() if "_Ch1" in rel.name)
    gaps = np.diff([t for t, _ in pmt])
    assert np.all(gaps > 0.5 * SECONDS_PER_FILE), gaps  # paced, one after the other
    assert elapsed > 4 * SECONDS_PER_FILE


def test_live_needs_a_number_of_seconds(tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", str(tmp_path), "--live", "-1"])
    assert "--live: must be a finite number of seconds >= 0" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="seconds_per_file"):
        simulate_run(tmp_path, LIVE, seconds_per_file=float("nan"))


def test_live_without_waiting_writes_the_batch_bytes(batch, tmp_path):
    run = simulate_run(tmp_path, LIVE.replace(alpha=False, naming="new"), seconds_per_file=0)
    ref = simulate_run(tmp_path / "ref", LIVE.replace(alpha=False, naming="new"))
    assert sorted(p.relative_to(run) for p in run.rglob("*.wfm")) == sorted(
        p.relative_to(ref) for p in ref.rglob("*.wfm"))
    for p in ref.rglob("*.wfm"):
        assert (run / p.relative_to(ref)).read_bytes() == p.read_bytes()
    assert json.loads((run / "truth.json").read_text()) == json.loads(
        (ref / "truth.json").read_text())
