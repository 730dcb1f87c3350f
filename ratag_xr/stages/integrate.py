"""Stage ``integrate`` (ALGORITHMS.md §6): the per-set histograms and fits of the ion S2
areas that the ``frames`` stage computed for every frame (§5).  It reads no waveform:
changing a histogram or fit setting refits in seconds.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ratag_xr.params import Param, at_least, declare_check, declare_data_check, increasing
from ratag_xr.physics.fit import fit_gaussian_hist, robust_range_hist
from ratag_xr.stages import Stage, StageResult, register
from ratag_xr.vocabulary import describe

FIT = ("s2_area_mean", "s2_area_sigma", "s2_area_ci95", "s2_area_amplitude",
       "s2_area_chi2_ndf", "s2_area_n_entries", "s2_fit_success", "s2_fit_reason",
       "n_frames", "n_area_nan")
HIST = ("s2_area_hist", "s2_area_hist_edges")
_AUTO_BINS = 2000  # fine bins used to find a robust automatic range
PER_SET_KEYS = ("bin_cuts", "nbins", "auto_range")

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
    frames = ctx.load("frames", "frames")
    sets = fit_table(frames.s2_area, frames.valid, [str(n) for n in frames.set.values],
                     ctx.config.integrate)
    sets.attrs.update(run_id=ctx.run_id)
    return StageResult(sets=sets)


STAGE = register(Stage(
    name="integrate",
    version=4,
    reads=("stage:frames", "config:run.run_id"),
    params=PARAMS,
    provides={"sets": (*FIT, *HIST)},
    compute=compute,
    doc="per-set histograms of the ion S2 areas and their binned Poisson "
        "maximum-likelihood Gaussian fits (§6)",
))
