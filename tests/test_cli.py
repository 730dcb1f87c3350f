"""The command line on a simulated run: every §10 file with its fields, 150 DPI figures,
stage skipping on reruns, lineage-driven recomputation, kill -9 during export, config
errors."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from ratag_xr.simulate import SimConfig, simulate_run

CONFIG = SimConfig(sampling_rate_gs=1.0, record_start_us=-4.0, record_end_us=26.0,
                   files_per_set=2, frames_per_file=80, xray_fraction=0.5,
                   sets=((200, 1700), (300, 1800), (400, 1900)), seed=21)
CLUSTER = ["--workers", "2", "--threads", "1", "--quiet"]
S2_FIELDS = {"method": str, "params": dict, "mean": float, "sigma": float, "ci95": float,
             "fit_success": bool, "set_metadata": dict}
S2_PARAMS = ("t_window", "n_pedestal", "ma_window", "bs_threshold", "dt", "width_s2")
SET_METADATA = ("t_s1", "t_s1_std", "t_s2_start_mean", "t_s2_start_std", "t_s2_end_mean",
                "t_s2_end_std", "s2_duration_mean", "s2_duration_std", "drift_field",
                "EL_field", "time_drift", "speed_drift", "red_drift_field")
XRAY_FIELDS = {"set_id": str, "params": dict, "n_events": int, "n_accepted": int,
               "n_rejected": int, "events": list}
RUN_PNGS = ("xray_histogram", "s2_vs_drift", "s2_vs_drift_normalized", "diffusion_analysis")


def ratag(*args, check=True, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "ratag_xr", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def png_dpi(path):
    """Horizontal and vertical DPI from a PNG's pHYs chunk (pixels per metre)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data.rstrip().endswith(b"IEND\xaeB`\x82")
    i = data.index(b"pHYs")
    x, y, unit = struct.unpack(">IIB", data[i + 4: i + 13])
    assert unit == 1
    return round(x * 0.0254), round(y * 0.0254)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    run_dir = simulate_run(root / "raw", CONFIG)
    out = root / "out"
    proc = ratag("run", run_dir, "--out", out, *CLUSTER)
    return run_dir, out, proc


def _set_names(run_dir):
    return sorted(p.name for p in run_dir.iterdir() if p.is_dir())


def test_every_output_file_and_field(cli_run):
    run_dir, out, proc = cli_run
    assert "A_ion ± ci95" in proc.stdout  # the summary table
    names = _set_names(run_dir)
    for name in names:
        s2 = json.loads((out / name / "s2_results.json").read_text())
        for key, typ in S2_FIELDS.items():
            assert isinstance(s2[key], typ), (key, s2[key])
        assert set(S2_PARAMS) <= set(s2["params"])
        assert set(SET_METADATA) <= set(s2["set_metadata"])
        assert all(isinstance(s2["set_metadata"][k], float) for k in SET_METADATA)
        assert len(s2["params"]["t_window"]) == 2 and s2["params"]["dt"] == pytest.approx(1e-3)
        assert "lineage" in s2 and "config" in s2["lineage"] and "versions" in s2["lineage"]
        xray = json.loads((out / name / "xray_results.json").read_text())
        for key, typ in XRAY_FIELDS.items():
            assert isinstance(xray[key], typ), key
        assert xray["n_events"] == 160 == len(xray["events"])
        assert xray["n_accepted"] + xray["n_rejected"] == xray["n_events"]
        event = xray["events"][0]
        assert set(event) >= {"wf_id", "accepted", "reason", "area"}
        assert event["wf_id"].endswith("_ff0") and event["wf_id"].startswith("RUN1_")
        areas = np.load(out / name / "s2_areas.npy", allow_pickle=False)
        assert areas.shape == (160,) and areas.dtype == np.float64
        accepted = np.load(out / name / "xray_areas.npy", allow_pickle=False)
        assert accepted.shape == (xray["n_accepted"],)
        for kind in ("s2_histogram", "waveform_validation"):
            png = out / "plots" / f"{name}_{kind}.png"
            assert png.stat().st_size > 10_000 and png_dpi(png) == (150, 150)
    meta = json.loads((out / "plots" / "RUN1_xray_metadata.json").read_text())
    assert set(meta) >= {"run_id", "n_areas", "sets", "mean", "std"}
    assert meta["run_id"] == "RUN1" and meta["sets"] == names
    combined = np.load(out / "plots" / "RUN1_xray_areas_combined.npy", allow_pickle=False)
    assert combined.shape == (meta["n_areas"],) and meta["n_areas"] > 20
    for kind in RUN_PNGS:
        png = out / "plots" / f"RUN1_{kind}.png"
        assert png.stat().st_size > 10_000 and png_dpi(png) == (150, 150)
    assert not (run_dir / "results.zarr").exists()  # --out keeps the raw folder untouched


def _stage_stamps(out):
    return {stage: (out / "results.zarr" / stage / "zarr.json").stat().st_mtime_ns
            for stage in ("prepare", "integrate", "classify", "calibrate")}


