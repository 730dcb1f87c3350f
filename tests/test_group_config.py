"""The group's own run configurations read as they are (ratag_xr.group_config), the gain
g_S2 of an X-ray run applied to a recoil run (calibrate.g_s2), and single-isotope runs
(alpha.target_isotope, alpha.isotope_ranges), on simulated runs.

The files are written here from the group's key list with the values of their RUN30 file
(a single-isotope Ra-224 run), once in the current layout and once in the older nesting
(``energy_mapping`` inside ``multi_isotope``); the fit settings and frame counts are the
group's kind of values scaled to this small simulated run (2 sets x 2 files x 40 frames,
1 GS/s).  The expected recombination numbers are computed here from ALGORITHMS.md §8/§14
and the stored fits.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import xarray as xr
import yaml

from ratag_xr import group_config
from ratag_xr.cli import _run_and_config, main
from ratag_xr.config import Config, load_config
from ratag_xr.errors import ConfigError, RatagError
from ratag_xr.params import warnings_against_data
from ratag_xr.pipeline import load_results, open_analysis, run_pipeline
from ratag_xr.pipeline.results import stored_lineage
from ratag_xr.pipeline.summary import run_failed
from ratag_xr.runner import run_stages
from ratag_xr.simulate import SimConfig, simulate_run

GEOMETRY = dict(sets=((150, 1650), (300, 1800)), files_per_set=2, frames_per_file=40,
                sampling_rate_gs=1.0, record_start_us=-4.0, record_end_us=26.0)
#: a single-isotope Ra-224 run (the trigger selects its alphas), with X-rays
RECOIL = SimConfig(**GEOMETRY, seed=5, alpha=True, alpha_isotopes=("Ra224",),
                   xray_fraction=0.9)
#: the X-ray run whose g_S2 the recoil run uses (RUN21's role)
XRAY = SimConfig(**GEOMETRY, seed=6, xray_fraction=0.9, run_name="RUN21")
RA224_RANGE = [4.6, 5.0]  # SCA MeV: the §13 table's Ra224 peak is at 4.8
#: ALGORITHMS.md §14 for Ra-224, typed in again: Q (keV) and A
E_R_RA224_EV = 5788.87 * 4 / 224 * 1e3  # 103.37 keV


def their_file(layout: str, raw_data_path: str, *, dt: float = 0.001, rate: float = 1e9,
               gs2: str | None = "xray_calibration_results.json", **extra) -> dict:
    """One of the group's run configurations (RUN30's values), as nested mappings."""
    energy_mapping = {"generate": True, "files_per_chunk": 10, "format": "8b", "scale": 0.1,
                      "pattern": "*.wfm", "savgol_window": 501, "nbins": 120,
                      "energy_range": [4, 8.2], "n_sigma": 2.0, "use_quadratic": True}
    values = {
        "run_id": "RUN_30",
        "description": "Single isotope Ra224 analysis, 1.85 kV/cm EL field, Bias -50 V",
        "data": {"raw_data_path": raw_data_path, "output_base": raw_data_path},
        "experiment": {"el_field": 1850.0, "target_isotope": "Ra224", "pressure": 2.0,
                       "temperature": 297.0, "sampling_rate": rate, "el_gap": 0.8,
                       "drift_gap": 1.4, "width_s2": 1.1, "W_value": 22.0,
                       "E_gamma_xray": 12300.0},
        "multi_isotope": {"enabled": False, "isotope_ranges": {"Ra224": RA224_RANGE}},
        "pipeline": {
            "preparation": {"max_frames_s1": 60, "max_frames_s2": 60, "threshold_s1": 1.0,
                            "threshold_s2": 0.8, "s2_duration_cuts": [1, 35]},
            "integration": {
                "max_frames": None,
                "integration_config": {"n_pedestal": 100, "ma_window": 9,
                                       "bs_threshold": 0.3, "n_sigma_start": 1.0,
                                       "n_sigma_end": 0.5, "dt": dt},
                "fit_config": {"bin_cuts": [0, 5], "nbins": 100, "exclude_index": 1,
                               "bg_threshold": 0.1, "bg_cutoff": 0.3, "n_sigma": 3.0,
                               "upper_limit": 4.5}},
            "xray_classification": {"max_frames": None, "bs_threshold": 0.5,
                                    "max_area_s1": "1.0e5", "max_area_s2": "1.0e5",
                                    "min_xray_area": 0.0, "min_s2_sep": 1.0,
                                    "min_s1_sep": 0.5, "n_pedestal": 200, "ma_window": 10,
                                    "dt": dt}},
        "recombination_analysis": {"gs2_path": gs2},
    }
    if layout == "older":
        values["multi_isotope"]["energy_mapping"] = energy_mapping
    else:
        values["energy_mapping"] = energy_mapping
    for key, value in extra.items():  # "a.b.c": value
        *parents, last = key.split(".")
        node = values
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return values


def write_their_file(path, values: dict):
    """Their YAML, numbers like 1.0e5 written as they write them (YAML 1.1 reads text)."""
    text = yaml.safe_dump(values, sort_keys=False)
    path.write_text(text.replace("'1.0e5'", "1.0e5"))
    return path


#: the ratag_xr config the current-layout file stands for, written by hand from the table
HAND = {
    "run": {"run_id": "RUN_30", "el_field": 1850.0, "pressure": 2.0, "temperature": 297.0,
            "el_gap": 0.8, "drift_gap": 1.4, "w_value": 22.0, "e_xray": 12300.0},
    "alpha": {"target_isotope": "Ra224", "isotope_ranges": {"Ra224": RA224_RANGE},
              "savgol_window": 501, "nbins": 120, "energy_range": [4, 8.2], "n_sigma": 2.0,
              "order": 2},
    "prepare": {"s1_frames": 60, "s2_window_frames": 60, "threshold_s2": 0.8,
                "s2_duration_cuts": [1, 35], "n_pedestal": 100, "ma_window": 9},
    "integrate": {"width_s2": 1.1, "bs_threshold": 0.3, "n_sigma_start": 1.0,
                  "n_sigma_end": 0.5, "bin_cuts": [0, 5], "nbins": 100, "exclude_index": 1,
                  "bg_threshold": 0.1, "bg_cutoff": 0.3, "n_sigma": 3.0, "upper_limit": 4.5,
                  "fit_model": "crystal_ball", "two_stage": True},
    "xray": {"bs_threshold": 0.5, "max_area_s1": 1e5, "max_area_s2": 1e5,
             "min_xray_area": 0.0, "min_s2_sep": 1.0, "min_s1_sep": 0.5},
}


def hand_config(run_dir, gain) -> Config:
    values = json.loads(json.dumps(HAND))
    values["run"]["run_dir"] = str(run_dir)
    values["calibrate"] = {"g_s2": gain}
    return Config(values, "hand.yaml")


def flat_keys(values: dict, prefix: str = "") -> set[str]:
    """Their file's leaf keys, in the current nesting."""
    out = set()
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if dotted == "multi_isotope.energy_mapping":
            dotted = "energy_mapping"
        if isinstance(value, dict) and dotted != "multi_isotope.isotope_ranges":
            out |= flat_keys(value, f"{dotted}.")
        else:
            out.add(dotted)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, client):
    """The two simulated runs, the X-ray run analysed, its gain written as the group's
    JSON, and the recoil run analysed with the group's current-layout file."""
    root = tmp_path_factory.mktemp("group")
    recoil = simulate_run(root / "raw", RECOIL, progress=False)
    xray = simulate_run(root / "xraw", XRAY, progress=False)
    xout = root / "xout"
    run_pipeline(xray, out=xout, client=client, stages=["ingest", "calibrate"],
                 progress=False)
    source = load_results(xout).run
    gain = {"gs2": float(source.g_S2), "d_gs2": float(source.g_S2_err), "Wi": 22}
    configs = root / "configs"
    configs.mkdir()
    (configs / "xray_calibration_results.json").write_text(json.dumps(gain))
    current = write_their_file(configs / "run30_analysis.yaml", their_file(
        "current", "E:/Pablos_Mighty_measurements/RUN30_Ra224_EL1500", dt=0.0002,
        rate=5.0e9))
    older = write_their_file(configs / "run30_older.yaml", their_file(
        "older", "../raw/RUN1", dt=0.001, rate=1.0e9))
    out = root / "out"
    run_dir, config = _run_and_config(str(recoil), str(current))  # the command line's folder
    run = open_analysis(run_dir, out=out, config=config, client=client)
    run.progress = False
    lines: list[str] = []
    run_stages(run, ["isotopes"], say=lines.append)
    return {"root": root, "recoil": recoil, "xray": xray, "xout": xout, "gain": gain,
            "current": current, "older": older, "out": out, "config": config,
            "lines": lines, "results": load_results(out)}


