"""Lineage: every config key and API flag flipped one at a time recomputes exactly the
stages that read it (and those downstream), and what they store changes.

Which stage reads which key is written down here by hand, from ALGORITHMS.md and the
README, not taken from the stage declarations: the test checks the declarations against
it.  The keys are flipped cumulatively on one small run (each flip on top of the last), so
each step recomputes only what that flip touches; which stages a flip reaches is read from
the lineages (:func:`~ratag_xr.runner.planned_lineages`, which compute nothing), checked
against a full run once per distinct set of stages.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ratag_xr.config import Config
from ratag_xr.errors import ConfigError
from ratag_xr.params import PARAMS
from ratag_xr.pipeline import (
    load_results,
    open_analysis,
    prepare_run,
    run_calibration_analysis,
    run_ion_integration,
)
from ratag_xr.pipeline.results import load_stage, stored_lineage
from ratag_xr.runner import plan_stages, planned_lineages, run_stages
from ratag_xr.simulate import SimConfig, simulate_run

SIM = SimConfig(sets=((150, 1650), (300, 1800), (450, 1950)), files_per_set=2,
                frames_per_file=40, sampling_rate_gs=1.0, record_start_us=-4.0,
                record_end_us=26.0, xray_fraction=0.9, seed=8,
                alpha=True)  # two channels, so that flipping an alpha key changes results
ALL = ("prepare", "frames", "integrate", "classify", "calibrate", "alpha", "isotopes",
       "export", "plots", "report")
READS = {  # stage -> the stages whose results it reads (ALGORITHMS.md: §1-§10)
    "prepare": (), "frames": ("prepare",), "integrate": ("frames",), "classify": ("frames",),
    "calibrate": ("prepare", "frames", "integrate"),
    "alpha": ("frames",),  # §13 (and the alpha monitor sets' waveforms)
    "isotopes": ("frames", "alpha", "calibrate"),  # §14
    "export": ("prepare", "frames", "integrate", "classify", "calibrate", "alpha", "isotopes"),
    "plots": ("prepare", "frames", "integrate", "classify", "calibrate", "alpha", "isotopes"),
    "report": ("prepare", "frames", "integrate", "classify", "calibrate", "alpha", "isotopes",
               "export", "plots"),
}
_PASS1 = {"prepare.n_pedestal", "prepare.ma_window", "prepare.threshold_s2",
          "prepare.s2_clip", "prepare.s2_timing", "prepare.s2_max_gap", "xray.ts2_tol",
          "xray.bs_threshold", "xray.max_area_s1", "xray.max_area_s2", "xray.min_s2_sep",
          "xray.min_s1_sep", "xray.min_xray_area"}  # §4, §7 and their §15 options
_WIDENED = {"integrate.n_sigma_start", "integrate.n_sigma_end"}  # §15 window
_PASS2 = {"prepare.n_pedestal", "prepare.ma_window", "integrate.bs_threshold"}
_ALPHA = {"alpha.alpha_threshold_bs", "alpha.savgol_window", "alpha.sca_factor"}  # §12
DIRECT = {  # stage -> the config keys it reads itself
    "prepare": {"run.pressure", "run.temperature", "run.drift_gap", "run.el_gap", "run.run_id",
                "run.el_field",  # §1 EL field given directly (the group's run files)
                "run.sets", "run.exclude", "ingest.nfiles", "prepare.s1_batches",
                "prepare.s1_min_height",
                "prepare.s1_min_distance", "prepare.s1_sigma_threshold",
                "prepare.s1_hist_bins", "prepare.estimate_s2_windows", "prepare.s2_method",
                "prepare.s2_duration_cuts", "prepare.s2_min_values", "prepare.s1_frames",
                "prepare.s2_window_frames"} | _PASS1,  # S2 crossings
    "frames": {"run.run_id", "ingest.nfiles", "integrate.use_estimated_s2_windows",
               "prepare.s1_frames", "prepare.s2_window_frames", "integrate.ts2_tol",
               "integrate.width_s2"} | _WIDENED | _PASS1 | _PASS2 | _ALPHA,
    "integrate": {"run.run_id", "integrate.bin_cuts", "integrate.nbins",
                  "integrate.exclude_index", "integrate.auto_range",
                  "integrate.per_set", "integrate.fit_model", "integrate.two_stage",
                  "integrate.bg_fraction", "integrate.bg_threshold", "integrate.bg_cutoff",
                  "integrate.n_sigma", "integrate.upper_limit"},  # §6, §15 fit
    "classify": {"run.run_id"},
    "calibrate": {"run.run_id", "run.e_xray", "run.w_value", "run.e_recoil",
                  "calibrate.xray_bin_cuts", "calibrate.xray_nbins",
                  "calibrate.xray_exclude_index",
                  "calibrate.g_s2",  # the gain of another run, or a value (§8)
                  "alpha.target_isotope"},  # E_R of the run's r (§14)
    "alpha": {"run.run_id", "run.sets", "run.exclude", "ingest.nfiles",  # monitor sets
              "alpha.nbins", "alpha.energy_range", "alpha.peaks", "alpha.order",
              "alpha.n_sigma"} | _ALPHA,
    "isotopes": {"run.run_id", "run.w_value", "integrate.bin_cuts", "integrate.nbins",
                 "integrate.exclude_index", "integrate.auto_range", "integrate.per_set",
                 "integrate.fit_model", "integrate.two_stage", "integrate.bg_fraction",
                 "integrate.bg_threshold", "integrate.bg_cutoff", "integrate.n_sigma",
                 "integrate.upper_limit",  # the per-isotope fits are §6/§15 fits
                 "alpha.isotope_ranges"},  # single-isotope runs: SCA ranges tag frames
    "export": {"run.run_id", "integrate.width_s2"} | _WIDENED | _PASS1 | _PASS2 | _ALPHA,
    "plots": {"run.run_id", "ingest.nfiles", "prepare.n_pedestal", "integrate.exclude_index",
              "calibrate.xray_exclude_index"},
    "report": {"run.run_id"},
}
#: Keys that cannot change a result (where the raw files are, how they are stored, where
#: Dask runs): flipping them recomputes nothing.
NO_RESULT = {"run.run_dir", "ingest.chunk_mb", "ingest.compressor", "ingest.clevel",
             "ingest.shuffle", "ingest.direct_io", "cluster.spec", "cluster.workers",
             "cluster.threads", "cluster.memory", "cluster.jobs", "cluster.processes"}
#: Keys that decide what the store holds: a new value needs a rebuilt store (an error).
STORE_KEYS = {"run.polarity", "run.channel", "run.channels"}
SET_NAMES = ("FieldScan_Gate150_Anode1650", "FieldScan_Gate300_Anode1800",
             "FieldScan_Gate450_Anode1950")
#: key -> the value it is flipped to (each differs from the default)
FLIPS = {
    # first, while all three sets are in: each changes the alpha results of 240 frames
    # (the order first: with every peak fitted, the automatic order is 2)
    "alpha.order": 1, "alpha.n_sigma": 2.5, "alpha.alpha_threshold_bs": 250.0,
    "alpha.savgol_window": 401, "alpha.sca_factor": 1.06, "alpha.nbins": 100,
    "alpha.energy_range": [4.1, 8.1],
    "alpha.peaks": [{"name": "Th228", "x0": 4.5, "window": [4.0, 4.6], "energy_mev": 5.42315},
                    {"name": "Rn220", "x0": 5.4, "window": [5.0, 5.5], "energy_mev": 6.40484},
                    {"name": "Po216", "x0": 5.9, "window": [5.5, 6.1], "energy_mev": 6.90628}],
    # a single-isotope run's window, then its target (before run.e_recoil, which wins)
    "alpha.isotope_ranges": {"Ra224": [4.6, 5.0]}, "alpha.target_isotope": "Ra224",
    "run.run_id": "RUNX", "run.pressure": 2.3, "run.temperature": 300.0,
    "run.drift_gap": 1.5, "run.el_gap": 0.9, "run.el_field": 2000.0, "run.w_value": 23.0,
    "run.e_xray": 12000.0,
    "run.e_recoil": 96840.0, "run.sets": ["*Gate150*", "*Gate300*"],
    "run.exclude": ["*Gate300*"],
    "prepare.n_pedestal": 1500, "prepare.ma_window": 11, "prepare.threshold_s2": 0.5,
    "prepare.s2_clip": 0.05, "prepare.s1_batches": 3, "prepare.s1_min_height": 0.002,
    "prepare.s1_min_distance": 100, "prepare.s1_sigma_threshold": 2.0,
    "prepare.s1_hist_bins": 30, "prepare.s2_method": "mad", "prepare.s2_duration_cuts": [9.0, 20.0],
    "prepare.s2_min_values": 12, "prepare.s1_frames": 60, "prepare.s2_window_frames": 70,
    "xray.ts2_tol": -2.5, "xray.bs_threshold": 0.9, "xray.max_area_s2": 2000.0,
    "xray.min_s2_sep": 0.8, "xray.min_s1_sep": 1.2,
    "integrate.bs_threshold": 0.7, "integrate.ts2_tol": -2.5, "integrate.width_s2": 1.3,
    "integrate.bin_cuts": [0.0, 5.0],
    "integrate.nbins": 60, "integrate.exclude_index": 2, "integrate.auto_range": True,
    "integrate.per_set": {"FieldScan_Gate150_Anode1650": {"nbins": 40}},
    "calibrate.xray_bin_cuts": [0.5, 18.0], "calibrate.xray_nbins": 80,
    "calibrate.xray_exclude_index": 1, "calibrate.g_s2": {"value": 0.01, "error": 0.001},
    # §15: each option switched on, then its settings changed
    "prepare.s2_timing": "clean", "prepare.s2_max_gap": 0.5,
    "xray.max_area_s1": 1.0, "xray.min_xray_area": 5.0,
    "integrate.n_sigma_start": 1.0, "integrate.n_sigma_end": 0.5,
    "integrate.fit_model": "crystal_ball", "integrate.bg_fraction": 0.0,
    "integrate.two_stage": True, "integrate.bg_threshold": 0.2, "integrate.bg_cutoff": 0.4,
    "integrate.n_sigma": 3.0, "integrate.upper_limit": 3.5,
    "ingest.chunk_mb": 8.0, "ingest.compressor": "zstd", "ingest.clevel": 3,
    "ingest.shuffle": "shuffle", "ingest.direct_io": "on", "cluster.spec": "local",
    "cluster.workers": 1, "cluster.threads": 1, "cluster.memory": "1GiB", "cluster.jobs": 1,
    "cluster.processes": "false",
    # last: each of these makes later flips of the window statistics or of the data moot
    "integrate.use_estimated_s2_windows": False, "prepare.estimate_s2_windows": False,
    "ingest.nfiles": 1,
}
#: keys whose flip leaves this small run's stored results equal (the lineage still
#: changes): why, for each
SAME_RESULT = {
    "run.run_dir": "where the raw files are",
    "prepare.s1_min_height": "the S1 peaks are far above both heights",
    "prepare.s1_min_distance": "one peak per batch mean either way",
    "prepare.s2_min_values": "every set has far more than 12 durations",
    "xray.max_area_s2": "no frame sums that much above threshold after the window",
    "prepare.s1_batches": "every batch mean has its S1 peak in the same histogram bin",
    "prepare.s1_sigma_threshold": "every S1 candidate is within 1 std of their mean already",
    "calibrate.xray_exclude_index": "the first X-ray bin (0.6 .. 0.8 mV·µs) is empty",
    "integrate.ts2_tol": "the fallback window is not used while the statistics exist",
    "integrate.width_s2": "the fallback window is not used while the statistics exist",
    "integrate.bg_fraction": "only two-stage fits read it, and two_stage is still off",
    "integrate.bg_threshold": "no area lies between 0.1 and 0.2 mV·µs: the fraction stays",
    "integrate.n_sigma": "the background fit fails here (every zero-area frame is in the "
                         "first bin), so the Crystal Ball starts at bg_cutoff",
}


def expected(key: str) -> set[str]:
    """The stages that read ``key``, and every stage downstream of them."""
    hit = {s for s, keys in DIRECT.items() if key in keys}
    changed = True
    while changed:
        more = {s for s, ups in READS.items() if set(ups) & hit}
        changed = not more <= hit
        hit |= more
    return hit


@pytest.fixture(scope="module")
def raw_run(tmp_path_factory):
    return simulate_run(tmp_path_factory.mktemp("lineage") / "raw", SIM, progress=False)


def _stored(out, stages=ALL) -> dict[str, dict]:
    return {stage: {"lineage": (stored_lineage(out / "results.zarr", stage) or {}).get("hash"),
                    **{p: load_stage(out / "results.zarr", stage, p)
                       for p in ("sets", "frames", "run")}}
            for stage in stages}


def _data_changed(before: dict, after: dict) -> bool:
    for part in ("sets", "frames", "run"):
        a, b = before[part], after[part]
        if (a is None) != (b is None):
            return True
        if a is not None:
            try:
                xr.testing.assert_identical(a, b)  # attributes too (run_id)
            except AssertionError:
                return True
    return False


def test_the_hand_table_covers_every_declared_key():
    Config()
    assert set(FLIPS) | STORE_KEYS | {"run.run_dir"} == set(PARAMS)


def test_flipping_each_key_recomputes_exactly_the_stages_that_read_it(raw_run, tmp_path,
                                                                      client):
    """Per key (flipped on top of the last): the lineages change for exactly the stages of
    the hand table; the stages that read the key, run, store a different result; and once
    per distinct set of stages a full run computes exactly that set and reuses the rest."""
    out = tmp_path / "out"
    values: dict = {}
    targets = ["export", "plots", "report"]

    def analysis(values):
        sections: dict = {}
        for key, value in values.items():
            section, name = key.split(".")
            sections.setdefault(section, {})[name] = value
        run = open_analysis(raw_run, out=out, config=Config(sections, "flips.yaml"),
                            client=client)
        run.progress = False
        return run

    def run_with(values, stages=targets):
        lines: list[str] = []
        return run_stages(analysis(values), stages, say=lines.append), lines

    outcome, _ = run_with(values)
    assert set(outcome.values()) == {"computed"}
    again, lines = run_with(values)
    assert set(again.values()) == {"reused"}, lines
    assert set(plan_stages(analysis(values), targets).values()) == {None}
    full_runs: set[frozenset] = set()
    for key, value in FLIPS.items():
        want = set() if key in NO_RESULT else expected(key)
        direct = {s for s in ALL if key in DIRECT[s] and s not in ("export", "plots", "report")}
        full = frozenset(want) not in full_runs
        # the stages compared are current for the values before the flip
        run_with(values, targets if full else sorted(direct)) if full or direct else None
        before = _stored(out, direct)
        old = planned_lineages(analysis(values), targets)
        values[key] = value  # cumulative: run.exclude acts within run.sets
        new = planned_lineages(analysis(values), targets)
        assert {s for s in ALL if new[s]["hash"] != old[s]["hash"]} == want, key
        if full:  # the runner does what the lineages say
            outcome, lines = run_with(values)
            assert {s for s, o in outcome.items() if o == "computed"} == want, (key, lines)
            full_runs.add(frozenset(want))
        elif direct:
            run_with(values, sorted(direct))
        after = _stored(out, direct)
        if direct and key not in SAME_RESULT:
            assert any(_data_changed(before[s], after[s]) for s in direct), key
    assert len(full_runs) >= 6
    sets = load_results(out).sets.set.values
    assert list(sets) == ["FieldScan_Gate150_Anode1650"]  # run.sets, then run.exclude


def test_store_keys_need_a_rebuild(raw_run, tmp_path, client):
    from ratag_xr.errors import StoreError

    out = tmp_path / "out"
    run = open_analysis(raw_run, out=out, client=client)
    run.progress = False
    run_stages(run, ["prepare"], say=lambda _: None)
    for key, value in (("run.polarity", "positive"), ("run.channels", {"pmt": 1, "alpha": 2})):
        flipped = open_analysis(run, config=Config({"run": {key.split(".")[1]: value}}))
        with pytest.raises(StoreError, match=rf"{key} = .*rebuild"):
            run_stages(flipped, ["prepare"], say=lambda _: None)


def test_api_flags_enter_the_lineage(raw_run, tmp_path, client):
    out = tmp_path / "out"
    lines: list[str] = []
    run = open_analysis(raw_run, out=out, client=client)
    run.progress = False
    prepare_run(run)
    first = stored_lineage(out / "results.zarr", "prepare")["hash"]
    prepare_run(run, estimate_s2_windows=False)
    prep = load_stage(out / "results.zarr", "prepare", "sets")
    assert stored_lineage(out / "results.zarr", "prepare")["hash"] != first
    assert np.isnan(prep.t_s2_start_mean).all() and "not estimated" in str(
        prep.s2_window_reason.values[0])
    run_ion_integration(run, use_estimated_s2_windows=False, flag_plot=False)
    windows = load_stage(out / "results.zarr", "frames", "sets")
    assert not windows.s2_window_estimated.any()  # integrated in the fallback window
    lin = stored_lineage(out / "results.zarr", "frames")
    assert lin["config"]["integrate.use_estimated_s2_windows"] is False
    assert stored_lineage(out / "results.zarr", "prepare")["hash"] == first  # the flag was
    # one call's: this one ran with the run's config again
    # a Run handed over keeps the keywords given: force recomputes, nfiles is the test mode
    run_stages(open_analysis(run, force=True), ["classify"], say=lines.append)
    assert "stage prepare: computed (--force)" in "\n".join(lines), lines
    lines.clear()
    run_stages(open_analysis(run, nfiles=1), ["integrate"], say=lines.append)
    assert any(line.startswith("stage frames: computed (") and "raw files" in line
               for line in lines), lines
    # the ion fits given to the calibration stand in its lineage by their content
    ion = run_ion_integration(run, flag_plot=False)
    _, stored_sets = run_calibration_analysis(run, flag_plot=False)
    stored_cal = stored_lineage(out / "results.zarr", "calibrate")
    doubled = ion.assign(s2_area_mean=ion.s2_area_mean * 2)
    _, sets = run_calibration_analysis(run, ion_fitted_areas=doubled, flag_plot=False)
    given = stored_lineage(out / "results.zarr", "calibrate")
    assert given["upstream"]["integrate"].startswith("given:")
    assert given["hash"] != stored_cal["hash"]
    np.testing.assert_allclose(sets.norm_A_ion, 2 * stored_sets.norm_A_ion)
    with pytest.raises(ConfigError, match="ion_fitted_areas"):
        run_calibration_analysis(run, ion_fitted_areas=xr.Dataset(), flag_plot=False)
