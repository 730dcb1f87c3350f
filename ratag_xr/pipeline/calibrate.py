"""X-ray energy calibration, recombination (§8) and longitudinal diffusion (§9)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ratag_xr.cluster import managed_client
from ratag_xr.errors import StoreError
from ratag_xr.physics.calibration import recombination, xray_calibration
from ratag_xr.physics.diffusion import fit_diffusion, sigma2_error_from_n
from ratag_xr.physics.fit import fit_gaussian_hist
from ratag_xr.pipeline.context import lineage, open_analysis, with_units
from ratag_xr.pipeline.results import load_stage, save_stage, stored_lineage

RUN_UNITS = {
    "A_x_mean": ("mV·µs", "fitted mean X-ray S2 area"),
    "A_x_sigma": ("mV·µs", "fitted sigma of the X-ray S2 area"),
    "A_x_ci95": ("mV·µs", "95% confidence half-width of the X-ray mean"),
    "xray_amplitude": ("1", "fitted number of X-rays under the Gaussian"),
    "xray_fit_success": ("1", "the X-ray fit succeeded"),
    "xray_fit_reason": ("1", "why the X-ray fit failed"),
    "xray_chi2_ndf": ("1", "likelihood chi2 per degree of freedom of the X-ray fit"),
    "xray_n_entries": ("1", "X-rays in the fitted bins"),
    "N_e_exp": ("electrons", "electrons expected from the reference energy (E / W)"),
    "g_S2": ("mV·µs/electron", "S2 gain"),
    "g_S2_err": ("mV·µs/electron", "S2 gain, 95% confidence half-width"),
    "D_L": ("mm²/µs", "longitudinal diffusion coefficient"),
    "D_L_err": ("mm²/µs", "longitudinal diffusion coefficient uncertainty (1 sigma)"),
    "sigma0_sq": ("µs²", "S2 duration variance at zero drift"),
    "sigma0_sq_err": ("µs²", "uncertainty of sigma0_sq (1 sigma)"),
    "diffusion_chi2_ndf": ("1", "chi2 per degree of freedom of the diffusion fit"),
    "diffusion_success": ("1", "the diffusion fit succeeded"),
    "diffusion_reason": ("1", "why the diffusion fit failed"),
    "xray_hist": ("1", "X-rays per bin, all sets"),
    "xray_hist_edges": ("mV·µs", "bin edges of the combined X-ray histogram"),
}
SET_UNITS = {
    "N_e_meas": ("electrons", "measured ionisation electrons (A_ion / g_S2)"),
    "r": ("1", "recombination fraction"),
    "norm_A_ion": ("1", "ion S2 area over X-ray S2 area"),
    "sigma2_obs": ("µs²", "variance of the S2 duration (longitudinal diffusion)"),
    "sigma2_obs_err": ("µs²", "uncertainty of sigma2_obs (1 sigma)"),
}


def _attrs(ds: xr.Dataset, table: dict) -> xr.Dataset:
    with_units(ds, table)
    for base in ("N_e_meas", "r", "norm_A_ion"):
        unit = table.get(base, ("1", ""))[0]
        for suffix, what in (("_err", "ion and X-ray fits"), ("_err_ion", "ion fit only")):
            if base + suffix in ds:
                ds[base + suffix].attrs = {"units": unit,
                                           "long_name": f"{base} 95% confidence half-width "
                                                        f"({what})"}
    return ds


def combined_xray_fit(frames: xr.Dataset, params):
    """Histogram of every accepted X-ray area of every set, and its fit.

    Returns the run-level dataset part and the :class:`GaussFit`.
    """
    lo, hi = params.xray_bin_cuts
    areas = frames.xray_area.where(frames.valid).values
    counts = np.histogram(areas.ravel(), bins=params.xray_nbins, range=(lo, hi))[0]
    edges = np.linspace(lo, hi, params.xray_nbins + 1)
    fit = fit_gaussian_hist(counts, edges, exclude_index=params.xray_exclude_index)
    ds = xr.Dataset({
        "A_x_mean": fit.mean, "A_x_sigma": fit.sigma, "A_x_ci95": fit.ci95,
        "xray_amplitude": fit.amplitude, "xray_fit_success": bool(fit.success),
        "xray_fit_reason": fit.reason or "", "xray_chi2_ndf": fit.chi2_ndf,
        "xray_n_entries": int(fit.n_entries),
        "xray_hist": ("xray_bin", counts.astype(np.int64)),
        "xray_hist_edges": ("xray_bin_edge", edges)})
    return ds, fit


def calibrate(ion: xr.Dataset, prep: xr.Dataset, frames: xr.Dataset, run_cfg, params
              ) -> tuple[xr.Dataset, xr.Dataset]:
    """Per-run and per-set calibration datasets from the ion fits and prepared frames."""
    run_ds, xfit = combined_xray_fit(frames, params)
    cal = xray_calibration(xfit, e_xray_ev=run_cfg.e_xray, w_ev=run_cfg.w_value)
    rec = recombination(ion.s2_area_mean.values, ion.s2_area_ci95.values, cal.A_x_mean,
                        cal.ci95, n_e_exp=cal.N_e_exp,
                        g_s2=cal.g_S2 if cal.success else None,
                        e_recoil_ev=run_cfg.e_recoil, w_ev=run_cfg.w_value)
    run_ds = run_ds.assign(N_e_exp=cal.N_e_exp, g_S2=cal.g_S2, g_S2_err=cal.g_S2_err)
    sets = xr.Dataset(coords={"set": ion.set.values})
    for name in ("N_e_meas", "N_e_meas_err", "N_e_meas_err_ion", "r", "r_err", "r_err_ion",
                 "norm_A_ion", "norm_A_ion_err", "norm_A_ion_err_ion"):
        sets[name] = ("set", np.asarray(getattr(rec, name), dtype=float))

    sigma2 = prep.s2_duration_std.values ** 2
    n_dur = prep.n_s2_durations.values if "n_s2_durations" in prep else None
    sigma2_err = (sigma2_error_from_n(sigma2, n_dur) if n_dur is not None
                  else np.full_like(sigma2, np.nan))
    sets["sigma2_obs"] = ("set", sigma2)
    sets["sigma2_obs_err"] = ("set", sigma2_err)
    n_usable = int(np.isfinite(sigma2).sum())
    dfit = fit_diffusion(prep.time_drift.values, prep.speed_drift.values, sigma2,
                         n_values=n_dur, absolute_sigma=n_usable < 3)
    run_ds = run_ds.assign(D_L=dfit.D_L, D_L_err=dfit.D_L_err, sigma0_sq=dfit.sigma0_sq,
                           sigma0_sq_err=dfit.sigma0_sq_err, diffusion_chi2_ndf=dfit.chi2_ndf,
                           diffusion_success=bool(dfit.success),
                           diffusion_reason=dfit.reason or "")
    run_ds.attrs.update(e_xray=run_cfg.e_xray, w_value=run_cfg.w_value,
                        diffusion_weighting=dfit.weighting)
    if run_cfg.e_recoil is not None:
        run_ds.attrs["e_recoil"] = run_cfg.e_recoil
    return _attrs(run_ds, RUN_UNITS), _attrs(sets, SET_UNITS)


def run_calibration_analysis(run, ion_fitted_areas: xr.Dataset | None = None,
                             flag_plot: bool = True, save_plots: bool = True, *, out=None,
                             config=None, client=None, force: bool = False):
    """§8–§9; returns ``(run_dataset, sets_dataset)``.

    ``ion_fitted_areas`` is the dataset of :func:`run_ion_integration`; when not given it is
    loaded from the results store, so this stage can run on its own.
    """
    run = open_analysis(run, out=out, config=config, client=client, force=force)
    prep = load_stage(run.results, "prepare", "sets")
    frames = load_stage(run.results, "prepare", "frames")
    ion = ion_fitted_areas if ion_fitted_areas is not None else load_stage(
        run.results, "integrate", "sets")
    if prep is None or frames is None or ion is None:
        raise StoreError(f"{run.results}: no prepared and integrated results; run "
                         "prepare_run and run_ion_integration (ratag-xr run) first")
    upstream = {"prepare": stored_lineage(run.results, "prepare")}
    if ion_fitted_areas is None:
        upstream["integrate"] = stored_lineage(run.results, "integrate")
    lin = lineage(run, "calibrate", ("run", "calibrate"), upstream=upstream)
    with managed_client(run.client) as cl:
        if run.reuse("calibrate", lin):
            run_ds = load_stage(run.results, "calibrate", "run")
            sets = load_stage(run.results, "calibrate", "sets")
        else:
            run_ds, sets = calibrate(ion, prep, frames, run.config.run, run.config.calibrate)
            run_ds.attrs["run_id"] = sets.attrs["run_id"] = run.run_id
            save_stage(run.results, "calibrate", lin, client=cl, run=run_ds, sets=sets)
            run.computed.add("calibrate")
        if flag_plot and save_plots:
            from ratag_xr.pipeline.outputs import save_run_plots

            save_run_plots(run, cl)
    return run_ds, sets
