"""§10 exports and atomic writes, on small hand-made result datasets.

:func:`make_results` builds ``sets`` / ``run`` / ``frames`` / waveforms following the
result schema, with values chosen by hand: 4 sets of 50 frames (2 padding slots each,
filled with values that must never be exported), set 2 with a failed S2 fit and NaN
values, set 3 without any accepted X-ray.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure

from ratag_xr.errors import AnalysisError, ConfigError
from ratag_xr.export import export_run, export_set
from ratag_xr.io.atomic import (
    atomic_save_figure,
    atomic_save_npy,
    atomic_write_json,
    atomic_write_text,
    to_jsonable,
)
from ratag_xr.vocabulary import XrayOutcome

RUN_ID = "RUN9"
GATES = [100, 200, 300, 400]
ANODES = [1600, 1700, 1800, 1900]
SETS = [f"FieldScan_Gate{g}_Anode{a}" for g, a in zip(GATES, ANODES, strict=True)]
FAILED, NO_XRAY = 2, 3  # set indices: failed S2 fit / zero accepted X-rays
N_VALID, N_SLOTS, PER_FILE = 50, 52, 25
NAN_FRAMES = (7, 19)  # frames whose S2 area could not be integrated
CODE_CYCLE = (0, 1, 2, 3, -1)  # X-ray outcome of frame j is CODE_CYCLE[j % 5]
PARAMS = {"n_pedestal": 2000, "ma_window": 9, "bs_threshold": 0.8, "dt": 2e-4, "width_s2": 1.1,
          "n_sigma_start": 0.0, "n_sigma_end": 0.0,
          "max_area_s2": 1e5, "min_s2_sep": 1.0, "min_s1_sep": 1.0, "ts2_tol": -2.7}  # fmt: skip
LINEAGE = {"config_hash": "3f2a9c", "code_version": "0.1.0", "created": "2026-03-12T10:00:00"}
NAN = float("nan")

# Per set (index 0..3) hand-chosen results.
PER_SET = {
    "drift_field": ([71.43, 142.86, 214.29, 285.71], "V/cm"),
    "EL_field": ([1875.0, 1875.0, 1875.0, 1875.0], "V/cm"),
    "red_drift_field": ([0.146, 0.292, 0.438, 0.584], "Td"),
    "red_EL_field": ([3.84, 3.84, 3.84, 3.84], "Td"),
    "gas_density": ([4.94e19] * 4, "cm^-3"),
    "speed_drift": ([0.55, 0.80, 0.95, 1.05], "mm/µs"),
    "time_drift": ([25.45, 17.50, 14.74, 13.33], "µs"),
    "t_s1": ([0.12, 0.11, NAN, 0.13], "µs"),
    "t_s1_std": ([0.03, 0.02, NAN, 0.03], "µs"),
    "t_s2_start_mean": ([22.9, 15.1, NAN, 11.0], "µs"),
    "t_s2_start_std": ([0.40, 0.30, NAN, 0.25], "µs"),
    "t_s2_end_mean": ([33.5, 25.2, NAN, 20.6], "µs"),
    "t_s2_end_std": ([0.50, 0.45, NAN, 0.30], "µs"),
    "s2_duration_mean": ([10.6, 10.1, NAN, 9.6], "µs"),
    "s2_duration_std": ([0.69, 0.43, NAN, 0.33], "µs"),
    "s2_window_start": ([22.9, 15.1, 12.0, 11.0], "µs"),
    "s2_window_end": ([33.5, 25.2, 13.1, 20.6], "µs"),
    "s2_area_mean": ([1.25, 1.80, NAN, 2.60], "mV·µs"),
    "s2_area_sigma": ([0.30, 0.35, NAN, 0.40], "mV·µs"),
    "s2_area_ci95": ([0.021, 0.025, NAN, 0.030], "mV·µs"),
    "s2_area_chi2_ndf": ([1.07, 0.93, NAN, 1.21], "1"),
    "N_e_meas": ([113.6, 163.6, NAN, 236.4], "electrons"),
    "N_e_meas_err": ([3.1, 4.0, NAN, 5.2], "electrons"),
    "N_e_meas_err_ion": ([1.9, 2.3, NAN, 2.7], "electrons"),
    "r": ([0.797, 0.707, NAN, 0.577], "1"),
    "r_err": ([0.006, 0.007, NAN, 0.009], "1"),
    "r_err_ion": ([0.0034, 0.0041, NAN, 0.0049], "1"),
    "norm_A_ion": ([0.203, 0.293, NAN, 0.423], "1"),
    "norm_A_ion_err": ([0.006, 0.007, NAN, 0.009], "1"),
    "norm_A_ion_err_ion": ([0.0034, 0.0041, NAN, 0.0049], "1"),
    "sigma2_obs": ([0.4761, 0.1849, NAN, 0.1089], "µs²"),
    "sigma2_obs_err": ([0.05, 0.02, NAN, 0.012], "µs²"),
}
PER_SET_INT = {
    "s2_area_n_entries": [812, 790, 12, 805], "n_frames": [50, 50, 50, 50],
    "n_area_nan": [2, 2, 2, 2], "n_xray_events": [50, 50, 50, 50],
    "n_xray_accepted": [10, 10, 10, 0], "n_xray_rejected": [40, 40, 40, 50],
    "n_xray_excessive_s2": [10, 10, 10, 10], "n_xray_no_signal": [10, 10, 10, 20],
    "n_xray_insufficient_separation": [10, 10, 10, 10], "n_xray_not_classifiable": [10] * 4,
    "n_s2_durations": [48, 47, 0, 49],
}  # fmt: skip
FAIL_REASON = "only 12 entries in the fitted bins, need >= 20"
COORDS = ("drift_field", "EL_field", "red_drift_field", "red_EL_field", "gas_density",
          "speed_drift", "time_drift")  # fmt: skip
RUN_SCALARS = {
    "A_x_mean": (6.15, "mV·µs"), "A_x_sigma": (1.20, "mV·µs"), "A_x_ci95": (0.09, "mV·µs"),
    "xray_chi2_ndf": (1.10, "1"), "N_e_exp": (559.09, "electrons"),
    "g_S2": (0.0110, "mV·µs"), "g_S2_err": (0.00016, "mV·µs"), "D_L": (0.0025, "mm²/µs"),
    "D_L_err": (0.0004, "mm²/µs"), "sigma0_sq": (0.05, "µs²"), "sigma0_sq_err": (0.01, "µs²"),
    "diffusion_chi2_ndf": (0.8, "1"),
}  # fmt: skip


def file_name(s: int, k: int) -> str:
    return f"RUN9_20260312_Gate{GATES[s]}_Anode{ANODES[s]}_P3_{k:04d}.wfm"


def expected_s2_areas(s: int) -> np.ndarray:
    """S2 area of frame j of set s: 1 + 0.01 j + 0.5 s mV·µs, NaN for NAN_FRAMES."""
    a = 1.0 + 0.01 * np.arange(N_VALID) + 0.5 * s
    a[list(NAN_FRAMES)] = np.nan
    return a


def expected_codes(s: int) -> np.ndarray:
    codes = np.array([CODE_CYCLE[j % 5] for j in range(N_VALID)])
    if s == NO_XRAY:
        codes[codes == 0] = 2
    return codes


def expected_xray_areas(s: int) -> np.ndarray:
    """Accepted X-ray areas (mV·µs) of set s in frame order: 4 + 0.1 j + s for j % 5 == 0."""
    return np.array([4.0 + 0.1 * j + s for j in range(N_VALID) if expected_codes(s)[j] == 0])


def _hist(center: float, width: float, edges: np.ndarray, n: int) -> np.ndarray:
    mids = 0.5 * (edges[:-1] + edges[1:])
    return np.round(n * np.exp(-0.5 * ((mids - center) / width) ** 2) / 8).astype(np.int64)


def make_sets() -> xr.Dataset:
    data = {name: ("set", np.array(v, dtype=float), {"units": u, "long_name": name})
            for name, (v, u) in PER_SET.items() if name not in COORDS}  # fmt: skip
    for name, v in PER_SET_INT.items():
        data[name] = ("set", np.array(v, dtype=np.int64), {"units": "1", "long_name": name})
    data["s2_fit_success"] = ("set", np.array([True, True, False, True]), {"units": "1"})
    data["s2_fit_reason"] = ("set", np.array(["", "", FAIL_REASON, ""]), {"units": "1"})
    data["s1_success"] = ("set", np.array([True, True, False, True]), {"units": "1"})
    data["s2_window_success"] = ("set", np.array([True, True, False, True]), {"units": "1"})
    edges = np.stack([np.linspace(0.0, 4.0, 41), np.linspace(0.5, 3.5, 41),
                      np.linspace(0.0, 4.0, 41), np.linspace(0.0, 4.0, 41)])  # fmt: skip
    counts = np.stack(
        [
            _hist(m, w, e, 812)
            for m, w, e in zip(
                [1.25, 1.80, 0.2, 2.60], [0.30, 0.35, 0.05, 0.40], edges, strict=True
            )
        ]
    )
    counts[FAILED] = 0
    counts[FAILED, [0, 3, 5, 9, 20]] = [40, 3, 4, 3, 2]
    counts[:, 0] += 25  # pedestal frames in the first bin (not fitted)
    data["s2_area_hist"] = (("set", "bin"), counts, {"units": "1", "long_name": "frames"})
    data["s2_area_hist_edges"] = (("set", "bin_edge"), edges, {"units": "mV·µs"})
    coords = {"set": SETS, "gate": ("set", np.array(GATES, float), {"units": "V"}),
              "anode": ("set", np.array(ANODES, float), {"units": "V"})}  # fmt: skip
    for name in COORDS:
        v, u = PER_SET[name]
        coords[name] = ("set", np.array(v, dtype=float), {"units": u, "long_name": name})
    return xr.Dataset(data, coords=coords,
                      attrs={"run_id": RUN_ID, "pressure": 2.0, "temperature": 293.0,
                             "s2_window_method": "percentile"})  # fmt: skip


def make_run() -> xr.Dataset:
    data = {k: ((), v, {"units": u, "long_name": k}) for k, (v, u) in RUN_SCALARS.items()}
    data["xray_fit_success"] = ((), True, {"units": "1"})
    data["xray_fit_reason"] = ((), "", {"units": "1"})
    data["xray_n_entries"] = ((), 30, {"units": "1"})
    data["diffusion_success"] = ((), True, {"units": "1"})
    data["diffusion_reason"] = ((), "", {"units": "1"})
    edges = np.linspace(0.6, 20.0, 101)
    data["xray_hist"] = ("xray_bin", _hist(6.15, 1.2, edges, 30 * 8 // 2), {"units": "1"})
    data["xray_hist_edges"] = ("xray_bin_edge", edges, {"units": "mV·µs"})
    return xr.Dataset(data, attrs={"run_id": RUN_ID, "e_xray": 12300.0, "w_value": 22.0,
                                   "diffusion_weighting": "n_values",
                                   "s2_window_method": "percentile", "s2_timing": "reference",
                                   "s2_max_gap": 1.0})


def make_frames() -> xr.Dataset:
    shape = (len(SETS), N_SLOTS)
    s2_area = np.full(shape, 999.0)  # padding slots hold values that must not be exported
    code = np.zeros(shape, dtype=np.int8)
    x_area = np.full(shape, 999.0)
    files = np.full(shape, "", dtype=object)
    in_file = np.full(shape, -1, dtype=np.int32)
    for s in range(len(SETS)):
        s2_area[s, :N_VALID] = expected_s2_areas(s)
        code[s, :N_VALID] = expected_codes(s)
        x_area[s, :N_VALID] = np.where(code[s, :N_VALID] == 0,
                                       4.0 + 0.1 * np.arange(N_VALID) + s, np.nan)  # fmt: skip
        files[s, :N_VALID] = [file_name(s, j // PER_FILE) for j in range(N_VALID)]
        in_file[s, :N_VALID] = np.arange(N_VALID) % PER_FILE
    valid = np.zeros(shape, dtype=bool)
    valid[:, :N_VALID] = True
    dims = ("set", "frame")
    return xr.Dataset(
        {"s2_area": (dims, s2_area, {"units": "mV·µs"}),
         "xray_code": (dims, code, {"units": "1", "flag_values": [-1, 0, 1, 2, 3]}),
         "xray_area": (dims, x_area, {"units": "mV·µs"}),
         "s2_duration": (dims, np.full(shape, 10.0), {"units": "µs"})},
        coords={"set": SETS, "file": (dims, files), "frame_in_file": (dims, in_file),
                "valid": (dims, valid),
                "trigger_time": (dims, np.datetime64("2026-03-12T09:00:00", "ns")
                                 + np.arange(shape[1]) * np.timedelta64(50, "ms")
                                 + np.zeros(shape, dtype="timedelta64[ns]"))},
    )  # fmt: skip


def make_waveforms(s: int, n: int = 10) -> xr.Dataset:
    """``n`` frames of set ``s``: a small S1 at t_s1 and a flat-topped S2 (mV vs µs)."""
    t = np.linspace(-3.0, 35.0, 1901)
    rng = np.random.default_rng(s)
    t_s1 = PER_SET["t_s1"][0][s] if np.isfinite(PER_SET["t_s1"][0][s]) else 0.1
    start, end = PER_SET["s2_window_start"][0][s], PER_SET["s2_window_end"][0][s]
    wave = rng.normal(0.0, 0.3, (n, t.size))
    wave += 6.0 * np.exp(-0.5 * ((t - t_s1) / 0.05) ** 2)
    wave += np.where((t > start) & (t < end), 2.5 + rng.normal(0, 0.8, (n, t.size)), 0.0)
    frame = np.arange(n)
    return xr.Dataset(
        {"waveform": (("frame", "time"), wave, {"units": "mV"})},
        coords={"time": ("time", t, {"units": "µs"}),
                "file": ("frame", [file_name(s, j % 2) for j in frame]),
                "frame_in_file": ("frame", 3 * frame + 1)},
    )  # fmt: skip


def make_results():
    """(sets, run, frames, waveforms_by_set) of the hand-made run."""
    return (
        make_sets(),
        make_run(),
        make_frames(),
        {SETS[0]: make_waveforms(0), SETS[FAILED]: make_waveforms(FAILED)},
    )


def strict_json(path):
    """Parse ``path`` refusing NaN / Infinity tokens (not JSON)."""

    def refuse(token):
        raise ValueError(f"{path.name}: non-JSON constant {token}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def is_number_or_null(v) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    sets, run, frames, _ = make_results()
    paths = {name: export_set(out, name, sets, frames, PARAMS, LINEAGE) for name in SETS}
    paths["run"] = export_run(out, RUN_ID, sets, run, frames, LINEAGE)
    return out, paths


# --- §10 files ----------------------------------------------------------------------------


def test_every_file_has_its_exact_name(exported):
    out, paths = exported
    for name in SETS:
        expected = {
            out / name / f
            for f in ("s2_areas.npy", "s2_results.json", "xray_areas.npy", "xray_results.json",
                      "frames.parquet")
        }
        assert set(paths[name]) == expected  # fmt: skip
        assert all(p.is_file() for p in expected)
        assert sorted(p.name for p in (out / name).iterdir()) == sorted(p.name for p in expected)
    assert set(paths["run"]) == {out / "plots" / "RUN9_xray_areas_combined.npy",
                                 out / "plots" / "RUN9_xray_metadata.json",
                                 out / "plots" / "RUN9_diffusion_analysis.json"}  # fmt: skip


def test_s2_results_fields_types_and_values(exported):
    out, _ = exported
    meta_keys = {"t_s1", "t_s1_std", "t_s2_start_mean", "t_s2_start_std", "t_s2_end_mean",
                 "t_s2_end_std", "s2_duration_mean", "s2_duration_std", "drift_field",
                 "EL_field", "time_drift", "speed_drift", "red_drift_field"}  # fmt: skip
    for s, name in enumerate(SETS):
        doc = strict_json(out / name / "s2_results.json")
        assert {"method", "params", "mean", "sigma", "ci95", "fit_success",
                "set_metadata"} <= set(doc)  # fmt: skip
        assert doc["method"] == "percentile"
        assert set(doc["params"]) == {"t_window", "n_pedestal", "ma_window", "bs_threshold",
                                      "dt", "width_s2", "n_sigma_start",
                                      "n_sigma_end"}  # fmt: skip
        assert doc["fit_model"] == "gauss" and "crystal_ball" not in doc
        assert doc["params"]["t_window"] == [PER_SET["s2_window_start"][0][s],
                                             PER_SET["s2_window_end"][0][s]]  # fmt: skip
        assert doc["params"]["dt"] == 2e-4 and doc["params"]["ma_window"] == 9
        assert isinstance(doc["fit_success"], bool)
        assert set(doc["set_metadata"]) == meta_keys
        assert all(is_number_or_null(v) for v in doc["set_metadata"].values())
        for key in ("mean", "sigma", "ci95", "chi2_ndf", "n_entries"):
            assert is_number_or_null(doc[key]), key
        assert doc["set_metadata"]["drift_field"] == PER_SET["drift_field"][0][s]
        assert doc["units"]["mean"] == "mV·µs" and doc["units"]["t_s1"] == "µs"
        assert doc["lineage"] == LINEAGE
    good = strict_json(out / SETS[1] / "s2_results.json")
    assert (good["mean"], good["sigma"], good["ci95"]) == (1.80, 0.35, 0.025)
    assert good["fit_success"] is True and good["n_entries"] == 790
    assert isinstance(good["n_entries"], int)
    bad = strict_json(out / SETS[FAILED] / "s2_results.json")
    assert bad["fit_success"] is False and bad["fit_reason"] == FAIL_REASON
    assert bad["mean"] is None and bad["sigma"] is None and bad["ci95"] is None
    assert bad["set_metadata"]["t_s1"] is None and bad["set_metadata"]["time_drift"] == 14.74


def test_s2_areas_keep_nan_in_frame_order_and_drop_padding(exported):
    out, _ = exported
    for s, name in enumerate(SETS):
        areas = np.load(out / name / "s2_areas.npy", allow_pickle=False)
        assert areas.dtype == np.float64 and areas.shape == (N_VALID,)
        np.testing.assert_array_equal(areas, expected_s2_areas(s))  # NaN == NaN here
        assert np.isnan(areas).sum() == len(NAN_FRAMES)


def test_xray_areas_are_the_accepted_ones_in_frame_order(exported):
    out, _ = exported
    for s, name in enumerate(SETS):
        areas = np.load(out / name / "xray_areas.npy", allow_pickle=False)
        np.testing.assert_allclose(areas, expected_xray_areas(s), rtol=0, atol=1e-12)
    assert np.load(out / SETS[NO_XRAY] / "xray_areas.npy").shape == (0,)
    np.testing.assert_allclose(np.load(out / SETS[0] / "xray_areas.npy")[:3], [4.0, 4.5, 5.0])


def test_xray_results_events(exported):
    out, _ = exported
    pattern = re.compile(r"^RUN9_20260312_Gate\d+_Anode\d+_P3_000[01]_ff\d+$")
    for s, name in enumerate(SETS):
        doc = strict_json(out / name / "xray_results.json")
        assert doc["set_id"] == name and doc["params"] == PARAMS and doc["lineage"] == LINEAGE
        n_acc = 0 if s == NO_XRAY else 10
        assert (doc["n_events"], doc["n_accepted"], doc["n_rejected"]) == (50, n_acc, 50 - n_acc)
        events = doc["events"]
        assert len(events) == N_VALID
        for j, ev in enumerate(events):
            assert set(ev) == {"wf_id", "accepted", "reason", "area"}
            assert pattern.match(ev["wf_id"]), ev["wf_id"]
            assert isinstance(ev["accepted"], bool)
            code = expected_codes(s)[j]
            assert ev["reason"] == XrayOutcome(code).reason
            assert ev["accepted"] == (code == 0)
            assert (ev["area"] is None) == (code != 0)
    doc = strict_json(out / SETS[1] / "xray_results.json")
    ev = doc["events"][30]  # frame 30 = file 1, frame 5 in file; 30 % 5 == 0: accepted
    assert ev == {"wf_id": "RUN9_20260312_Gate200_Anode1700_P3_0001_ff5", "accepted": True,
                  "reason": "accepted", "area": 4.0 + 0.1 * 30 + 1}  # fmt: skip
    assert doc["events"][1]["reason"] == "excessive S2 signal above baseline"
    assert doc["events"][2]["reason"] == "no signal above baseline"
    assert doc["events"][3]["reason"] == "insufficient separation"
    assert doc["events"][4]["reason"] == "not classifiable"
    assert strict_json(out / SETS[NO_XRAY] / "xray_results.json")["n_by_reason"] == {
        "not classifiable": 10, "accepted": 0, "excessive S2 signal above baseline": 10,
        "no signal above baseline": 20, "insufficient separation": 10,
        "excessive S1 signal above baseline": 0, "area below minimum": 0}  # fmt: skip


def test_frames_table_has_every_valid_frame_in_order_with_units(exported):
    import pyarrow.parquet as pq

    out, _ = exported
    for s, name in enumerate(SETS):
        table = pq.read_table(out / name / "frames.parquet")
        assert table.column_names[:3] == ["file", "frame_in_file", "trigger_time"]
        assert set(table.column_names[3:]) == {"s2_area", "xray_code", "xray_area",
                                               "s2_duration"}
        assert table.num_rows == N_VALID  # padding slots left out
        cols = table.to_pydict()
        assert cols["file"] == [file_name(s, j // PER_FILE) for j in range(N_VALID)]
        assert cols["frame_in_file"] == list(np.arange(N_VALID) % PER_FILE)
        np.testing.assert_array_equal(np.array(cols["s2_area"], dtype=float),
                                      expected_s2_areas(s))
        assert cols["xray_code"] == list(expected_codes(s))
        units = {f.name: f.metadata[b"units"].decode() for f in table.schema}
        assert units["s2_area"] == "mV·µs" and units["s2_duration"] == "µs"
        assert units["trigger_time"] == "UTC"
        first = table.column("trigger_time")[1].as_py()
        assert (first.year, first.month, first.second, first.microsecond) == (2026, 3, 0, 50000)


def test_run_exports(exported):
    out, _ = exported
    combined = np.load(out / "plots" / "RUN9_xray_areas_combined.npy", allow_pickle=False)
    np.testing.assert_allclose(
        combined, np.concatenate([expected_xray_areas(s) for s in range(4)]), rtol=0, atol=1e-12
    )
    assert combined.size == 30
    meta = strict_json(out / "plots" / "RUN9_xray_metadata.json")
    assert meta["run_id"] == RUN_ID and meta["n_areas"] == 30 and meta["sets"] == SETS
    assert (meta["mean"], meta["std"]) == (6.15, 1.20)
    assert meta["lineage"] == LINEAGE
    diffusion = strict_json(out / "plots" / "RUN9_diffusion_analysis.json")
    assert (diffusion["D_L"], diffusion["D_L_err"], diffusion["chi2_ndf"]) == (0.0025, 0.0004, 0.8)
    assert diffusion["units"]["D_L"] == "mm²/µs" and diffusion["weighting"] == "n_values"
    assert diffusion["s2_timing"] == {"mode": "reference", "max_gap": 1.0}
    assert diffusion["s2_method"] == "percentile"
    assert [row["set"] for row in diffusion["sets"]] == SETS
    assert [row["sigma2_obs"] for row in diffusion["sets"]] == [0.4761, 0.1849, None, 0.1089]
    assert [row["n_durations"] for row in diffusion["sets"]] == [48, 47, 0, 49]
    assert diffusion["lineage"] == LINEAGE


def test_no_json_file_holds_nan_tokens(exported):
    out, _ = exported
    files = list(out.rglob("*.json"))
    assert len(files) == 4 * 2 + 2
    for path in files:
        strict_json(path)
        assert "NaN" not in path.read_text(encoding="utf-8")


def test_odd_file_names_are_escaped_in_wf_id(tmp_path):
    sets, _, frames, _ = make_results()
    odd = 'RUN9 "quoted" \\ ü_0007.wfm'
    files = frames["file"].values.copy()
    files[0, :] = odd
    frames = frames.assign_coords(file=(("set", "frame"), files))
    export_set(tmp_path, SETS[0], sets, frames, PARAMS, LINEAGE)
    events = strict_json(tmp_path / SETS[0] / "xray_results.json")["events"]
    assert events[12]["wf_id"] == 'RUN9 "quoted" \\ ü_0007_ff12'


def test_contract_violations_write_nothing(tmp_path):
    sets, _, frames, _ = make_results()
    wrong = sets.copy()
    wrong["n_xray_accepted"] = wrong["n_xray_accepted"] + 1
    with pytest.raises(AnalysisError, match="n_xray_accepted"):
        export_set(tmp_path, SETS[0], wrong, frames, PARAMS, LINEAGE)
    params = {k: v for k, v in PARAMS.items() if k != "dt"}
    with pytest.raises(ConfigError, match="dt"):
        export_set(tmp_path, SETS[1], sets, frames, params, LINEAGE)
    no_area = frames.copy(deep=True)
    no_area["xray_area"][2, 5] = np.nan  # frame 5 is accepted
    with pytest.raises(AnalysisError, match="_ff5"):
        export_set(tmp_path, SETS[2], sets, no_area, PARAMS, LINEAGE)
    with pytest.raises(TypeError, match="params"):
        export_set(tmp_path, SETS[0], sets, frames, {**PARAMS, "bad": object()}, LINEAGE)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_reasons_are_the_words_of_algorithms_md_and_the_kernel_codes():
    from ratag_xr.kernels import pass1

    # §7's rejection reasons, as written there
    assert XrayOutcome.EXCESSIVE_S2.reason == "excessive S2 signal above baseline"
    assert XrayOutcome.NO_SIGNAL.reason == "no signal above baseline"
    assert XrayOutcome.INSUFFICIENT_SEPARATION.reason == "insufficient separation"
    for outcome in XrayOutcome:
        assert getattr(pass1, f"XRAY_{outcome.name}") == int(outcome)
        assert outcome.reason.lower().replace(" ", "_") == outcome.meaning


# --- atomic writes ------------------------------------------------------------------------


def test_to_jsonable_converts_numpy_and_nan():
    obj = {"a": np.float32(1.5), "b": np.int64(3), "c": np.bool_(True), "d": [np.nan, np.inf],
           "e": np.array([1.0, np.nan]), 4: (1, "x")}  # fmt: skip
    assert to_jsonable(obj) == {"a": 1.5, "b": 3, "c": True, "d": [None, None],
                                "e": [1.0, None], "4": [1, "x"]}  # fmt: skip
    assert type(to_jsonable(np.int64(3))) is int
    with pytest.raises(TypeError, match=r"\$\.k\[1\]"):
        to_jsonable({"k": [1, object()]})


def _assert_untouched(folder, final, content: bytes):
    assert final.read_bytes() == content
    assert sorted(p.name for p in folder.iterdir()) == [final.name]


def test_failed_json_write_leaves_old_file_and_no_temp(tmp_path):
    final = tmp_path / "results.json"
    atomic_write_json(final, {"mean": 1.0})
    old = final.read_bytes()
    with pytest.raises(TypeError):
        atomic_write_json(final, {"mean": object()})
    _assert_untouched(tmp_path, final, old)
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "new.json", {"x": {1, 2}})
    _assert_untouched(tmp_path, final, old)


def test_failed_npy_write_leaves_old_file_and_no_temp(tmp_path):
    final = tmp_path / "areas.npy"
    atomic_save_npy(final, np.arange(3.0))
    old = final.read_bytes()
    with pytest.raises(ValueError):  # object arrays need pickle, which is refused
        atomic_save_npy(final, np.array([1, "a", None], dtype=object))
    _assert_untouched(tmp_path, final, old)
    np.testing.assert_array_equal(np.load(final), [0.0, 1.0, 2.0])


def test_failed_figure_write_leaves_no_file(tmp_path):
    final = tmp_path / "plot.png"
    fig = Figure()
    fig.add_subplot().set_title(r"$\frac{1}{$")  # malformed mathtext: fails while drawing
    with pytest.raises(ValueError):
        atomic_save_figure(final, fig)
    assert list(tmp_path.iterdir()) == []
    atomic_write_text(final, "old")
    with pytest.raises(ValueError):
        atomic_save_figure(final, fig)
    _assert_untouched(tmp_path, final, b"old")


def test_successful_writes_leave_only_the_final_file(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"v": [np.float64(2.5), np.nan]})
    atomic_write_text(tmp_path / "b.txt", "µs\n")
    atomic_save_npy(tmp_path / "c.npy", np.array([1.0, np.nan]))
    atomic_save_figure(tmp_path / "d.png", Figure(figsize=(2, 2)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.txt", "c.npy", "d.png"]
    assert json.loads((tmp_path / "a.json").read_text()) == {"v": [2.5, None]}
    assert (tmp_path / "b.txt").read_bytes() == "µs\n".encode()
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask
