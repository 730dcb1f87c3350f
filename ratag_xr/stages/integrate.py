"""Stage ``integrate`` (ALGORITHMS.md §6, §15): the per-set histograms and fits of the ion
S2 areas that the ``frames`` stage computed for every frame (§5).  It reads no waveform:
changing a histogram or fit setting refits in seconds.

The fit model is the §6 Gaussian (default) or the §15 right-tailed Crystal Ball, optionally
two-stage (a Gaussian of the zero-area population first).  Either way ``s2_area_mean`` is
the peak position (the Crystal Ball's x0) and ``s2_area_ci95`` 1.96 standard errors of it;
the Crystal Ball's tail and background variables are NaN for Gaussian fits.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from ratag_xr.errors import ConfigError
from ratag_xr.params import (
    Param,
    at_least,
    at_most,
    declare_check,
    declare_data_check,
    increasing,
    nonneg,
    one_of,
)
from ratag_xr.physics.crystal_ball import (
    S2_BG_CUTOFF,
    S2_BG_FRACTION,
    S2_BG_THRESHOLD,
    S2_N_SIGMA,
    fit_s2_two_stage,
)
from ratag_xr.physics.fit import fit_gaussian_hist, robust_range_hist
from ratag_xr.pipeline.partials import reduce_blocks, set_histograms, set_maxima
from ratag_xr.stages import Stage, StageResult, register
from ratag_xr.vocabulary import describe

FIT = ("s2_area_mean", "s2_area_sigma", "s2_area_sigma_err", "s2_area_ci95",
       "s2_area_amplitude",
       "s2_area_chi2_ndf", "s2_area_n_entries", "s2_fit_success", "s2_fit_reason",
       "s2_fit_model", "n_frames", "n_area_nan")
#: Crystal Ball fits only (NaN for the Gaussian): tail, height, fitted range, background.
CRYSTAL_BALL = ("s2_area_beta", "s2_area_beta_err", "s2_area_m", "s2_area_m_err",
                "s2_area_cb_amplitude", "s2_fit_low", "s2_fit_high", "s2_two_stage",
                "s2_bg_fraction", "s2_bg_mean", "s2_bg_sigma", "s2_bg_amplitude",
                "s2_bg_success", "s2_bg_reason")
HIST = ("s2_area_hist", "s2_area_hist_edges")
_AUTO_BINS = 2000  # fine bins used to find a robust automatic range
PER_SET_KEYS = ("bin_cuts", "nbins", "auto_range")
FIT_MODELS = ("gauss", "crystal_ball")

PARAMS = (
    Param("integrate.bin_cuts", (0.0, 4.0), tuple[float, ...], "mV·µs",
          "histogram range of ion S2 areas", checks=(increasing,)),
    Param("integrate.nbins", 100, int, "", "histogram bins", checks=(at_least(1),)),
    Param("integrate.exclude_index", 1, int, "", "leading bins left out of the fit "
          "(zero-area frames)", checks=(at_least(0),)),
    Param("integrate.auto_range", False, bool, "", "histogram range from robust statistics "
          "instead of bin_cuts"),
    Param("integrate.per_set", {}, dict, "", "per-set `bin_cuts`, `nbins`, `auto_range` "
          "(set name -> mapping)"),
    Param("integrate.fit_model", "gauss", str, "", "ion S2 area fit: gauss (§6) or "
          "crystal_ball (§15, right tail; mean = its peak position x0)",
          checks=(one_of(*FIT_MODELS),)),
    Param("integrate.two_stage", False, bool, "", "crystal_ball: when more than "
          "bg_fraction of the entries lie at or below bg_threshold, fit a Gaussian to the "
          "zero-area population first (it replaces exclude_index)"),
    Param("integrate.bg_fraction", S2_BG_FRACTION, float, "", "two-stage: fraction of "
          "entries at or below bg_threshold above which the background is fitted",
          checks=(nonneg, at_most(1))),
    Param("integrate.bg_threshold", S2_BG_THRESHOLD, float, "mV·µs", "two-stage: areas at "
          "or below this count as zero-area frames"),
    Param("integrate.bg_cutoff", S2_BG_CUTOFF, float, "mV·µs", "two-stage: the background "
          "Gaussian is fitted to the bins at or below this"),
    Param("integrate.n_sigma", S2_N_SIGMA, float, "", "two-stage: the Crystal Ball is "
          "fitted above the background mean + n_sigma background sigmas", checks=(nonneg,)),
    Param("integrate.upper_limit", None, float | None, "mV·µs", "crystal_ball: fit the "
          "bins below this (null: the histogram's upper end)"),
)
_BY_NAME = {p.name: p for p in PARAMS}


def histogram_spec(cfg, set_name: str) -> dict:
    """bin_cuts, nbins and auto_range for one set (``per_set`` values win); ``cfg`` is the
    ``integrate`` section."""
    spec = {k: getattr(cfg, k) for k in PER_SET_KEYS}
    spec.update(cfg.per_set.get(set_name, {}))
    spec["bin_cuts"] = tuple(float(v) for v in spec["bin_cuts"])
    return spec


def _check_per_set(config) -> str | None:
    """``integrate.per_set``: each entry a mapping of known keys with valid values, and
    ``exclude_index`` below every set's number of bins."""
    cfg = config.integrate
    for name, values in cfg.per_set.items():
        if not isinstance(values, dict) or set(values) - set(PER_SET_KEYS):
            return (f"integrate.per_set.{name}: expected a mapping with keys from "
                    f"{list(PER_SET_KEYS)}, got {values!r}")
        for key, value in values.items():
            _BY_NAME[key].validate(value, f"integrate.per_set.{name}")
    for name, spec in [("", {"nbins": cfg.nbins}),
                       *((f" (per_set {n})", v) for n, v in cfg.per_set.items())]:
        nbins = spec.get("nbins", cfg.nbins)
        if cfg.exclude_index >= nbins:
            return (f"integrate.exclude_index = {cfg.exclude_index} must be below "
                    f"integrate.nbins = {nbins}{name}: no bin would be fitted")
    return None


