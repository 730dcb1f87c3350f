"""Closure: the pipeline recovers the simulator's truth, and its per-frame results equal a
plain-numpy implementation of ALGORITHMS.md on the same frames.

The simulator's truth is analog (before digitisation, noise and the analysis' clipping).
Where an estimator defined by ALGORITHMS.md is biased by construction (the 0.8 mV clip of
§5/§7 removes the tails of every photoelectron pulse), the expected value is that
estimator applied by plain numpy to the *noise-free* frames of the same events, and the
tolerance is the statistical error of the simulated sample.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ratag_xr.config import Config
from ratag_xr.demo import DEMO_CONFIG
from ratag_xr.pipeline import load_results, run_pipeline
from ratag_xr.pipeline.results import load_stage
from ratag_xr.simulate import SimConfig, simulate_run, simulate_set_frames
from ratag_xr.stages.calibrate import diffusion
from ratag_xr.store import open_set
from tests.test_kernels import OPTIONS_OFF, reference_pass1, reference_pass2

STAGES = ("ingest", "prepare", "integrate", "classify", "calibrate")
# 1 GS/s keeps frames short (32 000 samples) so 5 sets x 450 frames simulate and analyse in
# seconds.  S1: 0.5 photoelectrons per frame (61 % of frames have none, so single frames
# mostly show no S1) with a 1 ns time spread.
CONFIG = SimConfig(sampling_rate_gs=1.0, record_start_us=-4.0, record_end_us=28.0,
                   files_per_set=3, frames_per_file=150, s1_sigma_ns=1.0, s1_mean_pe=0.5,
                   seed=7)
DT_US = 1e-3


@pytest.fixture(scope="module")
def closure(tmp_path_factory, client):
    out = tmp_path_factory.mktemp("closure")
    run_dir = simulate_run(out, CONFIG)
    run_pipeline(run_dir, client=client, stages=STAGES, progress=False)
    truth = json.loads((run_dir / "truth.json").read_text())
    frames_truth = dict(np.load(run_dir / "truth_frames.npz"))
    return run_dir, load_results(run_dir), truth, frames_truth


def _set_truth(truth, name):
    return next(s for s in truth["sets"] if s["name"] == name)


def test_transport_is_the_section_1_model(closure):
    _, res, truth, _ = closure
    k_b, p0, p1, p2, p3 = 1.380649e-23, 0.92809704, 17.17333489, 0.51193002, 0.30107278
    n_cm3 = 2.0e5 / (k_b * 293.0) * 1e-6
    for name in res.sets.set.values:
        s = res.sets.sel(set=name)
        field = float(s.gate) / 1.4
        x = field / n_cm3 * 1e17
        v = p0 * (1 - np.exp(-p1 * x)) + p2 * x / (1 + p3 * x)
        assert float(s.drift_field) == pytest.approx(field, rel=1e-12)
        assert float(s.speed_drift) == pytest.approx(v, rel=1e-12)
        assert float(s.time_drift) == pytest.approx(14.0 / v, rel=1e-12)
        assert float(s.time_drift) == pytest.approx(_set_truth(truth, name)["time_drift"],
                                                    rel=1e-12)


def test_t_s1_within_one_sample(closure):
    # Each chunk mean holds ~75 S1 photoelectrons of 1 ns time spread and 2 ns pulse width:
    # its peak sits within ~sqrt(1 + 4) / sqrt(75) = 0.26 ns of t_s1; one sample is 1 ns.
    _, res, truth, _ = closure
    for name in res.sets.set.values:
        assert bool(res.sets.s1_success.sel(set=name))
        assert abs(float(res.sets.t_s1.sel(set=name)) - truth["sets"][0]["t_s1"]) <= DT_US


def test_s2_start_tracks_the_first_photoelectron(closure):
    # §4's S2 start is the first smoothed sample above 0.4 mV: it marks the first
    # photoelectron of the ion's train (which arrives after the start of the light by an
    # exponential waiting time, mean spacing ~150 ns here).  On clean frames (no X-ray, no
    # dark count, no junk) it must sit within 8 samples of that photoelectron: the centred
    # 9-sample box reaches a pulse 4 samples early and a 2 ns pulse clears 0.4 mV within a
    # few samples of its rise, so the crossing comes 0-8 samples before the pulse centre.
    _, res, truth, ft = closure
    for i, name in enumerate(ft["set_names"]):
        m = ft["set_index"] == i
        frames = res.frames.sel(set=name)
        s2_start = frames.s2_start.values[frames.valid.values]  # truth order = frame order
        clean = (ft["kind"][m] == 0) & ~ft["xray"][m] & (ft["n_dark"][m] == 0)
        lead = ft["ion_first_pe"][m][clean] - s2_start[clean]
        assert np.mean((lead >= 0) & (lead <= 8 * DT_US)) >= 0.98, name
        assert 0 <= np.median(lead) <= 8 * DT_US, name
        # the per-set statistic follows, and the light starts at t_s1 + time_drift before it
        got = float(res.sets.t_s2_start_mean.sel(set=name))
        assert _set_truth(truth, name)["t_s2_start"] <= got <= np.nanmedian(
            ft["ion_first_pe"][m]) + 8 * DT_US


def _prep_params(res, name):
    s = res.sets.sel(set=name)
    return {"n_pedestal": 2000, "ma_window": 9, "threshold_s2": 0.4, "s2_clip": 0.02,
            "t_s1": float(s.t_s1), "time_drift": float(s.time_drift), "ts2_tol": -2.7,
            "bs_threshold": 0.8, "max_area_s2": 1e5, "min_s2_sep": 1.0, "min_s1_sep": 1.0,
            "s2_window_start": float(s.s2_window_start),
            "s2_window_end": float(s.s2_window_end), **OPTIONS_OFF}


def test_per_frame_results_equal_numpy_reference(closure):
    run_dir, res, _, _ = closure
    rng = np.random.default_rng(3)
    for name in res.sets.set.values:
        ds = open_set(run_dir / "waveforms.zarr", str(name), raw=True)
        scale = ds.waveform.attrs["scale_factor"]
        offset = ds.waveform.attrs["add_offset"]
        t0, dt = ds.time.attrs["first_sample"], ds.time.attrs["sample_spacing"]
        p = _prep_params(res, name)
        frames = res.frames.sel(set=name)
        slots = frames.frame.values[frames.valid.values]
        for k in rng.choice(ds.sizes["frame"], size=6, replace=False):
            raw = ds.waveform.isel(frame=k).values
            got = frames.sel(frame=slots[k])
            ref = reference_pass1(raw, scale, offset, t0, dt, p)
            for var in ("pedestal", "s2_start", "s2_end", "s2_duration", "xray_area"):
                np.testing.assert_allclose(float(got[var]), ref[var], rtol=1e-9, atol=1e-12)
            assert int(got.xray_code) == ref["xray_code"]
            np.testing.assert_allclose(float(got.s2_area),
                                       reference_pass2(raw, scale, offset, t0, dt, p),
                                       rtol=1e-9, atol=1e-12)


def _noise_free_reference(res, name, set_index, ft):
    """§5 ion areas and §7 outcomes by plain numpy on the noise-free frames of one set."""
    quiet = CONFIG.replace(noise_mv=0.0, baseline_jitter_mv=0.0)
    raw, _ = simulate_set_frames(quiet, set_index=set_index)
    y_mv = CONFIG.volts_per_div_mv / 25.0  # int8: 25 levels per division
    n = raw.shape[1]
    t0 = CONFIG.record_start_us
    p = _prep_params(res, name)
    areas = np.array([reference_pass2(r, -y_mv, 0.0, t0, DT_US, p) for r in raw])
    xray = [reference_pass1(r, -y_mv, 0.0, t0, DT_US, p) for r in raw]
    assert n == int(round((CONFIG.record_end_us - CONFIG.record_start_us) / DT_US))
    return areas, np.array([x["xray_code"] for x in xray]), np.array([x["xray_area"]
                                                                      for x in xray])


def test_ion_area_and_calibration_closure(closure):
    _, res, truth, ft = closure
    x_areas = []
    for i, name in enumerate(ft["set_names"]):
        s = res.sets.sel(set=name)
        areas, codes, xa = _noise_free_reference(res, name, i, ft)
        x_areas.append(xa[codes == 0])
        normal = ft["kind"][ft["set_index"] == i] == 0
        expected = np.median(areas[normal])
        # the clip loss of §5 (estimator vs analog truth) is what the noise-free frames show
        loss = 1 - np.mean(areas[normal]) / np.mean(ft["ion_area"][ft["set_index"] == i][normal])
        assert 0.0 < loss < 0.25, loss
        sigma_stat = float(s.s2_area_ci95) / 1.96
        # 4 standard errors of the fitted mean, plus 1 % for what noise adds to the clipped
        # integral (noise lifts some pulse tails above 0.8 mV)
        assert abs(float(s.s2_area_mean) - expected) <= 4 * sigma_stat + 0.01 * expected, name
    expected_x = np.median(np.concatenate(x_areas))
    run = res.run
    assert bool(run.xray_fit_success)
    sigma_x = float(run.A_x_ci95) / 1.96
    assert abs(float(run.A_x_mean) - expected_x) <= 4 * sigma_x + 0.01 * expected_x
    assert float(run.g_S2) == pytest.approx(float(run.A_x_mean) / (12300 / 22), rel=1e-12)
    # r = 1 - A_ion / A_x from the recovered areas, as §8 defines it
    for name in res.sets.set.values:
        s = res.sets.sel(set=name)
        assert float(s.r) == pytest.approx(1 - float(s.s2_area_mean) / float(run.A_x_mean),
                                           rel=1e-12)


def test_longitudinal_diffusion_closure(tmp_path, client):
    # Without X-rays (whose late light stretches the §4 duration of their frames) the
    # spread of the S2 duration is the simulated sigma_t; the §9 straight-line fit must
    # recover D_L and sigma_0^2 within 3 of their reported standard errors.
    config = CONFIG.replace(xray_fraction=0.0, seed=11)
    run_dir = simulate_run(tmp_path, config)
    run_pipeline(run_dir, client=client, stages=STAGES, progress=False)
    run = load_results(run_dir).run
    truth = json.loads((run_dir / "truth.json").read_text())
    assert bool(run.diffusion_success)
    assert abs(float(run.D_L) - truth["D_L"]) <= 3 * float(run.D_L_err)
    assert abs(float(run.sigma0_sq) - truth["sigma0_sq"]) <= 3 * float(run.sigma0_sq_err)
    assert float(run.D_L_err) < 0.2 * truth["D_L"]  # the test has power: a 20 % measurement


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, client):
    """The demo's run (20 % of frames with an X-ray) analysed up to the S2 statistics with
    the reference timing, then up to every frame's features with the clean one (§15)."""
    run_dir = simulate_run(tmp_path_factory.mktemp("demo"), DEMO_CONFIG, progress=False)
    run_pipeline(run_dir, client=client, stages=("ingest", "prepare"), progress=False)
    reference = load_stage(run_dir / "results.zarr", "prepare", "sets")
    run_pipeline(run_dir, client=client, stages=("frames",), progress=False,
                 config=Config({"prepare": {"s2_timing": "clean"}}))
    truth = json.loads((run_dir / "truth.json").read_text())
    return reference, load_results(run_dir), truth, dict(np.load(run_dir / "truth_frames.npz"))


