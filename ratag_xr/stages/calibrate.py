"""Stage ``calibrate``: X-ray energy calibration, recombination (§8), diffusion (§9)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ratag_xr.params import Param, at_least, declare_check, increasing
from ratag_xr.physics.calibration import recombination, xray_calibration
from ratag_xr.physics.diffusion import fit_diffusion, sigma2_error_from_n
from ratag_xr.physics.fit import fit_gaussian_hist
from ratag_xr.stages import Stage, StageResult, register
from ratag_xr.vocabulary import describe

RUN = ("A_x_mean", "A_x_sigma", "A_x_ci95", "xray_amplitude", "xray_fit_success",
       "xray_fit_reason", "xray_chi2_ndf", "xray_n_entries", "xray_hist", "xray_hist_edges",
       "N_e_exp", "g_S2", "g_S2_err", "D_L", "D_L_err", "sigma0_sq", "sigma0_sq_err",
       "diffusion_chi2_ndf", "diffusion_success", "diffusion_reason")
RECOMBINATION = ("N_e_meas", "N_e_meas_err", "N_e_meas_err_ion", "r", "r_err", "r_err_ion",
                 "norm_A_ion", "norm_A_ion_err", "norm_A_ion_err_ion")
SETS = (*RECOMBINATION, "sigma2_obs", "sigma2_obs_err")
#: How the S2 durations behind the diffusion fit were found (attributes of ``prepare``'s
#: sets, copied to the run part: §4 reference or §15 clean timing).
DIFFUSION_TIMING = ("s2_window_method", "s2_timing", "s2_max_gap")

PARAMS = (
    Param("calibrate.xray_bin_cuts", (0.6, 20.0), tuple[float, ...], "mV·µs",
          "combined X-ray histogram range", checks=(increasing,)),
    Param("calibrate.xray_nbins", 100, int, "", "combined X-ray histogram bins",
          checks=(at_least(1),)),
    Param("calibrate.xray_exclude_index", 0, int, "", "leading X-ray bins left out of the "
          "fit", checks=(at_least(0),)),
)


def _check_bins(config) -> str | None:
    cfg = config.calibrate
    if cfg.xray_exclude_index >= cfg.xray_nbins:
        return (f"calibrate.xray_exclude_index = {cfg.xray_exclude_index} must be below "
                f"calibrate.xray_nbins = {cfg.xray_nbins}: no bin would be fitted")
    return None


declare_check("calibrate bins", _check_bins)


def combined_xray_fit(frames: xr.Dataset, cfg):
    """Histogram of every accepted X-ray area of every set, and its fit; returns the
    run-level dataset part and the :class:`~ratag_xr.physics.fit.GaussFit`."""
    lo, hi = cfg.xray_bin_cuts
    areas = frames.xray_area.where(frames.valid).values
    counts = np.histogram(areas.ravel(), bins=cfg.xray_nbins, range=(lo, hi))[0]
    edges = np.linspace(lo, hi, cfg.xray_nbins + 1)
    fit = fit_gaussian_hist(counts, edges, exclude_index=cfg.xray_exclude_index)
    ds = xr.Dataset({
        "A_x_mean": fit.mean, "A_x_sigma": fit.sigma, "A_x_ci95": fit.ci95,
        "xray_amplitude": fit.amplitude, "xray_fit_success": bool(fit.success),
        "xray_fit_reason": fit.reason or "", "xray_chi2_ndf": fit.chi2_ndf,
        "xray_n_entries": int(fit.n_entries),
        "xray_hist": ("xray_bin", counts.astype(np.int64)),
        "xray_hist_edges": ("xray_bin_edge", edges)})
    return ds, fit


def diffusion(prep: xr.Dataset):
    """§9 from ``prepare``'s per-set S2 duration statistics: σ²_obs (µs²) per set, its
    error estimated from the number of durations, and the straight-line fit
    (:class:`~ratag_xr.physics.diffusion.DiffusionFit`; errors from the residuals when
    three or more sets have a σ²)."""
    sigma2 = prep.s2_duration_std.values ** 2
    n_dur = prep.n_s2_durations.values
    n_usable = int(np.isfinite(sigma2).sum())
    fit = fit_diffusion(prep.time_drift.values, prep.speed_drift.values, sigma2,
                        n_values=n_dur, absolute_sigma=n_usable < 3)
    return sigma2, sigma2_error_from_n(sigma2, n_dur), fit


def calibrate(ion: xr.Dataset, prep: xr.Dataset, frames: xr.Dataset, run_cfg, cfg
              ) -> tuple[xr.Dataset, xr.Dataset]:
    """Per-run and per-set calibration datasets from the ion fits and prepared frames."""
    run_ds, xfit = combined_xray_fit(frames, cfg)
    cal = xray_calibration(xfit, e_xray_ev=run_cfg.e_xray, w_ev=run_cfg.w_value)
    rec = recombination(ion.s2_area_mean.values, ion.s2_area_ci95.values, cal.A_x_mean,
                        cal.ci95, n_e_exp=cal.N_e_exp,
                        g_s2=cal.g_S2 if cal.success else None,
                        e_recoil_ev=run_cfg.e_recoil, w_ev=run_cfg.w_value)
    run_ds = run_ds.assign(N_e_exp=cal.N_e_exp, g_S2=cal.g_S2, g_S2_err=cal.g_S2_err)
    sets = xr.Dataset({name: ("set", np.asarray(getattr(rec, name), dtype=float))
                       for name in RECOMBINATION}, coords={"set": ion.set.values})

    sigma2, sigma2_err, dfit = diffusion(prep)
    sets["sigma2_obs"] = ("set", sigma2)
    sets["sigma2_obs_err"] = ("set", sigma2_err)
    run_ds = run_ds.assign(D_L=dfit.D_L, D_L_err=dfit.D_L_err, sigma0_sq=dfit.sigma0_sq,
                           sigma0_sq_err=dfit.sigma0_sq_err, diffusion_chi2_ndf=dfit.chi2_ndf,
                           diffusion_success=bool(dfit.success),
                           diffusion_reason=dfit.reason or "")
    run_ds.attrs.update(e_xray=run_cfg.e_xray, w_value=run_cfg.w_value,
                        diffusion_weighting=dfit.weighting,
                        **{k: prep.attrs[k] for k in DIFFUSION_TIMING if k in prep.attrs})
    if run_cfg.e_recoil is not None:
        run_ds.attrs["e_recoil"] = run_cfg.e_recoil
    return describe(run_ds, list(RUN)), describe(sets, list(SETS))


def compute(ctx) -> StageResult:
    run_ds, sets = calibrate(ctx.load("integrate", "sets"), ctx.load("prepare", "sets"),
                             ctx.load("frames", "frames"), ctx.config.run,
                             ctx.config.calibrate)
    run_ds.attrs["run_id"] = sets.attrs["run_id"] = ctx.run_id
    return StageResult(run=run_ds, sets=sets)


STAGE = register(Stage(
    name="calibrate",
    version=5,
    reads=("stage:prepare", "stage:frames", "stage:integrate", "config:run.e_xray",
           "config:run.w_value",
           "config:run.e_recoil", "config:run.run_id"),
    params=PARAMS,
    provides={"run": RUN, "sets": SETS},
    compute=compute,
    doc="combined X-ray fit → A_x, g_S2; per set N_e, recombination r, A_ion/A_x with "
        "ion-only and ion+X-ray uncertainties; σ² of the S2 duration vs drift → D_L "
        "(longitudinal) (§8–§9)",
))
