"""Stage ``calibrate``: X-ray energy calibration, recombination (§8), diffusion (§9).

The gain g_S2 that the recombination uses is this run's own X-ray fit (§8), or, with
``calibrate.g_s2``, another run's: a ratag_xr output folder (its stored ``calibrate``
result; that result's lineage hash enters this stage's lineage, so a changed source
recomputes this stage) or a value ± error.  This run's own X-ray fit is done either way
and reported beside it (``g_S2_own``).  The recoil energy E_R of §8 is ``run.e_recoil``,
else the recoil of ``alpha.target_isotope`` (§14: Q·4/A), else none (the X-ray's expected
electrons are compared with).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from ratag_xr.errors import ConfigError
from ratag_xr.params import (
    Param,
    at_least,
    declare_check,
    declare_data_check,
    declare_data_warning,
    increasing,
    one_of,
)
from ratag_xr.physics.alpha import Q_VALUES_KEV, recoil_energy_kev
from ratag_xr.physics.calibration import recombination, xray_calibration
from ratag_xr.physics.diffusion import fit_diffusion, sigma2_error_from_n
from ratag_xr.physics.fit import fit_gaussian_hist
from ratag_xr.pipeline.partials import combined_histogram
from ratag_xr.stages import Stage, StageResult, register
from ratag_xr.vocabulary import GAIN_OWN, describe

RUN = ("A_x_mean", "A_x_sigma", "A_x_ci95", "xray_amplitude", "xray_fit_success",
       "xray_fit_reason", "xray_chi2_ndf", "xray_n_entries", "xray_hist", "xray_hist_edges",
       "N_e_exp", "g_S2", "g_S2_err", "g_S2_own", "g_S2_own_err", "g_S2_source",
       "g_S2_source_lineage", "D_L", "D_L_err", "sigma0_sq", "sigma0_sq_err",
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


def _gain_problem(value) -> str | None:
    """null, a folder (str) or {value, error} with value > 0, error >= 0."""
    if value is None or isinstance(value, str):
        return None if value != "" else "must name a ratag_xr output folder"
    if set(value) != {"value", "error"}:
        return (f"must be a ratag_xr output folder or {{value, error}} (mV·µs per electron), "
                f"got keys {sorted(value)}")
    for key, low in (("value", 0.0), ("error", None)):
        v = value[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                or (v <= low if low is not None else v < 0):
            return f"{key} = {v!r} must be a finite number {'> 0' if low is not None else '>= 0'}"
    return None


_gain_problem.__doc__ = "a folder, or {value, error}"

GAIN = (
    Param("calibrate.g_s2", None, str | dict | None, "mV·µs/electron", "S2 gain the "
          "recombination uses: null (this run's X-ray fit, §8), another ratag_xr output "
          "folder (its calibrate result: an X-ray run's gain for a recoil run; relative to "
          "the YAML file) or {value, error} (mV·µs per electron, error a 95 % half-width "
          "like g_S2_err); this run's own fit is still reported (g_S2_own)",
          checks=(_gain_problem,)),
    Param("alpha.target_isotope", None, str | None, "", "the isotope a single-isotope run "
          "studies: the run's recombination r compares with its recoil energy Q·4/A (§14) "
          "unless run.e_recoil is given", checks=(one_of(*Q_VALUES_KEV),)),
)
#: ``g_S2_source`` of a run whose own X-ray fit is the gain
OWN = GAIN_OWN
#: ``g_S2_source`` of a gain given as {value, error}
GIVEN = "calibrate.g_s2 value"


@dataclass(frozen=True)
class GainSource:
    """A gain from outside this run's X-ray fit (mV·µs per electron; ``g_S2_err`` a 95 %
    half-width).  ``source``: the output folder it was read from or :data:`GIVEN`;
    ``lineage``: that folder's ``calibrate`` lineage hash ("" for a given value);
    ``w_value``/``e_xray`` (eV): what that run counted its electrons with (None: unknown)."""

    g_S2: float
    g_S2_err: float
    source: str
    lineage: str = ""
    w_value: float | None = None
    e_xray: float | None = None


def gain_source(value) -> GainSource | None:
    """The gain ``calibrate.g_s2`` names (None: this run's own X-ray fit).  A folder is
    a ratag_xr output root (or its ``results.zarr``) with a successful ``calibrate``
    result; anything else is a :class:`~ratag_xr.errors.ConfigError` naming it."""
    from ratag_xr.pipeline.results import load_stage, stored_lineage

    if value is None:
        return None
    if isinstance(value, dict):
        return GainSource(float(value["value"]), float(value["error"]), GIVEN)
    folder = Path(value)
    results = folder if folder.name.endswith(".zarr") else folder / "results.zarr"
    where = f"calibrate.g_s2 = {value!r}"
    lin = stored_lineage(results, "calibrate") if results.is_dir() else None
    if lin is None:
        raise ConfigError(f"{where}: {results} holds no calibrate result (run `ratag-xr "
                          "calibrate` on that run first)")
    run = load_stage(results, "calibrate", "run")
    g, err = float(run.g_S2), float(run.g_S2_err)
    if not (math.isfinite(g) and g > 0):
        raise ConfigError(f"{where}: that run has no g_S2 (its X-ray fit: "
                          f"{run.xray_fit_reason.values.item() or 'failed'})")
    return GainSource(g, err, str(folder), str(lin["hash"]), run.attrs.get("w_value"),
                      run.attrs.get("e_xray"))


def _external(config) -> dict:
    """Lineage entry of a gain read from another run: its folder, lineage hash and value."""
    source = gain_source(config.get("calibrate.g_s2"))
    if source is None or not source.lineage:
        return {}
    return {"calibrate.g_s2": {"source": source.source, "lineage": source.lineage,
                               "g_S2": source.g_S2, "g_S2_err": source.g_S2_err}}


def _check_gain_source(config, facts) -> str | None:
    """The folder of ``calibrate.g_s2`` has a gain, and is not this run's own output."""
    value = config.get("calibrate.g_s2")
    if isinstance(value, str) and "out" in facts and \
            Path(value).resolve() in (Path(facts["out"]).resolve(),
                                      Path(facts["out"]).resolve() / "results.zarr"):
        return (f"calibrate.g_s2 = {value!r} is this run's own output folder: it names "
                "another run's (or leave it null for this run's X-ray fit)")
    try:
        gain_source(value)
    except ConfigError as exc:
        return str(exc)
    return None


def _gain_w_value(config, facts) -> str | None:
    """A source run that counted electrons with another W-value or X-ray energy."""
    source = gain_source(config.get("calibrate.g_s2"))
    if source is None:
        return None
    out = []
    for name, theirs in (("w_value", source.w_value), ("e_xray", source.e_xray)):
        ours = config.get(f"run.{name}")
        if theirs is not None and not math.isclose(float(theirs), ours, rel_tol=1e-9):
            out.append(f"calibrate.g_s2: the source run {source.source} has run.{name} = "
                       f"{float(theirs):g} eV, this run {ours:g} eV (its g_S2 is per "
                       "electron counted with its own values)")
    return out


declare_data_check("calibrate.g_s2 source", _check_gain_source)
declare_data_warning("calibrate.g_s2 W-value", _gain_w_value)


def recoil_energy_ev(run_cfg, target: str | None) -> tuple[float | None, str]:
    """E_R (eV) of §8 and where it came from: ``run.e_recoil``, else the recoil of
    ``alpha.target_isotope`` (§14), else None (the X-ray's expected electrons)."""
    if run_cfg.e_recoil is not None:
        return float(run_cfg.e_recoil), "run.e_recoil"
    if target is not None:
        return recoil_energy_kev(target) * 1e3, f"alpha.target_isotope {target} (Q·4/A)"
    return None, ""


def _check_bins(config) -> str | None:
    cfg = config.calibrate
    if cfg.xray_exclude_index >= cfg.xray_nbins:
        return (f"calibrate.xray_exclude_index = {cfg.xray_exclude_index} must be below "
                f"calibrate.xray_nbins = {cfg.xray_nbins}: no bin would be fitted")
    return None


declare_check("calibrate bins", _check_bins)


def combined_xray_fit(frames: xr.Dataset, cfg):
    """Histogram of every accepted X-ray area of every set (``frames`` may be lazy: the sum
    of per-block histograms), and its fit; returns the
    run-level dataset part and the :class:`~ratag_xr.physics.fit.GaussFit`."""
    lo, hi = cfg.xray_bin_cuts
    counts = combined_histogram(frames.xray_area, frames.valid, (lo, hi, cfg.xray_nbins))
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


def calibrate(ion: xr.Dataset, prep: xr.Dataset, frames: xr.Dataset, run_cfg, cfg,
              source: GainSource | None = None, target: str | None = None
              ) -> tuple[xr.Dataset, xr.Dataset]:
    """Per-run and per-set calibration datasets from the ion fits and prepared frames.

    ``source``: a gain from outside this run's X-ray fit (None: the fit's); the
    recombination then uses it and its uncertainty, A_x standing for g_S2 × N_e_exp
    (so ``norm_A_ion`` = N_e_meas / N_e_exp).  ``target``: ``alpha.target_isotope``.
    """
    run_ds, xfit = combined_xray_fit(frames, cfg)
    cal = xray_calibration(xfit, e_xray_ev=run_cfg.e_xray, w_ev=run_cfg.w_value)
    e_recoil, e_recoil_source = recoil_energy_ev(run_cfg, target)
    if source is None:
        a_x, a_x_err, g_s2 = cal.A_x_mean, cal.ci95, cal.g_S2 if cal.success else None
        used = (cal.g_S2, cal.g_S2_err, OWN, "")
    else:
        a_x, a_x_err, g_s2 = (source.g_S2 * cal.N_e_exp, source.g_S2_err * cal.N_e_exp,
                              source.g_S2)
        used = (source.g_S2, source.g_S2_err, source.source, source.lineage)
    rec = recombination(ion.s2_area_mean.values, ion.s2_area_ci95.values, a_x, a_x_err,
                        n_e_exp=cal.N_e_exp, g_s2=g_s2, e_recoil_ev=e_recoil,
                        w_ev=run_cfg.w_value)
    run_ds = run_ds.assign(N_e_exp=cal.N_e_exp, g_S2=used[0], g_S2_err=used[1],
                           g_S2_own=cal.g_S2, g_S2_own_err=cal.g_S2_err,
                           g_S2_source=used[2], g_S2_source_lineage=used[3])
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
    if e_recoil is not None:
        run_ds.attrs.update(e_recoil=e_recoil, e_recoil_source=e_recoil_source)
    return describe(run_ds, list(RUN)), describe(sets, list(SETS))


def compute(ctx) -> StageResult:
    run_ds, sets = calibrate(ctx.load("integrate", "sets"), ctx.load("prepare", "sets"),
                             ctx.open("frames", "frames"), ctx.config.run,
                             ctx.config.calibrate, gain_source(ctx.config.calibrate.g_s2),
                             ctx.config.alpha.target_isotope)
    run_ds.attrs["run_id"] = sets.attrs["run_id"] = ctx.run_id
    return StageResult(run=run_ds, sets=sets)


STAGE = register(Stage(
    name="calibrate",
    version=6,
    reads=("stage:prepare", "stage:frames", "stage:integrate", "config:run.e_xray",
           "config:run.w_value",
           "config:run.e_recoil", "config:run.run_id"),
    params=PARAMS + GAIN,
    provides={"run": RUN, "sets": SETS},
    compute=compute,
    external=_external,
    doc="combined X-ray fit → A_x, g_S2; per set N_e, recombination r, A_ion/A_x with "
        "ion-only and ion+X-ray uncertainties; σ² of the S2 duration vs drift → D_L "
        "(longitudinal) (§8–§9)",
))