def test_clean_s2_timing_recovers_diffusion_on_the_demo_run(demo_run):
    """§15 clean timing: D_L within 2 sigma of the truth (the reference timing is not), and
    every set's S2 duration spread closer to the truth than with the reference timing."""
    reference, clean, truth, _ = demo_run
    assert clean.sets.attrs["s2_timing"] == "clean" and reference.attrs["s2_timing"] == (
        "reference")
    fit_ref, fit_clean = diffusion(reference)[2], diffusion(clean.sets)[2]
    assert abs(fit_clean.D_L - truth["D_L"]) <= 2 * fit_clean.D_L_err, fit_clean
    assert abs(fit_ref.D_L - truth["D_L"]) > 2 * fit_ref.D_L_err, fit_ref  # what §15 mends
    for t in truth["sets"]:
        got_ref = float(reference.s2_duration_std.sel(set=t["name"]))
        got_clean = float(clean.sets.s2_duration_std.sel(set=t["name"]))
        assert abs(got_clean - t["sigma_t"]) < abs(got_ref - t["sigma_t"]), t["name"]


def test_clean_s2_start_skips_an_x_ray_before_the_ion_s2(demo_run):
    """Per frame: where an X-ray's light ended (three diffusion sigmas after its end) more
    than 1 µs before the ion's first photoelectron, the clean S2 start is that
    photoelectron (the 9-sample box crosses 0.4 mV 0-10 ns before a pulse's centre at
    2 GS/s) — the X-ray is not the start.  The exceptions are ion light trains with a gap
    of more than 1 µs of their own (sparse at the lowest field: also ~10 % of the frames
    without any X-ray there)."""
    _, clean, _, ft = demo_run
    for i, name in enumerate(ft["set_names"]):
        m = ft["set_index"] == i
        frames = clean.frames.sel(set=name)
        lead = ft["ion_first_pe"][m] - frames.s2_start.values[frames.valid.values]
        at_first_pe = (lead >= 0) & (lead <= 0.01)
        quiet = (ft["kind"][m] == 0) & (ft["n_dark"][m] == 0)
        ended = ft["xray_end"][m] + 3 * ft["xray_sigma"][m]
        separated = ft["xray"][m] & quiet & (ft["ion_first_pe"][m] - ended > 1.0)
        no_xray = ~ft["xray"][m] & quiet
        assert separated.sum() >= 25, name
        assert np.mean(at_first_pe[separated]) >= 0.85, name
        assert np.mean(at_first_pe[separated]) >= np.mean(at_first_pe[no_xray]) - 0.05, name


@pytest.mark.xfail(strict=True, reason="issue 20 asks for each set within 10 %; measured "
                   "+16 .. +25 %: 10-13 % of the demo's frames hold an X-ray whose light "
                   "overlaps the ion S2 or ends less than 1 µs before it, which no gap "
                   "between crossings separates (96-99 % of the frames whose clean start "
                   "is early); without those frames +1 .. +4 % (+9 % at gate 100 V, where "
                   "gaps inside the sparse ion S2 cut its start); the same run with 5 % "
                   "X-ray frames: -1 .. +9 %")
def test_clean_s2_duration_spread_within_10_percent_on_the_demo_run(demo_run):
    _, clean, truth, _ = demo_run
    for t in truth["sets"]:
        got = float(clean.sets.s2_duration_std.sel(set=t["name"]))
        assert got == pytest.approx(t["sigma_t"], rel=0.10), t["name"]


def test_every_result_variable_has_units(closure):
    _, res, _, _ = closure
    for part in (res.sets, res.frames, res.run):
        for name, var in part.variables.items():
            if name in ("set", "frame") or var.dtype.kind == "M":
                continue  # labels; datetimes carry their unit in the dtype
            assert "units" in var.attrs and "long_name" in var.attrs, name
