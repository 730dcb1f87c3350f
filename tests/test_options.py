"""The options of ALGORITHMS.md §15, each against a plain-numpy version of its definition.

One small simulated run is analysed end to end with every option on: clean S2 timing,
the excessive-S1 and minimum-area X-ray checks, the widened integration window and the
two-stage Crystal Ball fit.  Per frame the stored results equal the numpy references of
tests/test_kernels.py given the options; per set the window statistics, the widened
windows and the fits follow from those frames as §4, §15 and §6 say; the exports and
figures say which options were used.  The Crystal Ball fit of the integrate stage is
checked for recovery and ci95 coverage over many seeds.  With every option at its default
the results are those of §1–§10 (tests/test_pipeline_closure.py and the lineage test).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ratag_xr.config import Config
from ratag_xr.physics.crystal_ball import fit_s2_two_stage, sample_crystal_ball
from ratag_xr.physics.s2_window import s2_window_stats
from ratag_xr.pipeline import load_results, run_pipeline
from ratag_xr.simulate import SimConfig, simulate_run
from ratag_xr.stages.integrate import fit_areas
from ratag_xr.store import open_set
from ratag_xr.vocabulary import XrayOutcome
from tests.test_kernels import reference_pass1, reference_pass2

SIM = SimConfig(sets=((150, 1650), (300, 1800), (450, 1950)), files_per_set=2,
                frames_per_file=60, sampling_rate_gs=1.0, record_start_us=-4.0,
                record_end_us=26.0, xray_fraction=0.5, seed=21)
OPTIONS = {
    "prepare": {"s2_timing": "clean", "s2_max_gap": 1.0},
    # S1 photoelectrons are 4 mV pulses: a sum of 4 mV before t_s1 rejects most frames
    # holding one; the X-ray areas are ~5 mV·µs: 4.5 rejects the smaller ones
    "xray": {"max_area_s1": 4.0, "min_xray_area": 4.5},
    "integrate": {"n_sigma_start": 1.0, "n_sigma_end": 0.5, "fit_model": "crystal_ball",
                  "two_stage": True, "bg_fraction": 0.01},
}
KERNEL_OPTIONS = {"s2_timing": 1.0, "s2_max_gap": 1.0, "max_area_s1": 4.0,
                  "min_xray_area": 4.5}


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, client):
    raw = simulate_run(tmp_path_factory.mktemp("options") / "raw", SIM, progress=False)
    run_pipeline(raw, client=client, config=Config(OPTIONS, "options.yaml"), progress=False)
    return raw, load_results(raw)


def _params(sets, name) -> dict:
    """Kernel inputs of one set with the options on; the window as §15 widens it, from
    the window statistics (not from the stored window)."""
    s = sets.sel(set=name)
    start = float(s.t_s2_start_mean) - 1.0 * float(s.t_s2_start_std)
    end = float(s.t_s2_end_mean) + 0.5 * float(s.t_s2_end_std)
    return {"n_pedestal": 2000, "ma_window": 9, "threshold_s2": 0.4, "s2_clip": 0.02,
            "t_s1": float(s.t_s1), "time_drift": float(s.time_drift), "ts2_tol": -2.7,
            "bs_threshold": 0.8, "max_area_s2": 1e5, "min_s2_sep": 1.0, "min_s1_sep": 1.0,
            "s2_window_start": start, "s2_window_end": end, **KERNEL_OPTIONS}


def test_every_frame_equals_the_numpy_definitions(analysed):
    raw_dir, res = analysed
    codes, moved = [], 0
    for name in res.sets.set.values:
        ds = open_set(raw_dir / "waveforms.zarr", str(name), raw=True)
        scale, offset = ds.waveform.attrs["scale_factor"], ds.waveform.attrs["add_offset"]
        t0, dt = ds.time.attrs["first_sample"], ds.time.attrs["sample_spacing"]
        p = _params(res.sets, name)
        frames = res.frames.sel(set=name)
        frames = frames.isel(frame=np.flatnonzero(frames.valid.values))
        waveforms = ds.waveform.values
        for k in range(frames.sizes["frame"]):
            raw, got = waveforms[k], frames.isel(frame=k)
            ref = reference_pass1(raw, scale, offset, t0, dt, p)
            for var in ("s2_start", "s2_end", "s2_duration"):
                np.testing.assert_array_equal(float(got[var]), ref[var], err_msg=var)
            np.testing.assert_allclose(float(got.xray_area), ref["xray_area"], rtol=1e-9,
                                       atol=1e-12)
            assert int(got.xray_code) == ref["xray_code"]
            np.testing.assert_allclose(float(got.s2_area),
                                       reference_pass2(raw, scale, offset, t0, dt, p),
                                       rtol=1e-9, atol=1e-12)
            codes.append(ref["xray_code"])
            reference = reference_pass1(raw, scale, offset, t0, dt, p | {"s2_timing": 0.0})
            moved += bool(np.isfinite(reference["s2_start"])
                          and ref["s2_start"] != reference["s2_start"])
    # every option acted on this run: starts moved past a gap, both new outcomes occur
    assert moved > 20, moved
    assert codes.count(int(XrayOutcome.EXCESSIVE_S1)) > 20
    assert codes.count(int(XrayOutcome.BELOW_MIN_AREA)) > 2


def test_set_statistics_windows_and_fits_follow_from_the_frames(analysed):
    _, res = analysed
    sets = res.sets
    for name in sets.set.values:
        s, f = sets.sel(set=name), res.frames.sel(set=name)
        valid = f.valid.values
        # §4 statistics of the clean starts
        stats = s2_window_stats(f.s2_start.values[valid], f.s2_end.values[valid],
                                f.s2_duration.values[valid])
        assert float(s.t_s2_start_mean) == stats.t_s2_start_mean
        assert float(s.s2_duration_std) == stats.s2_duration_std
        # §15 widened window: [start - 1.0 sigma_start, end + 0.5 sigma_end]
        assert bool(s.s2_window_estimated)
        assert float(s.s2_window_start) == pytest.approx(
            stats.t_s2_start_mean - 1.0 * stats.t_s2_start_std, rel=1e-12)
        assert float(s.s2_window_end) == pytest.approx(
            stats.t_s2_end_mean + 0.5 * stats.t_s2_end_std, rel=1e-12)
        # §15 two-stage Crystal Ball on the histogram of the frames' areas
        counts, edges = np.histogram(f.s2_area.values[valid], bins=100, range=(0.0, 4.0))
        np.testing.assert_array_equal(s.s2_area_hist.values[:100], counts)
        expected = fit_s2_two_stage(counts, edges, bg_fraction=0.01, two_stage=True,
                                    exclude_index=1)
        assert str(s.s2_fit_model.values) == "crystal_ball"
        assert bool(s.s2_two_stage) == expected.two_stage
        assert bool(s.s2_fit_success) == expected.success, str(s.s2_fit_reason.values)
        for var, value in (("s2_area_mean", expected.signal.x0),
                           ("s2_area_sigma", expected.signal.sigma),
                           ("s2_area_ci95", expected.signal.ci95),
                           ("s2_area_beta", expected.signal.beta),
                           ("s2_area_m", expected.signal.m),
                           ("s2_fit_low", expected.signal.fit_range[0])):
            assert float(s[var]) == pytest.approx(value, rel=1e-9), var
        assert float(s.s2_area_ci95) == pytest.approx(1.96 * expected.signal.x0_err)


def test_exports_and_figures_say_which_options_were_used(analysed):
    raw_dir, res = analysed
    plots = raw_dir / "plots"
    diffusion = json.loads((plots / "RUN1_diffusion_analysis.json").read_text())
    assert diffusion["s2_timing"] == {"mode": "clean", "max_gap": 1.0}
    assert diffusion["D_L"] == pytest.approx(float(res.run.D_L))
    assert [row["set"] for row in diffusion["sets"]] == list(res.sets.set.values)
    for name in res.sets.set.values:
        s2 = json.loads((raw_dir / str(name) / "s2_results.json").read_text())
        assert s2["fit_model"] == "crystal_ball"
        assert s2["s2_timing"] == {"mode": "clean", "max_gap": 1.0}
        assert (s2["params"]["n_sigma_start"], s2["params"]["n_sigma_end"]) == (1.0, 0.5)
        cb = s2["crystal_ball"]
        assert cb["x0"] == s2["mean"] and cb["fit_range"][0] <= cb["x0"] <= cb["fit_range"][1]
        assert (cb["background"] is not None) == cb["two_stage"]
        xray = json.loads((raw_dir / str(name) / "xray_results.json").read_text())
        codes = res.frames.xray_code.sel(set=name).values[res.frames.valid.sel(set=name)]
        for outcome in (XrayOutcome.EXCESSIVE_S1, XrayOutcome.BELOW_MIN_AREA):
            assert xray["n_by_reason"][outcome.reason] == int(np.sum(codes == outcome))
        assert xray["params"]["max_area_s1"] == 4.0 and xray["params"]["s2_timing"] == "clean"
        assert (plots / f"{name}_s2_histogram.png").stat().st_size > 0


# ---------------------------------------------------------------- Crystal Ball fits

S2_CB = {"x0": 1.8, "sigma": 0.3, "beta": 1.0, "m": 3.0}


def _fits(seeds, n_zero: int, two_stage: bool, edges):
    cfg = Config({"integrate": {"fit_model": "crystal_ball", "two_stage": two_stage}}).integrate
    fits = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        areas = np.r_[sample_crystal_ball(rng, 6000, **S2_CB, tail="right"),
                      rng.normal(0.0, 0.05, n_zero)]
        counts, _ = np.histogram(areas, bins=edges)
        fit = fit_areas(counts, edges, cfg)
        assert fit["s2_fit_success"], fit["s2_fit_reason"]
        assert fit["s2_two_stage"] == (two_stage and n_zero > 0)
        fits.append(fit)
    return fits


@pytest.mark.parametrize(("n_zero", "two_stage"), [(0, False), (2000, True)])
def test_crystal_ball_fits_recover_the_truth_and_ci95_covers(n_zero, two_stage):
    """Areas drawn from a known right-tailed Crystal Ball (and a zero-area Gaussian
    population for two-stage): x0, sigma and the tail (beta, m) come back within their
    errors, and x0 ± ci95 covers the truth in ~95 % of the seeds."""
    edges = np.linspace(-0.4, 4.0, 111)
    fits = _fits(range(700 + 1000 * two_stage, 900 + 1000 * two_stage), n_zero, two_stage,
                 edges)
    errors = {"x0": "s2_area_ci95", "sigma": "s2_area_sigma_err", "beta": "s2_area_beta_err",
              "m": "s2_area_m_err"}
    values = {"x0": "s2_area_mean", "sigma": "s2_area_sigma", "beta": "s2_area_beta",
              "m": "s2_area_m"}
    for key in ("x0", "sigma", "beta", "m"):
        err = np.array([f[errors[key]] for f in fits]) / (1.96 if key == "x0" else 1.0)
        pull = (np.array([f[values[key]] for f in fits]) - S2_CB[key]) / err
        pull = pull[np.isfinite(pull)]  # m held at its start value has no error
        assert pull.size >= 0.9 * len(fits), key
        assert np.mean(np.abs(pull) < 3) >= 0.95, (key, np.mean(np.abs(pull) < 3))
        assert abs(np.mean(pull)) < 0.4, (key, np.mean(pull))
    covered = np.mean([abs(f["s2_area_mean"] - S2_CB["x0"]) <= f["s2_area_ci95"]
                       for f in fits])
    assert 0.90 <= covered <= 0.99, covered
    if two_stage:
        assert all(f["s2_bg_success"] for f in fits)
        bg = np.array([f["s2_bg_amplitude"] for f in fits])
        assert np.mean(bg) == pytest.approx(n_zero, rel=0.02)