# ---------------------------------------------------------------- the files


@pytest.mark.parametrize("layout", ["current", "older"])
def test_every_key_of_their_file_lands_on_its_parameter_or_in_the_ignored_list(runs,
                                                                               layout):
    path = runs[layout]
    values = yaml.safe_load(path.read_text())
    config = load_config(path)
    origin = config.origin
    assert origin.layout == layout
    mapped = {m.key for m in origin.mapped}
    ignored = {key for key, _, _ in origin.ignored}
    assert mapped | ignored == flat_keys(values) and not mapped & ignored
    assert ignored == {"description", "data.output_base", "experiment.sampling_rate",
                       "energy_mapping.generate", "energy_mapping.files_per_chunk",
                       "energy_mapping.format", "energy_mapping.scale",
                       "energy_mapping.pattern", "pipeline.preparation.threshold_s1",
                       "pipeline.integration.integration_config.dt",
                       "pipeline.xray_classification.dt"}
    assert all(why for _, _, why in origin.ignored)
    gain = runs["gain"]
    expected = hand_config(runs["recoil"], {"value": gain["gs2"], "error": gain["d_gs2"]})
    if layout == "current":
        assert config.run.run_dir == "E:/Pablos_Mighty_measurements/RUN30_Ra224_EL1500"
    else:
        assert config.run.run_dir == str(runs["recoil"].resolve())
    assert config.replace({"run.run_dir": str(runs["recoil"])}) == expected
    # the older nesting: the same keys, energy_mapping inside multi_isotope
    assert config.alpha.savgol_window == 501 and config.alpha.order == 2
    assert config.get("xray.max_area_s1") == 1e5  # written 1.0e5, as their files do
    # one pedestal and one moving average for every per-frame step: integration's
    assert config.prepare.n_pedestal == 100 and config.prepare.ma_window == 9
    both = [w for w in origin.warnings if "prepare.n_pedestal" in w]
    assert len(both) == 1 and "xray_classification.n_pedestal = 200" in both[0] \
        and "integration_config.n_pedestal = 100" in both[0]