def _check_per_set_names(config, facts) -> str | None:
    unknown = sorted(set(config.integrate.per_set) - set(facts["sets"]))
    if unknown:
        return (f"integrate.per_set names set(s) {unknown} that the run does not have; "
                f"sets: {sorted(facts['sets'])}")
    return None


declare_check("integrate.per_set", _check_per_set)
declare_data_check("integrate.per_set names", _check_per_set_names)


def _ranges(areas: xr.DataArray, valid: xr.DataArray, names, cfg
            ) -> dict[str, tuple[float, float, int]]:
    """Histogram (low, high, nbins) per set; automatic ranges from a fine histogram over
    [0, the set's largest area] (both reduced from per-block partial results)."""
    specs = {name: histogram_spec(cfg, name) for name in names}
    out = {n: (*specs[n]["bin_cuts"], int(specs[n]["nbins"])) for n in names}
    auto = [n for n in names if specs[n]["auto_range"]]
    if not auto:
        return out
    areas, valid = areas.sel(set=auto), valid.sel(set=auto)
    highs = [float(h) if np.isfinite(h) and h > 0 else 1.0
             for h in set_maxima(areas, valid)]
    fine = set_histograms(areas, valid, [(0.0, hi, _AUTO_BINS) for hi in highs])
    for n, hi, counts in zip(auto, highs, fine, strict=True):
        rng = robust_range_hist(counts, np.linspace(0.0, hi, _AUTO_BINS + 1))
        if rng is not None and rng[1] > rng[0]:
            out[n] = (float(rng[0]), float(rng[1]), int(specs[n]["nbins"]))
    return out


_NO_CRYSTAL_BALL = {"s2_area_beta": math.nan, "s2_area_beta_err": math.nan,
                    "s2_area_m": math.nan, "s2_area_m_err": math.nan,
                    "s2_area_cb_amplitude": math.nan, "s2_fit_low": math.nan,
                    "s2_fit_high": math.nan, "s2_two_stage": False,
                    "s2_bg_fraction": math.nan, "s2_bg_mean": math.nan,
                    "s2_bg_sigma": math.nan, "s2_bg_amplitude": math.nan,
                    "s2_bg_success": False, "s2_bg_reason": ""}


def _gauss(counts, edges, cfg) -> dict:
    fit = fit_gaussian_hist(counts, edges, exclude_index=cfg.exclude_index)
    return {"s2_area_mean": fit.mean, "s2_area_sigma": fit.sigma,
            "s2_area_sigma_err": fit.sigma_err, "s2_area_ci95": fit.ci95,
            "s2_area_amplitude": fit.amplitude, "s2_area_chi2_ndf": fit.chi2_ndf,
            "s2_area_n_entries": int(fit.n_entries), "s2_fit_success": bool(fit.success),
            "s2_fit_reason": fit.reason or "", **_NO_CRYSTAL_BALL}


