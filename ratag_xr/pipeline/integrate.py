"""Ion S2 areas (ALGORITHMS.md §5) and their per-set Gaussian fits (§6).

Areas come from the second pass over every frame, in the per-set window of the
preparation.  Histograms are made chunk by chunk on the cluster and summed there;
per-frame areas are written to the results store by the workers, never gathered.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ratag_xr.cluster import managed_client
from ratag_xr.physics.fit import fit_gaussian_hist, robust_range_hist
from ratag_xr.pipeline.context import (
    lineage,
    open_analysis,
    persist_with_progress,
    with_units,
)
from ratag_xr.pipeline.frames import analysis_nodes, map_features
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
    """Histogram (low, high, nbins) per set; automatic ranges from summed fine histograms."""
    specs = {name: params.histogram_for(name) for name in names}
    auto = [n for n in names if specs[n]["auto_range"]]
    out = {n: (*specs[n]["bin_cuts"], int(specs[n]["nbins"])) for n in names}
    if auto:
        highs = dask.compute(*[areas.sel(set=n).max() for n in auto])
        fine = {}
        for n, hi in zip(auto, highs, strict=True):
            hi = float(hi) if np.isfinite(hi) and hi > 0 else 1.0
            fine[n] = (da.histogram(areas.sel(set=n).data, bins=_AUTO_BINS, range=(0.0, hi))[0],
                       np.linspace(0.0, hi, _AUTO_BINS + 1))
        counts = dask.compute({n: c for n, (c, _) in fine.items()})[0]
        for n in auto:
            rng = robust_range_hist(counts[n], fine[n][1])
            if rng is not None and rng[1] > rng[0]:
                out[n] = (float(rng[0]), float(rng[1]), int(specs[n]["nbins"]))
    return out


def _fit_table(areas: xr.DataArray, valid: xr.DataArray, names, params) -> xr.Dataset:
    ranges = _ranges(areas, names, params)
    max_bins = max(r[2] for r in ranges.values())
    lazy = {n: da.histogram(areas.sel(set=n).data, bins=ranges[n][2],
                            range=ranges[n][:2])[0] for n in names}
    nan_counts = {n: (valid.sel(set=n) & np.isnan(areas.sel(set=n))).sum().data for n in names}
    counts, nans = dask.compute(lazy, nan_counts)
    hist = np.zeros((len(names), max_bins), dtype=np.int64)
    edges = np.full((len(names), max_bins + 1), np.nan)
    rows: dict[str, list] = {k: [] for k in (
        "s2_area_mean", "s2_area_sigma", "s2_area_ci95", "s2_area_amplitude",
        "s2_area_chi2_ndf", "s2_area_n_entries", "s2_fit_success", "s2_fit_reason",
        "n_frames", "n_area_nan")}
    for i, n in enumerate(names):
        lo, hi, nb = ranges[n]
        hist[i, :nb] = counts[n]
        edges[i, : nb + 1] = np.linspace(lo, hi, nb + 1)
        fit = fit_gaussian_hist(counts[n], edges[i, : nb + 1], exclude_index=params.exclude_index)
        rows["s2_area_mean"].append(fit.mean)
        rows["s2_area_sigma"].append(fit.sigma)
        rows["s2_area_ci95"].append(fit.ci95)
        rows["s2_area_amplitude"].append(fit.amplitude)
        rows["s2_area_chi2_ndf"].append(fit.chi2_ndf)
        rows["s2_area_n_entries"].append(int(fit.n_entries))
        rows["s2_fit_success"].append(bool(fit.success))
        rows["s2_fit_reason"].append(fit.reason or "")
        rows["n_frames"].append(int(valid.sel(set=n).sum()))
        rows["n_area_nan"].append(int(nans[n]))
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
    lazy = map_features(analysis_nodes(run.store, run.nfiles), "pass2", {"n_pedestal": p.n_pedestal,
                                             "ma_window": p.ma_window,
                                             "bs_threshold": params.bs_threshold},
                        per_set=windows, per_set_names=("s2_window_start", "s2_window_end"))
    # per-frame areas stay on the workers
    lazy = persist_with_progress(cl, lazy, "integrate: pass 2 over the frames", run.progress)
    with dask.config.set(scheduler=cl):
        sets = windows.merge(_fit_table(lazy.s2_area, lazy.valid, list(windows.set.values),
                                        params))
    sets.attrs.update(run_id=run.run_id)
    save_stage(run.results, "integrate", lin, client=cl, sets=sets, frames=lazy)
    run.computed.add("integrate")
    return sets
