"""Stage ``integrate`` (ALGORITHMS.md §5–§6): ion S2 areas and their per-set fits.

Areas come from the second pass over every frame (the pass-2 features, one task per
waveform chunk) in the per-set window of the preparation; the per-frame areas (one number
per frame) are gathered, histogrammed and fitted per set.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ratag_xr.params import Param, at_least, declare_check, declare_data_check, increasing
from ratag_xr.physics.fit import fit_gaussian_hist, robust_range_hist
from ratag_xr.pipeline.frames import compute_pass
from ratag_xr.stages import Stage, StageResult, register
from ratag_xr.vocabulary import describe

WINDOWS = ("s2_window_start", "s2_window_end", "s2_window_estimated")
FIT = ("s2_area_mean", "s2_area_sigma", "s2_area_ci95", "s2_area_amplitude",
       "s2_area_chi2_ndf", "s2_area_n_entries", "s2_fit_success", "s2_fit_reason",
       "n_frames", "n_area_nan")
HIST = ("s2_area_hist", "s2_area_hist_edges")
_AUTO_BINS = 2000  # fine bins used to find a robust automatic range
PER_SET_KEYS = ("bin_cuts", "nbins", "auto_range")

PARAMS = (
    Param("integrate.use_estimated_s2_windows", True, bool, "", "integrate in "
          "[t_s2_start_mean, t_s2_end_mean] (false: the fallback window)"),
    Param("integrate.ts2_tol", -2.7, float, "µs",
          "fallback window start = t_s1 + time_drift + ts2_tol"),
    Param("integrate.width_s2", 1.1, float, "µs", "fallback window width",
          checks=(at_least(0),)),
    Param("integrate.bin_cuts", (0.0, 4.0), tuple[float, ...], "mV·µs",
          "histogram range of ion S2 areas", checks=(increasing,)),
    Param("integrate.nbins", 100, int, "", "histogram bins", checks=(at_least(1),)),
    Param("integrate.exclude_index", 1, int, "", "leading bins left out of the fit "
          "(zero-area frames)", checks=(at_least(0),)),
    Param("integrate.auto_range", False, bool, "", "histogram range from robust statistics "
          "instead of bin_cuts"),
    Param("integrate.per_set", {}, dict, "", "per-set `bin_cuts`, `nbins`, `auto_range` "
          "(set name -> mapping)"),
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


def integration_windows(prep: xr.Dataset, cfg) -> xr.Dataset:
    """Per-set window [start, end] in µs: the S2 statistics, else the §5 fallback."""
    fallback_start = prep.t_s1 + prep.time_drift + cfg.ts2_tol
    fallback_end = fallback_start + cfg.width_s2
    if cfg.use_estimated_s2_windows:
        estimated = np.isfinite(prep.t_s2_start_mean) & np.isfinite(prep.t_s2_end_mean)
    else:
        estimated = xr.zeros_like(prep.t_s1, dtype=bool)
    start = xr.where(estimated, prep.t_s2_start_mean, fallback_start)
    end = xr.where(estimated, prep.t_s2_end_mean, fallback_end)
    ds = xr.Dataset({"s2_window_start": start, "s2_window_end": end,
                     "s2_window_estimated": estimated})
    ds = ds.drop_vars([c for c in ds.coords if c != "set"])
    return describe(ds, list(WINDOWS))


def _ranges(areas: xr.DataArray, names, cfg) -> dict[str, tuple[float, float, int]]:
    """Histogram (low, high, nbins) per set; automatic ranges from a fine histogram."""
    specs = {name: histogram_spec(cfg, name) for name in names}
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


def fit_table(areas: xr.DataArray, valid: xr.DataArray, names, cfg) -> xr.Dataset:
    """§6 per set: histogram and binned likelihood Gaussian fit of the areas."""
    ranges = _ranges(areas, names, cfg)
    max_bins = max(r[2] for r in ranges.values())
    hist = np.zeros((len(names), max_bins), dtype=np.int64)
    edges = np.full((len(names), max_bins + 1), np.nan)
    rows: dict[str, list] = {k: [] for k in FIT}
    for i, n in enumerate(names):
        lo, hi, nb = ranges[n]
        counts, _ = np.histogram(areas.sel(set=n).values, bins=nb, range=(lo, hi))
        hist[i, :nb] = counts
        edges[i, : nb + 1] = np.linspace(lo, hi, nb + 1)
        fit = fit_gaussian_hist(counts, edges[i, : nb + 1], exclude_index=cfg.exclude_index)
        for key, value in (("s2_area_mean", fit.mean), ("s2_area_sigma", fit.sigma),
                           ("s2_area_ci95", fit.ci95), ("s2_area_amplitude", fit.amplitude),
                           ("s2_area_chi2_ndf", fit.chi2_ndf),
                           ("s2_area_n_entries", int(fit.n_entries)),
                           ("s2_fit_success", bool(fit.success)),
                           ("s2_fit_reason", fit.reason or "")):
            rows[key].append(value)
        rows["n_frames"].append(int(valid.sel(set=n).sum()))
        rows["n_area_nan"].append(int((valid.sel(set=n) & np.isnan(areas.sel(set=n))).sum()))
    ds = xr.Dataset({k: ("set", np.asarray(v)) for k, v in rows.items()},
                    coords={"set": list(names)})
    ds["s2_area_hist"] = (("set", "bin"), hist)
    ds["s2_area_hist_edges"] = (("set", "bin_edge"), edges)
    return describe(ds, [*FIT, *HIST])


def compute(ctx) -> StageResult:
    cfg = ctx.config.integrate
    windows = integration_windows(ctx.load("prepare", "sets"), cfg)
    frames = compute_pass(ctx.nodes(), "pass2", ctx.config.full, ctx.client, per_set=windows,
                          label="integrate: pass 2 over the frames", progress=ctx.progress)
    sets = windows.merge(fit_table(frames.s2_area, frames.valid, list(windows.set.values),
                                   cfg))
    sets.attrs.update(run_id=ctx.run_id)
    return StageResult(sets=sets, frames=frames)


STAGE = register(Stage(
    name="integrate",
    version=3,
    reads=("stage:prepare", "waveforms", "features:pass2", "config:run.run_id"),
    params=PARAMS,
    provides={"sets": (*WINDOWS, *FIT, *HIST), "frames": ("features:pass2",)},
    compute=compute,
    doc="second pass: ion S2 area per frame in the set's window; per-set histograms and "
        "binned Poisson maximum-likelihood Gaussian fits (§5–§6)",
))
