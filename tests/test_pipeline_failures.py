"""A run with awkward sets finishes, and every set that could not be analysed says why:
a set without X-ray candidates, a set with too few frames for a fit, a frame full of NaN
(float32 curve), next to normal sets."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ratag_xr.io.wfm_writer import write_wfm
from ratag_xr.pipeline import load_results, run_pipeline
from ratag_xr.simulate import SimConfig, simulate_run, simulate_set_frames

BASE = SimConfig(sampling_rate_gs=1.0, record_start_us=-4.0, record_end_us=26.0,
                 files_per_set=2, frames_per_file=60, sets=((200, 1700), (300, 1800)), seed=5)
NO_XRAY = "FieldScan_Gate400_Anode1900"
TOO_FEW = "FieldScan_Gate500_Anode2000"
WITH_NAN = "FieldScan_Gate600_Anode2100"


def _add_set(run_dir, tmp, config):
    other = simulate_run(tmp, config)
    for folder in other.iterdir():
        if folder.is_dir():
            shutil.move(str(folder), run_dir / folder.name)


@pytest.fixture(scope="module")
def awkward_run(tmp_path_factory, client):
    root = tmp_path_factory.mktemp("awkward")
    run_dir = simulate_run(root / "main", BASE)
    _add_set(run_dir, root / "noxray", BASE.replace(sets=((400, 1900),), xray_fraction=0.0,
                                                    seed=6))
    _add_set(run_dir, root / "few", BASE.replace(sets=((500, 2000),), files_per_set=1,
                                                 frames_per_file=6, seed=7))
    # a float32 curve (as some scopes write) whose frame 3 is NaN from end to end
    nan_cfg = BASE.replace(sets=((600, 2100),), files_per_set=1, seed=8)
    raw, _ = simulate_set_frames(nan_cfg, set_index=0)
    codes = raw.astype(np.float32)
    codes[3] = np.nan
    folder = run_dir / WITH_NAN
    folder.mkdir()
    y_scale = nan_cfg.volts_per_div_mv / 25.0 * 1e-3
    write_wfm(folder / "RUN1_20260312_Gate600_Anode2100_P3_0000.wfm", codes, y_scale=y_scale,
              x_spacing=1e-9, x_start=nan_cfg.record_start_us * 1e-6)
    run_pipeline(run_dir, client=client, progress=False)
    return run_dir, load_results(run_dir)


def test_every_set_has_results_or_reasons(awkward_run):
    run_dir, res = awkward_run
    sets = res.sets
    assert list(sets.set.values) == sorted(sets.set.values)
    assert len(sets.set) == 5
    few = sets.sel(set=TOO_FEW)
    assert not bool(few.s2_fit_success)
    assert "entries" in str(few.s2_fit_reason.item())
    assert "need >= 10" in str(few.s2_window_reason.item())
    assert not bool(few.s2_window_success)
    for name in ("FieldScan_Gate200_Anode1700", "FieldScan_Gate300_Anode1800", NO_XRAY):
        assert bool(sets.s2_fit_success.sel(set=name)), name
    assert int(sets.n_xray_accepted.sel(set=NO_XRAY)) == 0
    assert int(sets.n_xray_events.sel(set=NO_XRAY)) == 120
    # ~7 accepted X-rays in this small run: the calibration fails with its reason, and the
    # quantities that need it are NaN, but nothing stops the run
    assert not bool(res.run.xray_fit_success)
    assert "entries" in str(res.run.xray_fit_reason.item())
    assert np.isnan(sets.r.values).all()


def test_nan_frame_is_counted_not_dropped(awkward_run):
    run_dir, res = awkward_run
    frames = res.frames.sel(set=WITH_NAN)
    valid = frames.valid.values
    assert valid.sum() == 60
    order = np.flatnonzero(valid)
    nan_slot = order[3]
    assert np.isnan(frames.s2_area.values[nan_slot])
    assert int(frames.xray_code.values[nan_slot]) == -1
    assert np.isfinite(frames.s2_area.values[order[[0, 1, 2, 4]]]).all()
    assert int(res.sets.n_area_nan.sel(set=WITH_NAN)) == 1
    assert int(res.sets.n_xray_not_classifiable.sel(set=WITH_NAN)) >= 1
    areas = np.load(run_dir / WITH_NAN / "s2_areas.npy")
    assert areas.shape == (60,) and np.isnan(areas[3])


def test_exports_exist_for_failed_sets(awkward_run):
    run_dir, _ = awkward_run
    few = json.loads((run_dir / TOO_FEW / "s2_results.json").read_text())
    assert few["fit_success"] is False and few["mean"] is None
    xray = json.loads((run_dir / NO_XRAY / "xray_results.json").read_text())
    assert xray["n_accepted"] == 0 and xray["n_events"] == 120
    assert np.load(run_dir / NO_XRAY / "xray_areas.npy").shape == (0,)