def test_rerun_skips_current_stages_and_redoes_changed_ones(cli_run, tmp_path):
    run_dir, out, _ = cli_run
    before = _stage_stamps(out)
    json_before = (out / _set_names(run_dir)[0] / "s2_results.json").stat().st_mtime_ns
    ratag("run", run_dir, "--out", out, *CLUSTER)
    assert _stage_stamps(out) == before
    assert (out / _set_names(run_dir)[0] / "s2_results.json").stat().st_mtime_ns == json_before
    config = tmp_path / "run.yaml"
    config.write_text(f"run:\n  run_dir: {run_dir}\nintegrate:\n  nbins: 50\n")
    ratag("run", config, "--out", out, *CLUSTER)
    after = _stage_stamps(out)
    assert after["prepare"] == before["prepare"]  # its inputs did not change
    assert after["integrate"] != before["integrate"]
    assert after["calibrate"] != before["calibrate"]  # downstream of integrate
    s2 = json.loads((out / _set_names(run_dir)[0] / "s2_results.json").read_text())
    assert s2["lineage"]["config"]["integrate"]["nbins"] == 50


def _complete(path):
    if path.suffix == ".json":
        json.loads(path.read_text())
    elif path.suffix == ".npy":
        np.load(path, allow_pickle=False)
    elif path.suffix == ".png":
        png_dpi(path)


def test_kill_during_export_leaves_no_partial_file(cli_run):
    run_dir, out, _ = cli_run
    names = _set_names(run_dir)
    for attempt in range(3):
        (out / names[-1] / "s2_results.json").unlink(missing_ok=True)  # export must rerun
        proc = subprocess.Popen([sys.executable, "-m", "ratag_xr", "export", str(run_dir),
                                 "--out", str(out), *CLUSTER],
                                start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if any((out / n).glob(".*.tmp-*") for n in names):
                time.sleep(0.01 * attempt)
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.001)
        proc.wait()
        for path in [*out.glob("*/*.json"), *out.glob("*/*.npy"), *out.glob("plots/*")]:
            if not path.name.startswith("."):
                _complete(path)  # whatever has its final name is whole
    ratag("run", run_dir, "--out", out, *CLUSTER)
    assert (out / names[-1] / "s2_results.json").exists()
    assert not list(out.glob("*/.*.tmp-*"))  # leftovers of the killed writers are gone


def test_nfiles_test_mode(cli_run, tmp_path):
    """--nfiles 1: every stage on the first file of each set only, every output written."""
    run_dir, full_out, _ = cli_run
    out = tmp_path / "one-file"
    proc = ratag("run", run_dir, "--out", out, "--nfiles", "1", *CLUSTER, check=False)
    # 80 frames per set hold too few accepted X-rays for the calibration fit (>= 20 needed):
    # the run says so and exits 1, with every output written
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "X-ray calibration failed: only" in proc.stderr
    names = _set_names(run_dir)
    first = {name: sorted(p.name for p in (run_dir / name).glob("*.wfm"))[0] for name in names}
    for name in names:
        folder = out / name
        assert {p.name for p in folder.iterdir()} == {
            "s2_areas.npy", "s2_results.json", "xray_areas.npy", "xray_results.json",
            "frames.parquet"}
        assert np.load(folder / "s2_areas.npy").shape == (80,)
        events = json.loads((folder / "xray_results.json").read_text())["events"]
        assert len(events) == 80
        assert {e["wf_id"].rsplit("_ff", 1)[0] for e in events} == {first[name][:-4]}
        full = np.load(full_out / name / "s2_areas.npy")
        assert full.shape == (160,)
    pngs = {p.name for p in (out / "plots").glob("*.png")}
    assert {f"RUN1_{k}.png" for k in RUN_PNGS} <= pngs
    assert {f"{n}_s2_histogram.png" for n in names} <= pngs
    assert {f"{n}_waveform_validation.png" for n in names} <= pngs
    lineage = json.loads((out / names[0] / "s2_results.json").read_text())["lineage"]
    assert lineage["stages"]  # the test mode is its own lineage, not the full run's
    full_lineage = json.loads((full_out / names[0] / "s2_results.json").read_text())["lineage"]
    assert lineage["stages"]["prepare"] != full_lineage["stages"]["prepare"]


def test_config_errors_name_the_key_and_file(tmp_path, cli_run):
    run_dir, _, _ = cli_run
    config = tmp_path / "bad.yaml"
    config.write_text(f"run:\n  run_dir: {run_dir}\nprepare:\n  ma_windw: 9\n")
    proc = ratag("run", config, check=False)
    assert proc.returncode == 2
    assert "bad.yaml" in proc.stderr and "ma_windw" in proc.stderr
    config.write_text(f"run:\n  run_dir: {run_dir}\nintegrate:\n  nbins: many\n")
    proc = ratag("run", config, check=False)
    assert proc.returncode == 2 and "integrate.nbins" in proc.stderr
