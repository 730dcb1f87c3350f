"""Stage ``alpha`` (ALGORITHMS.md §13): the run's alpha spectrum, its peak fits, the
SCA → MeV calibration and the isotope ranges.

The spectrum holds ``alpha_energy_sca`` of every frame of the run: the frames of the PMT
sets (computed in the ``frames`` stage's pass, alpha twin and PMT frame in one task) and
those of the alpha monitor sets (``Ch4_noSCA``, ``Ch4_SCA_<x>``, §11), computed here by
the same feature in one task per chunk of their nodes.  Each configured peak gets a
binned Poisson likelihood fit of a left-tailed Crystal Ball in its window
(:func:`~ratag_xr.physics.alpha.fit_peaks`); a failed peak is recorded with its reason and
left out of the calibration, never an exception.  The results are per run, labeled by
``isotope`` (the peaks' names), plus the spectrum itself (``alpha_bin``) and the monitors'
share of it (``monitor``).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ratag_xr.errors import ConfigError
from ratag_xr.params import Param, at_least, increasing, one_of, positive
from ratag_xr.physics.alpha import (
    DEFAULT_PEAKS,
    SPECTRUM_NBINS,
    SPECTRUM_RANGE,
    UNTAGGED,
    IsotopeRange,
    IsotopeRanges,
    alpha_spectrum,
    calibrate,
    fit_peaks,
    isotope_ranges,
    peak_table,
)
from ratag_xr.pipeline.frames import compute_pass, monitor_nodes, monitor_order
from ratag_xr.pipeline.partials import combined_histogram, reduce_blocks
from ratag_xr.stages import Stage, StageResult, register
from ratag_xr.vocabulary import describe

FEATURE = "alpha_energy"
SCA = "SCA MeV"
#: the pair whose ranges are cut where their shapes cross (§13)
OVERLAP = ("Th228", "Ra224")

SPECTRUM = ("alpha_spectrum", "alpha_spectrum_edges", "alpha_monitor_spectrum",
            "alpha_monitor_n_frames", "alpha_n_frames")
#: per peak: CrystalBallFit field -> variable
PEAK_FIT = {"x0": "alpha_peak_x0", "x0_err": "alpha_peak_x0_err", "sigma": "alpha_peak_sigma",
            "beta": "alpha_peak_beta", "m": "alpha_peak_m",
            "amplitude": "alpha_peak_amplitude", "continuum_a": "alpha_peak_continuum_a",
            "continuum_lambda": "alpha_peak_continuum_lambda",
            "continuum_origin": "alpha_peak_continuum_origin",
            "n_entries": "alpha_peak_n_entries", "chi2_ndf": "alpha_peak_chi2_ndf",
            "success": "alpha_peak_success", "reason": "alpha_peak_reason"}
PEAKS = ("alpha_peak_start", "alpha_peak_window_lo", "alpha_peak_window_hi",
         "alpha_peak_ref_energy", *PEAK_FIT.values(), "alpha_peak_energy",
         "alpha_peak_residual_linear", "alpha_peak_residual_quadratic")
CALIBRATION = ("alpha_cal_coef", "alpha_cal_order_used", "alpha_cal_success",
               "alpha_cal_reason")
RANGES = ("alpha_range_lo", "alpha_range_hi", "alpha_range_centre", "alpha_range_sigma",
          "alpha_overlap_boundary")
RUN = (*SPECTRUM, *PEAKS, *CALIBRATION, *RANGES)


def _peaks_problem(value) -> str | None:
    """A peak table: mappings {name, x0, window: [lo, hi], energy_mev[, continuum]}."""
    if value is None:
        return None
    if not value:
        return "must list at least one peak"
    kinds = {"name": str, "x0": (int, float), "energy_mev": (int, float), "continuum": bool}
    for i, row in enumerate(value):
        unknown = set(row) - {*kinds, "window"}
        missing = {"name", "x0", "window", "energy_mev"} - set(row)
        if unknown or missing:
            return (f"row {i}: needs name, x0, window, energy_mev (and optionally continuum)"
                    + (f"; unknown {sorted(unknown)}" if unknown else "")
                    + (f"; missing {sorted(missing)}" if missing else ""))
        for key, kind in kinds.items():
            if key in row and (not isinstance(row[key], kind) or (
                    kind is not bool and isinstance(row[key], bool))):
                what = kind.__name__ if kind in (str, bool) else "number"
                return f"row {i}: {key} = {row[key]!r} is not a {what}"
        if row["name"] == UNTAGGED:
            return f"row {i}: {UNTAGGED!r} is the label of frames in no range, not a peak name"
        window = row["window"]
        if not (isinstance(window, list | tuple) and len(window) == 2 and all(
                isinstance(w, int | float) and not isinstance(w, bool) for w in window)):
            return f"row {i}: window = {window!r} must be [low, high] (SCA MeV)"
    try:
        peak_table(value)
    except ConfigError as exc:
        return f"is not a valid peak table: {exc}"
    return None


_peaks_problem.__doc__ = "rows {name, x0, window: [lo, hi], energy_mev[, continuum]}"
_TABLE = " · ".join(f"{p.name} {p.x0:g} ({p.window[0]:g}, {p.window[1]:g}) {p.energy_mev:g}"
                    for p in DEFAULT_PEAKS)

PARAMS = (
    Param("alpha.nbins", SPECTRUM_NBINS, int, "", "bins of the run's alpha spectrum",
          checks=(at_least(1),)),
    Param("alpha.energy_range", SPECTRUM_RANGE, tuple[float, ...], SCA,
          "range of the run's alpha spectrum", checks=(increasing,)),
    Param("alpha.peaks", None, tuple[dict, ...] | None, "", "alpha peaks fitted: name, start "
          "x0 and fit window (SCA MeV), reference energy (MeV), `continuum: true` for a "
          f"β-continuum under it (null: §13's {_TABLE}, Po212 with its continuum)",
          checks=(_peaks_problem,)),
    Param("alpha.order", None, int | None, "", "calibration order (null: 2 when >= 4 peaks "
          "were fitted, else 1)", checks=(one_of(1, 2),)),
    Param("alpha.n_sigma", 2.0, float, "", "isotope range: E(x0) ± n_sigma × abs(E'(x0)) × "
          "sigma",
          checks=(positive,)),
)


def configured_peaks(cfg):
    """The peak table of the ``alpha`` section (the §13 table when not given)."""
    return DEFAULT_PEAKS if cfg.peaks is None else peak_table(cfg.peaks)


# ---------------------------------------------------------------- reading it back


def calibration_coefficients(run: xr.Dataset) -> np.ndarray | None:
    """(a, b, c) of E(x) = a + b·x + c·x² (MeV, x in SCA MeV) of the order used, or None
    when the calibration failed."""
    if not bool(run.alpha_cal_success):
        return None
    order = int(run.alpha_cal_order_used)
    return np.asarray(run.alpha_cal_coef.sel(alpha_order=order).values, dtype=float)


def calibrated(run: xr.Dataset, x):
    """Calibrated energy (MeV) of SCA values ``x`` (all NaN without a calibration)."""
    x = np.asarray(x, dtype=float)
    coef = calibration_coefficients(run)
    if coef is None:
        return np.full(x.shape, np.nan)
    return np.polynomial.polynomial.polyval(x, coef)


def stored_ranges(run: xr.Dataset) -> IsotopeRanges:
    """The isotope ranges (MeV) as :func:`~ratag_xr.physics.alpha.isotope_ranges` made them."""
    ranges = {}
    for name in run.isotope.values:
        r = run.sel(isotope=name)
        lo, hi = float(r.alpha_range_lo), float(r.alpha_range_hi)
        if np.isfinite(lo) and np.isfinite(hi):
            ranges[str(name)] = IsotopeRange(
                str(name), float(r.alpha_range_centre), float(r.alpha_range_sigma), lo, hi,
                float(r.alpha_peak_beta), float(r.alpha_peak_m))
    boundary = float(run.alpha_overlap_boundary)
    return IsotopeRanges(ranges, {"/".join(OVERLAP): boundary},
                         float(run.alpha_overlap_boundary.attrs.get("n_sigma", np.nan)))


# ---------------------------------------------------------------- compute


def monitor_energies(ctx) -> xr.Dataset | None:
    """``alpha_energy_sca`` of every frame of the monitor sets, or None without any."""
    names = monitor_order(ctx.run.store, ctx.config.run)
    nodes = monitor_nodes(ctx.run.store, ctx.run.nfiles, names) if names else {}
    if not nodes:
        return None
    return compute_pass(nodes, [FEATURE], ctx.config.full, ctx.client,
                        label="alpha: the monitor sets' frames", progress=ctx.progress)


def _energies(ds: xr.Dataset) -> np.ndarray:
    """The finite alpha energies of the valid frames of ``ds``."""
    e = ds.alpha_energy_sca.where(ds.valid).values.ravel()
    return e[np.isfinite(e)]


def spectrum_part(frames: xr.Dataset, monitors: xr.Dataset | None, cfg) -> xr.Dataset:
    """The run's spectrum (PMT sets' frames and monitor frames) and the monitors' share;
    ``frames`` may be lazy (the PMT sets' spectrum: the sum of per-block histograms)."""
    nbins, rng = cfg.nbins, tuple(cfg.energy_range)
    energy, valid = frames.alpha_energy_sca, frames.valid
    pmt, n_pmt = reduce_blocks(combined_histogram(energy, valid, (*rng, nbins), lazy=True),
                               (valid & np.isfinite(energy)).sum().data)  # one pass
    names = [] if monitors is None else [str(n) for n in monitors.set.values]
    per_monitor = [_energies(monitors.sel(set=[n])) for n in names]
    mon = np.array([alpha_spectrum(e, nbins, rng)[0] for e in per_monitor],
                   dtype=np.int64).reshape(len(names), nbins)
    edges = alpha_spectrum(np.empty(0), nbins, rng)[1]
    return xr.Dataset({
        "alpha_spectrum": ("alpha_bin", pmt + mon.sum(axis=0)),
        "alpha_spectrum_edges": ("alpha_bin_edge", np.asarray(edges, dtype=float)),
        "alpha_monitor_spectrum": (("monitor", "alpha_bin"), mon),
        "alpha_monitor_n_frames": ("monitor", np.array([e.size for e in per_monitor],
                                                       dtype=np.int64)),
        "alpha_n_frames": int(n_pmt)},
        coords={"monitor": np.array(names, dtype=object)})


def calibration_part(counts, edges, peaks, cfg) -> xr.Dataset:
    """Peak fits, calibration and ranges (§13), labeled by ``isotope``."""
    fits = fit_peaks(counts, edges, peaks)
    cal = calibrate(fits, cfg.order)
    ranges = isotope_ranges(fits, cal, cfg.n_sigma, overlap_pairs=(OVERLAP,))
    names = [p.name for p in peaks]
    per = {v: [] for v in PEAKS + RANGES[:-1]}
    resid = {"linear": dict(zip(cal.names, cal.residuals_linear, strict=True)),
             "quadratic": dict(zip(cal.names, cal.residuals_quadratic, strict=True))}
    nan = float("nan")
    for p in peaks:
        fit = fits[p.name].fit
        per["alpha_peak_start"].append(p.x0)
        per["alpha_peak_window_lo"].append(p.window[0])
        per["alpha_peak_window_hi"].append(p.window[1])
        per["alpha_peak_ref_energy"].append(p.energy_mev)
        for field, var in PEAK_FIT.items():
            per[var].append(getattr(fit, field))
        used = p.name in cal.names
        per["alpha_peak_energy"].append(float(cal.energy(fit.x0)) if used and cal.success
                                        else nan)
        per["alpha_peak_residual_linear"].append(resid["linear"].get(p.name, nan))
        per["alpha_peak_residual_quadratic"].append(resid["quadratic"].get(p.name, nan))
        r = ranges.ranges.get(p.name)
        for var, value in (("alpha_range_lo", "lo"), ("alpha_range_hi", "hi"),
                           ("alpha_range_centre", "centre_mev"),
                           ("alpha_range_sigma", "sigma_mev")):
            per[var].append(nan if r is None else getattr(r, value))
    ds = xr.Dataset({v: ("isotope", np.asarray(values)) for v, values in per.items()},
                    coords={"isotope": np.array(names, dtype=object)})
    ds["alpha_peak_success"] = ds.alpha_peak_success.astype(bool)
    ds["alpha_peak_reason"] = ds.alpha_peak_reason.astype(object)
    coef = np.full((2, 3), np.nan)
    coef[0, :2], coef[1] = cal.linear, cal.quadratic
    if np.isfinite(coef[0, :2]).all():
        coef[0, 2] = 0.0  # order 1 has no x² term: E = Σ c_k x^k holds for both rows
    ds["alpha_cal_coef"] = (("alpha_order", "power"), coef)
    ds = ds.assign_coords(alpha_order=[1, 2], power=[0, 1, 2])
    ds["alpha_cal_order_used"] = int(cal.order_used)
    ds["alpha_cal_success"] = bool(cal.success)
    ds["alpha_cal_reason"] = cal.reason or ""
    ds["alpha_overlap_boundary"] = float(ranges.overlap_boundary_mev["/".join(OVERLAP)])
    return ds


def compute(ctx) -> StageResult:
    cfg = ctx.config.alpha
    frames = ctx.open("frames", "frames")
    spectrum = spectrum_part(frames, monitor_energies(ctx), cfg)
    run = xr.merge([spectrum, calibration_part(spectrum.alpha_spectrum.values,
                                               spectrum.alpha_spectrum_edges.values,
                                               configured_peaks(cfg), cfg)])
    run = describe(run, list(RUN))
    run.alpha_overlap_boundary.attrs.update(pair="/".join(OVERLAP), n_sigma=cfg.n_sigma)
    run.attrs.update(run_id=ctx.run_id)
    return StageResult(run=run)


STAGE = register(Stage(
    name="alpha",
    version=1,
    reads=("stage:frames", "monitors", f"feature:{FEATURE}", "config:run.sets",
           "config:run.exclude", "config:run.run_id"),
    params=PARAMS,
    provides={"run": RUN},
    compute=compute,
    doc="the run's alpha spectrum (every frame of the PMT sets and of the alpha monitor "
        "sets), one Crystal Ball fit per peak, the SCA → MeV calibration with residuals, "
        "the isotope ranges and the Th228/Ra224 boundary (§13)",
))