def _crystal_ball(counts, edges, cfg) -> dict:
    """§15: the right-tailed Crystal Ball, two-stage if asked; a setting the histogram
    cannot serve (a cutoff below its bins, an upper limit below them) is a failed fit."""
    out = dict(_NO_CRYSTAL_BALL, s2_area_mean=math.nan, s2_area_sigma=math.nan,
               s2_area_sigma_err=math.nan, s2_area_ci95=math.nan, s2_area_amplitude=math.nan,
               s2_area_chi2_ndf=math.nan, s2_area_n_entries=0, s2_fit_success=False)
    try:
        r = fit_s2_two_stage(counts, edges, bg_fraction=cfg.bg_fraction,
                             bg_threshold=cfg.bg_threshold, bg_cutoff=cfg.bg_cutoff,
                             n_sigma=cfg.n_sigma, upper_limit=cfg.upper_limit,
                             two_stage=cfg.two_stage, exclude_index=cfg.exclude_index)
    except ConfigError as exc:  # upper_limit or bg_cutoff below this set's histogram
        return out | {"s2_fit_reason": f"{exc} (histogram from {edges[0]:g} mV·µs)"}
    f, bg = r.signal, r.background
    out.update(s2_area_mean=f.x0, s2_area_sigma=f.sigma, s2_area_sigma_err=f.sigma_err,
               s2_area_ci95=f.ci95,
               s2_area_amplitude=f.n_signal, s2_area_chi2_ndf=f.chi2_ndf,
               s2_area_n_entries=int(f.n_entries), s2_fit_success=bool(r.success),
               s2_fit_reason=r.reason or "", s2_area_beta=f.beta, s2_area_beta_err=f.beta_err,
               s2_area_m=f.m, s2_area_m_err=f.m_err, s2_area_cb_amplitude=f.amplitude,
               s2_fit_low=f.fit_range[0], s2_fit_high=f.fit_range[1],
               s2_two_stage=bool(r.two_stage), s2_bg_fraction=r.bg_fraction_observed)
    if bg is not None:
        out.update(s2_bg_mean=bg.mean, s2_bg_sigma=bg.sigma, s2_bg_amplitude=bg.amplitude,
                   s2_bg_success=bool(bg.success), s2_bg_reason=bg.reason or "")
    return out


def fit_areas(counts, edges, cfg) -> dict:
    """The fit of one set's histogram (``cfg``: the ``integrate`` section), as the values
    of :data:`FIT` (but the frame counts) and :data:`CRYSTAL_BALL`."""
    fit = _crystal_ball if cfg.fit_model == "crystal_ball" else _gauss
    return fit(counts, edges, cfg) | {"s2_fit_model": cfg.fit_model}


def fit_table(areas: xr.DataArray, valid: xr.DataArray, names, cfg) -> xr.Dataset:
    """§6 / §15 per set of ``names``: histogram of the valid frames' areas and binned
    likelihood fit.  ``areas`` and ``valid`` (set, frame) may be lazy (a stored frames
    part): the histograms and counts are reduced from per-block partial results."""
    areas, valid = areas.sel(set=list(names)), valid.sel(set=list(names)).astype(bool)
    ranges = _ranges(areas, valid, names, cfg)
    hist, n_frames, n_nan = reduce_blocks(
        set_histograms(areas, valid, [ranges[n] for n in names], lazy=True),
        valid.sum("frame").data, (valid & np.isnan(areas)).sum("frame").data)
    edges = np.full((len(names), hist.shape[1] + 1), np.nan)
    rows: dict[str, list] = {k: [] for k in (*FIT, *CRYSTAL_BALL)}
    for i, n in enumerate(names):
        lo, hi, nb = ranges[n]
        edges[i, : nb + 1] = np.linspace(lo, hi, nb + 1)
        for key, value in fit_areas(hist[i, :nb], edges[i, : nb + 1], cfg).items():
            rows[key].append(value)
    rows["n_frames"] = np.asarray(n_frames, dtype=np.int64)
    rows["n_area_nan"] = np.asarray(n_nan, dtype=np.int64)
    ds = xr.Dataset({k: ("set", np.asarray(v)) for k, v in rows.items()},
                    coords={"set": list(names)})
    ds["s2_area_hist"] = (("set", "bin"), hist)
    ds["s2_area_hist_edges"] = (("set", "bin_edge"), edges)
    return describe(ds, [*FIT, *CRYSTAL_BALL, *HIST])


def compute(ctx) -> StageResult:
    frames = ctx.open("frames", "frames")
    sets = fit_table(frames.s2_area, frames.valid, [str(n) for n in frames.set.values],
                     ctx.config.integrate)
    sets.attrs.update(run_id=ctx.run_id)
    return StageResult(sets=sets)


STAGE = register(Stage(
    name="integrate",
    version=6,
    reads=("stage:frames", "config:run.run_id"),
    params=PARAMS,
    provides={"sets": (*FIT, *CRYSTAL_BALL, *HIST)},
    compute=compute,
    doc="per-set histograms of the ion S2 areas and their binned Poisson "
        "maximum-likelihood Gaussian fits (§6), or Crystal Ball fits, optionally two-stage "
        "(§15)",
))
