"""Ion S2 areas (ALGORITHMS.md §5) and their per-set Gaussian fits (§6).

Areas come from the second pass over every frame (one task per waveform chunk on the
cluster), in the per-set window of the preparation; the per-frame areas (one number per
frame) are gathered, histogrammed and fitted per set, and stored with the frames'
identity.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ratag_xr.cluster import managed_client
from ratag_xr.physics.fit import fit_gaussian_hist, robust_range_hist
from ratag_xr.pipeline.context import lineage, open_analysis, with_units
from ratag_xr.pipeline.frames import analysis_nodes, compute_pass
from ratag_xr.pipeline.prepare import prepare_run
from ratag_xr.pipeline.results import load_stage, save_stage, stored_lineage

INTEGRATE_UNITS = {
    "s2_window_start": ("µs", "start of the integrated S2 window"),
    "s2_window_end": ("µs", "end of the integrated S2 window"),
    "s2_window_estimated": ("1", "window from the S2 statistics (false: fallback window)"),
    "s2_area_mean": ("mV·µs", "fitted mean ion S2 area"),
    "s2_area_sigma": ("mV·µs", "fitted sigma of the ion S2 area"),
    "s2_area_ci95": ("mV·µs", "95% confidence half-width of the mean (1.96 standard errors)"),
    "s2_area_amplitude": ("1", "fitted number of frames under the Gaussian"),
    "s2_area_chi2_ndf": ("1", "likelihood chi2 per degree of freedom of the fit"),
    "s2_area_n_entries": ("1", "frames in the fitted bins"),
    "s2_fit_success": ("1", "the Gaussian fit succeeded"),
    "s2_fit_reason": ("1", "why the fit failed"),
    "n_frames": ("1", "valid frames"),
    "n_area_nan": ("1", "valid frames that could not be integrated (area NaN)"),
    "s2_area_hist": ("1", "frames per bin of the ion S2 area"),
    "s2_area_hist_edges": ("mV·µs", "bin edges of the ion S2 area histogram"),
}
_AUTO_BINS = 2000  # fine bins used to find a robust automatic range


def integration_windows(prep: xr.Dataset, params, use_estimated: bool) -> xr.Dataset:
    """Per-set window [start, end] in µs: the S2 statistics, else the §5 fallback."""
    fallback_start = prep.t_s1 + prep.time_drift + params.ts2_tol
    fallback_end = fallback_start + params.width_s2
    if use_estimated and "t_s2_start_mean" in prep:
        estimated = np.isfinite(prep.t_s2_start_mean) & np.isfinite(prep.t_s2_end_mean)
    else:
        estimated = xr.zeros_like(prep.t_s1, dtype=bool)
    start = xr.where(estimated, prep.get("t_s2_start_mean", fallback_start), fallback_start)
    end = xr.where(estimated, prep.get("t_s2_end_mean", fallback_end), fallback_end)
    ds = xr.Dataset({"s2_window_start": start, "s2_window_end": end,
                     "s2_window_estimated": estimated})
    ds = ds.drop_vars([c for c in ds.coords if c != "set"])
    return with_units(ds, INTEGRATE_UNITS)


def _ranges(areas: xr.DataArray, names, params) -> dict[str, tuple[float, float, int]]:
    """Histogram (low, high, nbins) per set; automatic ranges from a fine histogram."""
    specs = {name: params.histogram_for(name) for name in names}
    out = {n: (*specs[n]["bin_cuts"], int(specs[n]["nbins"])) for n in names}
    for n in names:
        if not specs[n]["auto_range"]:
            continue
        values = areas.sel(set=n).values
        hi = float(np.nanmax(values)) if np.isfinite(values).any() else np.nan
        hi = hi if np.isfinite(hi) and hi > 0 else 1.0
        counts, edges = np.histogram(values, bins=_AUTO_BINS, range=(0.0, hi))
        rng = robust_range_hist(counts, edges)
        if rng is not None and rng[1] > rng[0]:
            out[n] = (float(rng[0]), float(rng[1]), int(specs[n]["nbins"]))
    return out


def _fit_table(areas: xr.DataArray, valid: xr.DataArray, names, params) -> xr.Dataset:
    ranges = _ranges(areas, names, params)
    max_bins = max(r[2] for r in ranges.values())
    hist = np.zeros((len(names), max_bins), dtype=np.int64)
    edges = np.full((len(names), max_bins + 1), np.nan)
    rows: dict[str, list] = {k: [] for k in (
        "s2_area_mean", "s2_area_sigma", "s2_area_ci95", "s2_area_amplitude",
        "s2_area_chi2_ndf", "s2_area_n_entries", "s2_fit_success", "s2_fit_reason",
        "n_frames", "n_area_nan")}
    for i, n in enumerate(names):
        lo, hi, nb = ranges[n]
        counts, _ = np.histogram(areas.sel(set=n).values, bins=nb, range=(lo, hi))
        hist[i, :nb] = counts
        edges[i, : nb + 1] = np.linspace(lo, hi, nb + 1)
        fit = fit_gaussian_hist(counts, edges[i, : nb + 1], exclude_index=params.exclude_index)
        rows["s2_area_mean"].append(fit.mean)
        rows["s2_area_sigma"].append(fit.sigma)
        rows["s2_area_ci95"].append(fit.ci95)
        rows["s2_area_amplitude"].append(fit.amplitude)
        rows["s2_area_chi2_ndf"].append(fit.chi2_ndf)
        rows["s2_area_n_entries"].append(int(fit.n_entries))
        rows["s2_fit_success"].append(bool(fit.success))
        rows["s2_fit_reason"].append(fit.reason or "")
        rows["n_frames"].append(int(valid.sel(set=n).sum()))
        rows["n_area_nan"].append(int((valid.sel(set=n) & np.isnan(areas.sel(set=n))).sum()))
    ds = xr.Dataset({k: ("set", np.asarray(v)) for k, v in rows.items()},
                    coords={"set": list(names)})
    ds["s2_area_hist"] = (("set", "bin"), hist)
    ds["s2_area_hist_edges"] = (("set", "bin_edge"), edges)
    return with_units(ds, INTEGRATE_UNITS)


def run_ion_integration(run, use_estimated_s2_windows: bool = True, flag_plot: bool = True, *,
                        out=None, config=None, client=None, force: bool = False) -> xr.Dataset:
    """§5–§6 for every set; returns the per-set dataset (windows, fit results, histograms).

    Runs (or reuses) :func:`prepare_run` first.  With ``flag_plot`` the per-set histograms,
    the waveform validation figures and the run's S2-vs-drift figures are saved.
    """
    run = open_analysis(run, out=out, config=config, client=client, force=force)
    with managed_client(run.client) as cl:
        run.client = cl
        prep = prepare_run(run)
        lin = lineage(run, "integrate", ("integrate",),
                      upstream={"prepare": stored_lineage(run.results, "prepare")})
        lin["use_estimated_s2_windows"] = use_estimated_s2_windows
        if run.reuse("integrate", lin):
            sets = load_stage(run.results, "integrate", "sets")
        else:
            sets = _integrate(run, prep, use_estimated_s2_windows, lin, cl)
        if flag_plot:
            from ratag_xr.pipeline.outputs import save_integration_plots

            save_integration_plots(run, cl)
    return sets


def _integrate(run, prep, use_estimated, lin, cl) -> xr.Dataset:
    params = run.config.integrate
    windows = integration_windows(prep, params, use_estimated)
    p = run.config.prepare
    frames = compute_pass(analysis_nodes(run.store, run.nfiles), "pass2",
                          {"n_pedestal": p.n_pedestal, "ma_window": p.ma_window,
                           "bs_threshold": params.bs_threshold}, cl,
                          per_set=windows, per_set_names=("s2_window_start", "s2_window_end"),
                          label="integrate: pass 2 over the frames", progress=run.progress)
    sets = windows.merge(_fit_table(frames.s2_area, frames.valid, list(windows.set.values),
                                    params))
    sets.attrs.update(run_id=run.run_id)
    save_stage(run.results, "integrate", lin, client=cl, sets=sets, frames=frames)
    run.computed.add("integrate")
    return sets
