"""The files of ALGORITHMS.md §10 and the per-frame table, written from the labeled results.

Per set, in ``OUT/<set>/``: ``s2_areas.npy``, ``s2_results.json`` (with ``isotopes`` for a
two-channel run, §14), ``xray_areas.npy``, ``xray_results.json`` and ``frames.parquet``
(one row per frame, one column per frame identity coordinate and per per-frame variable).
Per run, in ``OUT/plots/``: ``<run_id>_xray_areas_combined.npy``,
``<run_id>_xray_metadata.json``, ``<run_id>_diffusion_analysis.json`` and, for a run with
alpha data, ``<run_id>_alpha_calibration.json`` (the PNG figures are the plots stage's).

Every file is written atomically (:mod:`ratag_xr.io.atomic`): a reader never sees a
half-written file, and a failed export leaves the previous file in place.  JSON has no
NaN: a value that is NaN in the datasets (a failed step) is written as ``null``.
Areas are mV·µs, times µs; each JSON states its units in a ``units`` object and each
parquet column in its field metadata.  Frames keep their order (files in natural order,
then frames in file) and are named by :func:`~ratag_xr.vocabulary.wf_id`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from ratag_xr.errors import AnalysisError, ConfigError
from ratag_xr.io.atomic import (
    atomic_open,
    atomic_save_npy,
    atomic_write_json,
    atomic_write_text,
    dumps_json,
)
from ratag_xr.vocabulary import XrayOutcome, wf_id

__all__ = ["S2_PARAMS", "alpha_calibration", "export_alpha", "export_run", "export_set",
           "frames_table", "isotope_results", "wf_id"]

#: ``sets`` count variable -> X-ray outcomes it counts (checked against the frames).
XRAY_COUNTS = {
    "n_xray_events": tuple(XrayOutcome),
    "n_xray_rejected": tuple(o for o in XrayOutcome if o != XrayOutcome.ACCEPTED),
    **{o.count_name: (o,) for o in XrayOutcome},
}

#: Keys of ``s2_results.json`` ``params`` (§10) with their units; ``t_window`` comes from
#: the window each set actually integrated.
S2_PARAMS = {"n_pedestal": "samples", "ma_window": "samples", "bs_threshold": "mV",
             "dt": "µs", "width_s2": "µs", "n_sigma_start": "1", "n_sigma_end": "1"}  # fmt: skip
SET_METADATA = (
    "t_s1", "t_s1_std", "t_s2_start_mean", "t_s2_start_std", "t_s2_end_mean", "t_s2_end_std",
    "s2_duration_mean", "s2_duration_std", "drift_field", "EL_field", "time_drift",
    "speed_drift", "red_drift_field",
)  # fmt: skip
#: ``s2_results.json`` key -> ``sets`` variable.
S2_FIT_FIELDS = {
    "mean": "s2_area_mean", "sigma": "s2_area_sigma", "ci95": "s2_area_ci95",
    "fit_success": "s2_fit_success", "chi2_ndf": "s2_area_chi2_ndf",
    "n_entries": "s2_area_n_entries", "fit_reason": "s2_fit_reason", "n_frames": "n_frames",
    "n_area_nan": "n_area_nan",
}  # fmt: skip
#: ``s2_results.json`` ``crystal_ball`` key -> ``sets`` variable (§15 fit model).
CRYSTAL_BALL_FIELDS = {
    "x0": "s2_area_mean", "sigma": "s2_area_sigma", "beta": "s2_area_beta",
    "beta_err": "s2_area_beta_err", "m": "s2_area_m", "m_err": "s2_area_m_err",
    "amplitude": "s2_area_cb_amplitude", "two_stage": "s2_two_stage",
}  # fmt: skip
#: ``crystal_ball.background`` key -> ``sets`` variable.
BACKGROUND_FIELDS = {
    "fraction_observed": "s2_bg_fraction", "mean": "s2_bg_mean", "sigma": "s2_bg_sigma",
    "amplitude": "s2_bg_amplitude", "success": "s2_bg_success", "reason": "s2_bg_reason",
}  # fmt: skip
#: ``s2_timing`` of the JSON files: attribute of ``sets`` -> JSON key (§4 / §15).
TIMING_ATTRS = {"s2_timing": "mode", "s2_max_gap": "max_gap"}
#: Per-set rows of ``<run_id>_diffusion_analysis.json``: JSON key -> ``sets`` variable.
DIFFUSION_SET_FIELDS = {
    "time_drift": "time_drift", "speed_drift": "speed_drift", "drift_field": "drift_field",
    "s2_duration_mean": "s2_duration_mean", "s2_duration_std": "s2_duration_std",
    "n_durations": "n_s2_durations", "sigma2_obs": "sigma2_obs",
    "sigma2_obs_err": "sigma2_obs_err",
}  # fmt: skip
DIFFUSION_RUN_FIELDS = {
    "D_L": "D_L", "D_L_err": "D_L_err", "sigma0_sq": "sigma0_sq",
    "sigma0_sq_err": "sigma0_sq_err", "chi2_ndf": "diffusion_chi2_ndf",
    "success": "diffusion_success", "reason": "diffusion_reason",
}  # fmt: skip
#: Frame identity columns of ``frames.parquet``, first, in this order.
IDENTITY = ("file", "frame_in_file", "trigger_time")
#: Then these, in §14's order (where present), then every other per-frame variable.
COLUMNS = ("s2_start", "s2_end", "s2_duration", "s2_area", "xray_code", "xray_area",
           "alpha_energy_sca", "alpha_energy_mev", "isotope")
_EVENT_BLOCK = 65536  # frames formatted per write: bounds memory for sets of millions


def _value(ds: xr.Dataset, name: str, what: str):
    """Plain Python value of the 0-d variable ``name``; a missing one breaks the schema."""
    if name not in ds.variables:
        raise AnalysisError(f"{what} has no variable {name!r}, which the result schema promises")
    return ds[name].values.item()


def _units(ds: xr.Dataset, name: str) -> str:
    return str(ds[name].attrs.get("units", ""))


@dataclass(frozen=True)
class SetFrames:
    """Per-frame results of the valid frames of one set, in frame order (numpy arrays):
    the identity columns and every per-frame variable of ``frames``."""

    columns: dict

    @classmethod
    def from_frames(cls, frames: xr.Dataset, set_name: str) -> SetFrames:
        """Select ``set_name`` from ``frames`` and drop the padding slots."""
        fr = frames.sel(set=set_name)
        valid = np.asarray(fr["valid"].values, dtype=bool)
        columns = {"file": np.asarray(fr["file"].values)[valid].astype(str),
                   "frame_in_file": np.asarray(fr["frame_in_file"].values)[valid]
                   .astype(np.int64)}
        if "trigger_time" in fr.variables:
            columns["trigger_time"] = np.asarray(fr["trigger_time"].values)[valid]
        for name, var in fr.data_vars.items():
            if var.dims == ("frame",):
                columns[name] = np.asarray(var.values)[valid]
        result = cls(columns)
        result._check(set_name)
        return result

    def __getattr__(self, name):
        try:
            return self.columns[name]
        except KeyError:
            raise AttributeError(f"no per-frame variable {name!r}") from None

    @property
    def accepted(self) -> np.ndarray:
        return self.xray_code == XrayOutcome.ACCEPTED

    def _check(self, set_name: str) -> None:
        if "xray_code" not in self.columns:
            return
        unknown = ~np.isin(self.xray_code, [int(o) for o in XrayOutcome])
        if unknown.any():
            i = int(np.argmax(unknown))
            raise AnalysisError(
                f"set {set_name}, frame {wf_id(self.file[i], self.frame_in_file[i])}: X-ray code "
                f"{self.xray_code[i]} is none of the known outcomes "
                f"{[int(o) for o in XrayOutcome]}"
            )
        no_area = self.accepted & ~np.isfinite(self.xray_area)
        if no_area.any():
            i = int(np.argmax(no_area))
            raise AnalysisError(
                f"set {set_name}, frame {wf_id(self.file[i], self.frame_in_file[i])}: X-ray "
                "event accepted but its area is not a finite number"
            )


def s2_results(row: xr.Dataset, params: dict, lineage: dict, method: str,
               isotopes: dict | None = None) -> dict:
    """Content of ``s2_results.json`` for one set (``row = sets.sel(set=name)``); with
    ``isotopes`` (:func:`isotope_results`, two-channel runs) also its ``isotopes`` entry."""
    what = f"sets (set {row['set'].values.item()})"
    missing = sorted(set(S2_PARAMS) - set(params))
    if missing:
        raise ConfigError(f"export parameters lack {missing}; s2_results.json needs them")
    t_window = [_value(row, "s2_window_start", what), _value(row, "s2_window_end", what)]
    fit_model = str(_value(row, "s2_fit_model", what)) if "s2_fit_model" in row.variables \
        else "gauss"
    result = {
        "method": method,
        "params": {"t_window": t_window, **{k: params[k] for k in S2_PARAMS}},
        "fit_model": fit_model,
        **{key: _value(row, var, what) for key, var in S2_FIT_FIELDS.items()},
        "set_metadata": {name: _value(row, name, what) for name in SET_METADATA},
    }
    units = {"t_window": "µs", **S2_PARAMS}
    units.update({key: _units(row, var) for key, var in S2_FIT_FIELDS.items()})
    units.update({name: _units(row, name) for name in SET_METADATA})
    if fit_model == "crystal_ball":
        cb = {key: _value(row, var, what) for key, var in CRYSTAL_BALL_FIELDS.items()}
        cb["fit_range"] = [_value(row, "s2_fit_low", what), _value(row, "s2_fit_high", what)]
        cb["background"] = ({key: _value(row, var, what) for key, var in
                             BACKGROUND_FIELDS.items()} if cb["two_stage"] else None)
        result["crystal_ball"] = cb
        units.update({f"crystal_ball.{key}": _units(row, var)
                      for key, var in CRYSTAL_BALL_FIELDS.items()})
        units["crystal_ball.fit_range"] = _units(row, "s2_fit_low")
    timing = s2_timing(row.attrs)
    if timing:
        result["s2_timing"] = timing
        units["s2_timing.max_gap"] = "µs"
    if isotopes is not None:
        result["isotopes"] = isotopes["isotopes"]
        result["n_untagged"] = isotopes["n_untagged"]
        units["isotopes"] = isotopes["units"]
    result["units"] = units
    result["lineage"] = lineage
    return result


def s2_timing(attrs) -> dict:
    """``{"mode", "max_gap"}`` of the S2 timing the window statistics used (§4 reference,
    §15 clean), from the attributes of the ``prepare`` results ({} if they lack it)."""
    return {key: attrs[name].item() if isinstance(attrs[name], np.generic) else attrs[name]
            for name, key in TIMING_ATTRS.items() if name in attrs}


def diffusion_results(run_id: str, sets: xr.Dataset, run: xr.Dataset, lineage: dict) -> dict:
    """Content of ``<run_id>_diffusion_analysis.json``: the §9 fit, the σ² of every set and
    the S2 timing and statistic its durations came from (attributes of ``run``)."""
    rows = []
    for name in [str(s) for s in sets["set"].values]:
        row = sets.sel(set=name)
        what = f"sets (set {name})"
        rows.append({"set": name, **{key: _value(row, var, what)
                                     for key, var in DIFFUSION_SET_FIELDS.items()}})
    units = {key: _units(sets, var) for key, var in DIFFUSION_SET_FIELDS.items()}
    units.update({key: _units(run, var) for key, var in DIFFUSION_RUN_FIELDS.items()})
    units["s2_timing.max_gap"] = "µs"
    return {
        "run_id": run_id, "model": "sigma2 = sigma0_sq + 2 D_L time_drift / speed_drift^2",
        "s2_timing": s2_timing(run.attrs), "s2_method": run.attrs.get("s2_window_method"),
        **{key: _value(run, var, "run") for key, var in DIFFUSION_RUN_FIELDS.items()},
        "weighting": run.attrs.get("diffusion_weighting"), "sets": rows, "units": units,
        "lineage": lineage,
    }  # fmt: skip


#: ``s2_results.json`` ``isotopes`` key -> (set, isotope) variable (§14)
ISOTOPE_FIELDS = {
    "mean": "iso_s2_area_mean", "sigma": "iso_s2_area_sigma", "ci95": "iso_s2_area_ci95",
    "fit_success": "iso_s2_fit_success", "fit_reason": "iso_s2_fit_reason",
    "n_frames": "iso_n_frames", "N_e_meas": "iso_N_e_meas",
    "N_e_meas_err": "iso_N_e_meas_err", "r": "iso_r", "r_err": "iso_r_err",
    "r_err_ion": "iso_r_err_ion",
}  # fmt: skip


def isotope_results(sets: xr.Dataset, run: xr.Dataset, set_name: str) -> dict:
    """The per-isotope entry of one set's ``s2_results.json`` (§14): per isotope {mean,
    sigma, ci95, fit_success, n_frames, E_recoil_keV, r, r_err, ...}, the untagged count
    and the units."""
    row = sets.sel(set=set_name)
    what = f"sets (set {set_name})"
    out = {}
    for name in (str(n) for n in row["isotope"].values):
        iso = row.sel(isotope=name)
        entry = {key: _value(iso, var, what) for key, var in ISOTOPE_FIELDS.items()}
        entry["E_recoil_keV"] = _value(run.sel(isotope=name), "E_recoil", "run")
        out[name] = entry
    units = {key: _units(row, var) for key, var in ISOTOPE_FIELDS.items()}
    units["E_recoil_keV"] = _units(run, "E_recoil")
    return {"isotopes": out, "n_untagged": _value(row, "n_untagged", what), "units": units}


def alpha_calibration(run: xr.Dataset, run_id: str, lineage: dict) -> dict:
    """Content of ``<run_id>_alpha_calibration.json`` (§14): per peak {x0, sigma, beta, m,
    fit_success, ref_energy, range: [lo, hi], ...}, ``linear`` [a, b], ``quadratic``
    [a, b, c] (E = a + b·x + c·x², MeV, x in SCA MeV), ``order_used`` and
    ``overlap_boundary_mev``."""
    peaks = {}
    # the alpha stage's peaks in the order of their starts (merged results may hold
    # isotopes with only a configured SCA range, alpha.isotope_ranges: no peak start)
    starts = {str(n): float(x0) for n, x0 in zip(run["isotope"].values,
                                                run["alpha_peak_start"].values, strict=True)
              if np.isfinite(x0)}
    for name in sorted(starts, key=starts.get):
        p = run.sel(isotope=name)

        def v(var, p=p, what=f"run (peak {name})"):
            return _value(p, var, what)
        peaks[name] = {
            "x0": v("alpha_peak_x0"), "x0_err": v("alpha_peak_x0_err"),
            "sigma": v("alpha_peak_sigma"), "beta": v("alpha_peak_beta"),
            "m": v("alpha_peak_m"), "fit_success": v("alpha_peak_success"),
            "fit_reason": v("alpha_peak_reason"), "chi2_ndf": v("alpha_peak_chi2_ndf"),
            "n_entries": v("alpha_peak_n_entries"), "ref_energy": v("alpha_peak_ref_energy"),
            "energy": v("alpha_peak_energy"),
            "residual_linear": v("alpha_peak_residual_linear"),
            "residual_quadratic": v("alpha_peak_residual_quadratic"),
            "window": [v("alpha_peak_window_lo"), v("alpha_peak_window_hi")],
            "range": [v("alpha_range_lo"), v("alpha_range_hi")],
        }
    coef = run["alpha_cal_coef"]
    return {
        "run_id": run_id, "peaks": peaks,
        "linear": coef.sel(alpha_order=1).values[:2].tolist(),
        "quadratic": coef.sel(alpha_order=2).values.tolist(),
        "order_used": _value(run, "alpha_cal_order_used", "run"),
        "success": _value(run, "alpha_cal_success", "run"),
        "reason": _value(run, "alpha_cal_reason", "run"),
        "overlap_boundary_mev": _value(run, "alpha_overlap_boundary", "run"),
        "n_frames": _value(run, "alpha_n_frames", "run"),
        "n_monitor_frames": {str(m): int(n) for m, n in zip(
            run["monitor"].values, run["alpha_monitor_n_frames"].values, strict=True)},
        "units": {"x0": "SCA MeV", "sigma": "SCA MeV", "window": "SCA MeV",
                  "ref_energy": "MeV", "energy": "MeV", "residual_linear": "MeV",
                  "residual_quadratic": "MeV", "range": "MeV", "overlap_boundary_mev": "MeV",
                  "linear": ["MeV", "MeV/(SCA MeV)"],
                  "quadratic": ["MeV", "MeV/(SCA MeV)", "MeV/(SCA MeV)^2"]},
        "lineage": lineage,
    }  # fmt: skip


def export_alpha(out_dir, run_id: str, run: xr.Dataset, lineage: dict) -> list[Path]:
    """Write ``plots/<run_id>_alpha_calibration.json`` (:func:`alpha_calibration`)."""
    folder = Path(out_dir) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    return [atomic_write_json(folder / f"{run_id}_alpha_calibration.json",
                              alpha_calibration(run, run_id, lineage))]


def _event_lines(frames: SetFrames) -> Iterator[str]:
    """One compact JSON object per frame: wf_id, accepted, reason, area (null unless accepted).

    Built by formatting rather than by the (pure-Python, indenting) encoder: a set can
    hold millions of frames.  Strings that need escaping (the file stems) are encoded by
    :func:`json.dumps` once per file; floats use ``repr``, which is what json writes.
    """
    reasons = {int(o): json.dumps(o.reason) for o in XrayOutcome}
    files, file_index = np.unique(frames.file, return_inverse=True)
    # '"<stem>_ff' — the closing quote follows the frame number.
    prefixes = [json.dumps(wf_id(f, 0), ensure_ascii=False)[:-2] for f in files]
    for start in range(0, frames.file.size, _EVENT_BLOCK):
        block = slice(start, start + _EVENT_BLOCK)
        codes = frames.xray_code[block].astype(np.int64).tolist()
        areas = frames.xray_area[block].tolist()
        numbers = frames.frame_in_file[block].tolist()
        for idx, code, number, area in zip(file_index[block].tolist(), codes, numbers, areas,
                                           strict=True):  # fmt: skip
            accepted = code == XrayOutcome.ACCEPTED
            yield (f'{{"wf_id": {prefixes[idx]}{number}", "accepted": '
                   f'{"true" if accepted else "false"}, "reason": {reasons[code]}, '
                   f'"area": {repr(area) if accepted else "null"}}}')  # fmt: skip


def xray_results_header(set_name: str, frames: SetFrames, row: xr.Dataset, params: dict,
                        lineage: dict) -> dict:  # fmt: skip
    """``xray_results.json`` without its ``events`` list; counts checked against ``row``."""
    n_events = int(frames.xray_code.size)
    n_accepted = int(np.count_nonzero(frames.accepted))
    for var, outcomes in XRAY_COUNTS.items():
        if var in row.variables:
            counted = int(np.isin(frames.xray_code, [int(o) for o in outcomes]).sum())
            stored = int(row[var].values)
            if counted != stored:
                raise AnalysisError(f"set {set_name}: {var} = {stored} in sets, but the frames "
                                    f"hold {counted} such X-ray outcomes")  # fmt: skip
    by_reason = {o.reason: int(np.count_nonzero(frames.xray_code == o))
                 for o in XrayOutcome}  # fmt: skip
    return {
        "set_id": set_name, "params": params, "n_events": n_events, "n_accepted": n_accepted,
        "n_rejected": n_events - n_accepted, "n_by_reason": by_reason,
        "units": {"area": "mV·µs"}, "lineage": lineage,
    }  # fmt: skip


def _write_xray_results(path: Path, head: str, frames: SetFrames) -> Path:
    # ``head``: the JSON text of the header (indented); the events follow one per line,
    # streamed.
    with atomic_open(path, text=True) as fh:
        fh.write(head[: head.rindex("}")].rstrip())
        fh.write(',\n  "events": [')
        separator = "\n    "
        for line in _event_lines(frames):
            fh.write(separator + line)
            separator = ",\n    "
        fh.write("\n  ]\n}\n" if frames.file.size else "]\n}\n")
    return path


def export_set(out_dir, set_name: str, sets: xr.Dataset, frames: xr.Dataset, params: dict,
               lineage: dict, *, xray_params: dict | None = None,
               isotopes: dict | None = None) -> list[Path]:
    """Write the per-set files into ``out_dir/<set_name>/``; returns their paths.

    ``params``: ``n_pedestal``, ``ma_window``, ``bs_threshold`` (mV), ``dt`` (the set's
    sample spacing, µs) and ``width_s2`` (µs) for ``s2_results.json``; ``xray_params`` (by
    default ``params``) is written as ``xray_results.json`` ``params``.  ``lineage``:
    configuration and code version, copied into both JSON files.  The S2 method is the
    ``s2_window_method`` attribute of ``sets`` (else ``params["method"]``).  ``isotopes``
    (:func:`isotope_results`) adds the per-isotope results to ``s2_results.json``.
    """
    method = sets.attrs.get("s2_window_method", params.get("method"))
    if not method:
        raise ConfigError("no S2 window method: sets has no 's2_window_method' attribute and "
                          "params no 'method'")  # fmt: skip
    row = sets.sel(set=set_name)
    fr = SetFrames.from_frames(frames, set_name)
    # Every check runs before the first file is written: a refused set leaves no files.
    s2_text = dumps_json(s2_results(row, params, lineage, method, isotopes))
    xray_head = dumps_json(xray_results_header(set_name, fr, row, xray_params or params,
                                               lineage))
    table = frames_table(fr, frames)
    folder = Path(out_dir) / set_name
    folder.mkdir(parents=True, exist_ok=True)
    return [
        atomic_save_npy(folder / "s2_areas.npy", fr.s2_area.astype(np.float64)),
        atomic_write_text(folder / "s2_results.json", s2_text),
        atomic_save_npy(folder / "xray_areas.npy", fr.xray_area[fr.accepted].astype(np.float64)),
        _write_xray_results(folder / "xray_results.json", xray_head, fr),
        write_frames_table(folder / "frames.parquet", table),
    ]


def frames_table(fr: SetFrames, frames: xr.Dataset):
    """``frames.parquet`` content as a :class:`pyarrow.Table`: the identity columns, then
    every per-frame variable, each field with its ``units`` and ``long_name`` metadata."""
    import pyarrow as pa

    from ratag_xr.features import FEATURES

    # identity, §14's columns, then the features' outputs in registry order, then anything
    # else by name: the same columns in the same order whatever order they were stored in
    declared = [o for f in FEATURES.values() for o in f.output_names]
    order = [c for c in (*IDENTITY, *COLUMNS, *declared) if c in fr.columns]
    order = list(dict.fromkeys(order))
    order += sorted(c for c in fr.columns if c not in order)
    fields, arrays = [], []
    for name in order:
        values = fr.columns[name]
        attrs = frames[name].attrs if name in frames.variables else {}
        meta = {"units": str(attrs.get("units", "1")),
                "long_name": str(attrs.get("long_name", name))}
        if name == "trigger_time":
            array = pa.array(values.astype("datetime64[ns]"), type=pa.timestamp("ns", "UTC"))
            meta["units"] = "UTC"
        else:
            array = pa.array(values)
        fields.append(pa.field(name, array.type, metadata=meta))
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def write_frames_table(path: Path, table) -> Path:
    """Write a frames table as parquet (zstd), atomically."""
    import pyarrow.parquet as pq

    with atomic_open(path) as fh:
        pq.write_table(table, fh, compression="zstd")
    return Path(path)


#: ``<run_id>_xray_metadata.json``: the gain the recombination used and this run's own
#: (they differ when calibrate.g_s2 names another run's), where it came from
GAIN_FIELDS = ("g_S2", "g_S2_err", "g_S2_own", "g_S2_own_err", "g_S2_source",
               "g_S2_source_lineage")


def export_run(out_dir, run_id: str, sets: xr.Dataset, run: xr.Dataset, frames: xr.Dataset,
               lineage: dict) -> list[Path]:  # fmt: skip
    """Write ``<run_id>_xray_areas_combined.npy`` (accepted X-ray areas of all sets, set order
    then frame order, mV·µs), ``<run_id>_xray_metadata.json`` and
    ``<run_id>_diffusion_analysis.json`` into ``out_dir/plots/``."""
    folder = Path(out_dir) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    names = [str(s) for s in sets["set"].values]
    areas = []
    for name in names:
        fr = SetFrames.from_frames(frames, name)
        areas.append(fr.xray_area[fr.accepted])
    combined = np.concatenate(areas) if areas else np.empty(0, dtype=np.float64)
    what = "run"
    metadata = {
        "run_id": run_id, "n_areas": int(combined.size), "sets": names,
        "mean": _value(run, "A_x_mean", what), "std": _value(run, "A_x_sigma", what),
        "ci95": _value(run, "A_x_ci95", what),
        "fit_success": _value(run, "xray_fit_success", what),
        "fit_reason": _value(run, "xray_fit_reason", what),
        **{key: _value(run, key, what) for key in GAIN_FIELDS if key in run.variables},
        "units": {"areas": "mV·µs", "mean": _units(run, "A_x_mean"),
                  "std": _units(run, "A_x_sigma"), "ci95": _units(run, "A_x_ci95"),
                  **{key: _units(run, key) for key in GAIN_FIELDS[:4]
                     if key in run.variables}},
        "lineage": lineage,
    }  # fmt: skip
    diffusion = diffusion_results(run_id, sets, run, lineage)
    return [
        atomic_save_npy(folder / f"{run_id}_xray_areas_combined.npy", combined),
        atomic_write_json(folder / f"{run_id}_xray_metadata.json", metadata),
        atomic_write_json(folder / f"{run_id}_diffusion_analysis.json", diffusion),
    ]