def test_the_converted_config_is_the_same_config_with_a_comment_per_key(runs, tmp_path):
    target = tmp_path / "ratag.yaml"
    conversion = group_config.import_config(runs["current"], target, run_dir=runs["recoil"])
    text = target.read_text()
    converted = load_config(target)
    assert converted == runs["config"]
    assert converted.origin is None  # a plain ratag_xr config now
    for keys in converted.given().values():
        for key in keys:
            line = next(ln for ln in text.splitlines() if ln.startswith(f"  {key}: "))
            assert "  # " in line, line
    assert "#   experiment.sampling_rate = 5000000000.0: the headers' sample spacing" in text
    assert "pipeline.integration.integration_config.n_pedestal = 100" in text
    assert conversion.origin.description in text


def test_an_unknown_key_is_an_error_naming_it_and_the_file(runs, tmp_path):
    bad = write_their_file(tmp_path / "bad.yaml", their_file(
        "current", "raw", gs2=None, **{"pipeline.integration.fit_config.smooth": 4}))
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key "
                                          r"pipeline\.integration\.fit_config\.smooth"):
        load_config(bad)
    twice = their_file("older", "raw", gs2=None)
    twice["energy_mapping"] = {"nbins": 100}
    with pytest.raises(ConfigError, match="energy_mapping.nbins is given twice"):
        load_config(write_their_file(tmp_path / "twice.yaml", twice))
    mixed = their_file("current", "raw", gs2=None)
    mixed["prepare"] = {"s2_method": "mad"}
    with pytest.raises(ConfigError, match="mixes the group's layout with ratag_xr sections"):
        load_config(write_their_file(tmp_path / "mixed.yaml", mixed))
    odd = their_file("current", "raw", gs2=None,
                     **{"pipeline.integration.integration_config.ma_window": 10})
    with pytest.raises(ConfigError, match=r"integration_config\.ma_window: prepare\.ma_window "
                                          r"= 10 must be odd"):
        load_config(write_their_file(tmp_path / "odd.yaml", odd))


def test_a_windows_raw_data_path_is_reported_and_the_command_line_folder_wins(runs, capsys):
    with pytest.raises(RatagError, match=r"data\.raw_data_path = 'E:/Pablos_Mighty_"
                                         r".*Windows path .*ratag-xr run RUN_DIR --config"):
        _run_and_config(str(runs["current"]))
    run_dir, config = _run_and_config(str(runs["recoil"]), str(runs["current"]))
    assert run_dir == runs["recoil"] and config.run.run_dir == str(runs["recoil"].resolve())
    capsys.readouterr()
    assert main(["run", str(runs["current"]), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "11 with no meaning here" in err and "ratag-xr run RUN_DIR --config" in err


def test_config_import_on_the_command_line(runs, tmp_path, capsys):
    target = tmp_path / "ratag.yaml"
    assert main(["config", "import", str(runs["older"]), "-o", str(target)]) == 0
    assert "ratag_xr run config written to" in capsys.readouterr().out
    assert load_config(target) == load_config(runs["older"])
    assert main(["config", "import", str(target), "-o", str(tmp_path / "again.yaml")]) == 2
    assert "reads as a ratag_xr config already" in capsys.readouterr().err


def test_max_frames_becomes_files_per_set_from_the_headers(runs, tmp_path):
    path = write_their_file(tmp_path / "frames.yaml", their_file(
        "current", str(runs["recoil"]), gs2=None,
        **{"pipeline.integration.max_frames": 50,
           "pipeline.xray_classification.max_frames": 70}))
    config = load_config(path)
    assert config.ingest.nfiles is None
    assert any("xray_classification.max_frames = 70" in w for w in config.origin.warnings)
    resolved = group_config.resolve(config, runs["recoil"])
    assert resolved.ingest.nfiles == 2  # ceil(50 / 40 frames per file)
    assert "ingest.nfiles = 2" in resolved.origin.warnings[-1]
    assert open_analysis(path).nfiles == 2  # the API resolves it too


def test_their_dt_and_sampling_rate_against_the_headers(runs, client):
    warnings = [line for line in runs["lines"] if line.startswith("warning: ")]
    assert any("experiment.sampling_rate = 5e+09 Hz disagrees with the headers: 1e+09 Hz"
               in w for w in warnings), warnings
    assert any("integration_config.dt = 0.0002 µs disagrees with the headers: 0.001 µs"
               in w for w in warnings), warnings
    # the older file says 1 GS/s: no warning
    older = open_analysis(runs["older"], out=runs["out"], client=client)
    lines: list[str] = []
    run_stages(older, ["prepare"], say=lines.append)
    assert not [line for line in lines if line.startswith("warning: ")], lines


# ---------------------------------------------------------------- the same numbers


def test_a_run_with_their_file_gives_the_numbers_of_the_hand_written_config(runs, client):
    gain = runs["gain"]
    hand = hand_config(runs["recoil"], {"value": gain["gs2"], "error": gain["d_gs2"]})
    # the same output folder: every stage is reused (the same values, the same lineage)
    for config in (hand, load_config(runs["older"])):
        run = open_analysis(runs["recoil"], out=runs["out"], config=config, client=client)
        run.progress = False
        outcome = run_stages(run, ["isotopes"], say=lambda _: None)
        assert set(outcome.values()) == {"reused"}, outcome
    # and computed afresh, the same numbers
    other = runs["root"] / "hand-out"
    run_pipeline(runs["recoil"], out=other, config=hand, client=client,
                 stages=["ingest", "isotopes"], progress=False)
    ours, theirs = load_results(other), runs["results"]
    for part in ("sets", "run", "frames"):
        xr.testing.assert_identical(getattr(ours, part), getattr(theirs, part))
    assert np.isfinite(theirs.sets.s2_area_mean).all()
    assert (theirs.sets.EL_field == 1850.0).all()  # given directly, not from the set name
    assert theirs.sets.s2_fit_model.values.tolist() == ["crystal_ball"] * 2


# ---------------------------------------------------------------- g_S2 of another run


def _expected_recombination(area, ci95, g, g_err, n_exp):
    """§8: N = A / g, r = 1 - N / N_exp; ion-only and ion + gain uncertainties (95 %)."""
    n = area / g
    n_err_ion = ci95 / g
    n_err = np.hypot(n_err_ion, n * g_err / g)
    return 1 - n / n_exp, n_err_ion / n_exp, n_err / n_exp


def test_the_gain_of_an_xray_run_applied_to_a_recoil_run(runs, client):
    xout, out = runs["xout"], runs["root"] / "gain-out"
    config = hand_config(runs["recoil"], str(xout))
    run = open_analysis(runs["recoil"], out=out, config=config, client=client)
    run.progress = False
    run_stages(run, ["isotopes"], say=lambda _: None)

    def check():
        source = load_results(xout).run
        res = load_results(out)
        g, g_err = float(source.g_S2), float(source.g_S2_err)
        assert float(res.run.g_S2) == g and float(res.run.g_S2_err) == g_err
        assert str(res.run.g_S2_source.values.item()) == str(xout)
        source_hash = stored_lineage(xout / "results.zarr", "calibrate")["hash"]
        assert str(res.run.g_S2_source_lineage.values.item()) == source_hash
        external = stored_lineage(out / "results.zarr", "calibrate")["external"]
        assert external["calibrate.g_s2"]["lineage"] == source_hash
        n_exp = E_R_RA224_EV / 22.0  # the target's recoil energy (run.e_recoil not given)
        r, r_err_ion, r_err = _expected_recombination(
            res.sets.s2_area_mean.values, res.sets.s2_area_ci95.values, g, g_err, n_exp)
        np.testing.assert_allclose(res.sets.r, r, rtol=1e-12)
        np.testing.assert_allclose(res.sets.r_err_ion, r_err_ion, rtol=1e-12)
        np.testing.assert_allclose(res.sets.r_err, r_err, rtol=1e-12)
        np.testing.assert_allclose(res.sets.norm_A_ion,
                                   res.sets.s2_area_mean / (g * 12300.0 / 22.0), rtol=1e-12)
        iso = res.sets.sel(isotope="Ra224")
        r, r_err_ion, r_err = _expected_recombination(
            iso.iso_s2_area_mean.values, iso.iso_s2_area_ci95.values, g, g_err, n_exp)
        np.testing.assert_allclose(iso.iso_r, r, rtol=1e-12)
        np.testing.assert_allclose(iso.iso_r_err, r_err, rtol=1e-12)
        # this run's own X-ray fit, beside it
        assert bool(res.run.xray_fit_success)
        np.testing.assert_allclose(float(res.run.g_S2_own),
                                   float(res.run.A_x_mean) / float(res.run.N_e_exp))
        assert not np.isclose(float(res.run.g_S2_own), g)
        return g

    before = check()
    # the X-ray run's result changes: the recoil run's calibrate (and what reads it) redo
    run_pipeline(runs["xray"], out=xout, client=client, stages=["ingest", "calibrate"],
                 config=Config({"calibrate": {"xray_nbins": 80}}), progress=False)
    lines: list[str] = []
    outcome = run_stages(run, ["isotopes"], say=lines.append)
    assert {s for s, o in outcome.items() if o == "computed"} == {"calibrate", "isotopes"}
    assert any(line.startswith("stage calibrate: computed (external calibrate.g_s2 changed)")
               for line in lines), lines
    assert check() != before


def test_a_gain_folder_without_a_calibration_is_refused_before_any_pass(runs, tmp_path,
                                                                        client):
    config = hand_config(runs["recoil"], str(tmp_path))
    run = open_analysis(runs["recoil"], out=runs["out"], config=config, client=client)
    with pytest.raises(ConfigError, match="holds no calibrate result"):
        run_stages(run, ["calibrate"], say=lambda _: None)
    with pytest.raises(ConfigError, match="error = -1 must be a finite number >= 0"):
        Config({"calibrate": {"g_s2": {"value": 0.01, "error": -1}}})
    # a source that counted its electrons with another W-value: a warning naming both
    other_w = hand_config(runs["recoil"], str(runs["xout"])).replace({"run.w_value": 23.0})
    assert any("run.w_value = 22 eV, this run 23 eV" in text
               for text in warnings_against_data(other_w, {"dt_us": {}}))


def test_a_run_with_another_runs_gain_has_not_failed_without_its_own_xray_fit(runs):
    res = runs["results"]
    no_fit = res.run.assign(xray_fit_success=False, xray_fit_reason="no X-rays")
    assert run_failed(dataclasses.replace(res, run=no_fit)) == []
    own = no_fit.assign(g_S2_source="this run's X-ray fit")
    assert run_failed(dataclasses.replace(res, run=own)) == [
        "X-ray calibration failed: no X-rays"]


# ---------------------------------------------------------------- single-isotope runs


def test_a_single_isotope_ra224_run_is_tagged_by_its_range_and_uses_103_keV(runs, client):
    res = runs["results"]
    frames = res.frames
    valid = frames.valid.values
    sca = frames.alpha_energy_sca.values
    inside = valid & (sca >= RA224_RANGE[0]) & (sca <= RA224_RANGE[1])
    expected = np.where(inside, "Ra224", "untagged")
    assert (np.asarray(frames.isotope.values, dtype=str) == expected).all()
    truth = dict(np.load(runs["recoil"] / "truth_frames.npz"))
    assert set(np.unique(truth["alpha_isotope"])) <= {-1, 1}  # Ra224 (index 1) only
    assert inside.sum() / valid.sum() > 0.8
    assert str(res.run.isotope_tagging.values.item()) == "sca"
    assert float(res.run.iso_sca_lo.sel(isotope="Ra224")) == RA224_RANGE[0]
    np.testing.assert_allclose(float(res.run.E_recoil.sel(isotope="Ra224")), 103.37,
                               atol=0.005)
    g = runs["gain"]["gs2"]  # their gs2_path JSON: the X-ray run's gain
    assert float(res.run.g_S2) == g
    n_exp = E_R_RA224_EV / 22.0
    np.testing.assert_allclose(res.sets.r, 1 - res.sets.s2_area_mean / g / n_exp,
                               rtol=1e-12)
    iso = res.sets.sel(isotope="Ra224")
    np.testing.assert_allclose(iso.iso_r, 1 - iso.iso_s2_area_mean / g / n_exp, rtol=1e-12)
    assert int(iso.iso_n_frames.sum()) == int(inside.sum())
    # the figures of a run tagged without a calibration
    run_pipeline(runs["recoil"], out=runs["out"], config=runs["config"], client=client,
                 stages=["ingest", "plots"], progress=False)
    plots = runs["out"] / "plots"
    for name in ("FieldScan_Gate150_Anode1650_alpha_spectrum.png", "RUN_30_alpha_spectrum.png",
                 "RUN_30_alpha_calibration.png", "RUN_30_s2_vs_drift_isotopes.png"):
        assert (plots / name).stat().st_size > 10_000, name
