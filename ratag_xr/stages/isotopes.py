"""Stage ``isotopes`` (ALGORITHMS.md §14): every frame's calibrated alpha energy and isotope,
and the ion S2 results per set and isotope.

Per frame: ``alpha_energy_mev`` = E(``alpha_energy_sca``) with the ``alpha`` stage's
calibration, and ``isotope``: the range (calibrated MeV, the scale of the energies) that
holds it, or ``untagged`` (outside every range, no alpha twin, NaN energy).  Untagged
frames are kept and counted.  With ``alpha.isotope_ranges`` (a single-isotope run's
energy window, in the SCA scale of §12) the frames are tagged by those ranges applied to
``alpha_energy_sca`` itself: the same scale, so no calibration is needed, and the
calibration, where the run has one, changes nothing but ``alpha_energy_mev``.  Both are
labels of the frames: ``load_results(out).frames`` has them as coordinates, so
``frames.where(frames.isotope == "Ra224")`` selects.

Per set and isotope: the ion S2 area fit of §6 (the same histogram settings as the
``integrate`` stage, on that isotope's frames) and, with the run's gain (its X-ray fit's or
the one ``calibrate.g_s2`` names), N_e and the
recombination against the recoil's own expected electrons, N_exp = E_R / W with
E_R = Q·4/A (:func:`~ratag_xr.physics.alpha.recoil_energy_kev`); uncertainties as §8 (ion
fit only, and ion plus X-ray fit).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ratag_xr.params import Param, declare_check
from ratag_xr.physics.alpha import (
    Q_VALUES_KEV,
    SCA_UNITS,
    UNTAGGED,
    isotope_recombination,
    recoil_energy_kev,
    sca_ranges,
    tag,
)
from ratag_xr.physics.calibration import XrayCalibration
from ratag_xr.stages import Stage, StageResult, register
from ratag_xr.stages.alpha import calibrated, stored_ranges
from ratag_xr.stages.calibrate import OWN
from ratag_xr.stages.integrate import PARAMS as INTEGRATE_PARAMS
from ratag_xr.stages.integrate import fit_table
from ratag_xr.vocabulary import ISOTOPE_FIT, describe

FRAMES = ("alpha_energy_mev", "isotope")
#: integrate's per-set fit variable -> the per-(set, isotope) variable
ISO_FIT = {name: f"iso_{name}" for name in ISOTOPE_FIT}
RECOMBINATION = ("N_e_meas", "N_e_meas_err", "N_e_meas_err_ion", "r", "r_err", "r_err_ion")
ISO_RECOMBINATION = {name: f"iso_{name}" for name in RECOMBINATION}
SETS = (*ISO_FIT.values(), *ISO_RECOMBINATION.values(), "n_untagged", "n_no_alpha",
        "alpha_energy_hist", "alpha_sca_hist")
RUN = ("E_recoil", "iso_N_exp", "alpha_energy_hist_edges", "iso_sca_lo", "iso_sca_hi",
       "isotope_tagging")


def _ranges_problem(value) -> str | None:
    """{isotope: [lo, hi]} in SCA MeV, lo < hi."""
    if value is None:
        return None
    if not value:
        return "must give at least one isotope's range"
    for name, rng in value.items():
        if not isinstance(name, str) or name == UNTAGGED:
            return f"{name!r} is not an isotope name"
        if not (isinstance(rng, list | tuple) and len(rng) == 2 and all(
                isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
                for v in rng) and rng[0] < rng[1]):
            return f"{name}: {rng!r} must be [low, high] (SCA MeV) with low < high"
    return None


_ranges_problem.__doc__ = "{isotope: [lo, hi]}, lo < hi"

PARAMS = (
    Param("alpha.isotope_ranges", None, dict | None, SCA_UNITS, "tag frames by these "
          "ranges of alpha_energy_sca (a single-isotope run's window; the SCA scale of §12, "
          "no calibration needed) instead of the calibrated §13 ranges; null: the §13 "
          "ranges", checks=(_ranges_problem,)),
)


def _check_target(config) -> str | None:
    ranges, target = config.get("alpha.isotope_ranges"), config.get("alpha.target_isotope")
    if ranges is not None and target is not None and target not in ranges:
        return (f"alpha.target_isotope = {target!r} has no range in alpha.isotope_ranges "
                f"({', '.join(ranges)})")
    return None


declare_check("alpha.target_isotope range", _check_target)


def label_frames(frames: xr.Dataset, alpha: xr.Dataset, ranges=None) -> xr.Dataset:
    """``alpha_energy_mev`` and ``isotope`` of every frame (padding frames: NaN, untagged);
    ``ranges`` ({isotope: (lo, hi)} in SCA MeV) tag by ``alpha_energy_sca`` instead of
    the calibrated §13 ranges."""
    sca = frames.alpha_energy_sca.where(frames.valid)
    mev = xr.DataArray(calibrated(alpha, sca.values), dims=sca.dims, coords=sca.coords)
    if ranges is None:
        labels = tag(mev.values, stored_ranges(alpha))
    else:
        labels = tag(sca.values, sca_ranges(ranges), units=SCA_UNITS)
    out = xr.Dataset({"alpha_energy_mev": mev, "isotope": (sca.dims, labels)})
    return out.drop_vars([c for c in out.coords if c not in out.dims])


def xray_gain(cal_run: xr.Dataset) -> XrayCalibration:
    """The gain the ``calibrate`` stage used, as an X-ray calibration: its own X-ray fit,
    or (``calibrate.g_s2``) another run's gain, whose X-ray area stands in as
    g_S2 × N_e_exp."""
    own = "g_S2_source" not in cal_run or str(cal_run.g_S2_source.values.item()) == OWN
    if own:
        return XrayCalibration(
            A_x_mean=float(cal_run.A_x_mean), sigma=float(cal_run.A_x_sigma),
            ci95=float(cal_run.A_x_ci95), N_e_exp=float(cal_run.N_e_exp),
            g_S2=float(cal_run.g_S2), g_S2_err=float(cal_run.g_S2_err),
            success=bool(cal_run.xray_fit_success), reason=str(cal_run.xray_fit_reason.values))
    g, err, n = float(cal_run.g_S2), float(cal_run.g_S2_err), float(cal_run.N_e_exp)
    return XrayCalibration(A_x_mean=g * n, sigma=float("nan"), ci95=err * n, N_e_exp=n,
                           g_S2=g, g_S2_err=err, success=True, reason="")


def per_isotope(frames: xr.Dataset, labels: xr.Dataset, names: list[str], xray, cfg,
                w_ev: float) -> tuple[xr.Dataset, xr.Dataset]:
    """(sets, run) parts: the §6 fit and the recombination per set and isotope."""
    sets = [str(s) for s in frames.set.values]
    parts = []
    for name in names:
        mine = labels.isotope == name
        fit = fit_table(frames.s2_area.where(mine), frames.valid & mine, sets, cfg)
        fit = fit[list(ISOTOPE_FIT)].rename(ISO_FIT)
        if name in Q_VALUES_KEV:
            rec = isotope_recombination(fit.iso_s2_area_mean.values,
                                        fit.iso_s2_area_ci95.values, xray, name, w_ev=w_ev)
            for var, iso_var in ISO_RECOMBINATION.items():
                fit[iso_var] = ("set", np.asarray(getattr(rec, var), dtype=float))
        else:  # a configured peak of no known decay: no recoil energy
            for iso_var in ISO_RECOMBINATION.values():
                fit[iso_var] = ("set", np.full(len(sets), np.nan))
        parts.append(fit)
    iso = xr.concat(parts, dim=xr.DataArray(np.array(names, dtype=object), dims="isotope",
                                            name="isotope")) if parts else xr.Dataset()
    e_r = np.array([recoil_energy_kev(n) if n in Q_VALUES_KEV else np.nan for n in names])
    run = xr.Dataset({"E_recoil": ("isotope", e_r), "iso_N_exp": ("isotope", e_r * 1e3 / w_ev)},
                     coords={"isotope": np.array(names, dtype=object)})
    return iso.transpose("set", "isotope"), run


def energy_histograms(labels: xr.Dataset, frames: xr.Dataset, alpha: xr.Dataset):
    """Per set, the histogram of the calibrated energies over the calibrated image of the
    spectrum's range (same number of bins; zeros and NaN edges without a calibration)."""
    sca_edges = alpha.alpha_spectrum_edges.values
    lo, hi = calibrated(alpha, sca_edges[[0, -1]])
    nbins = sca_edges.size - 1
    counts = np.zeros((frames.sizes["set"], nbins), dtype=np.int64)
    edges = np.full(nbins + 1, np.nan)
    if np.isfinite(lo) and np.isfinite(hi) and lo < hi:
        edges = np.linspace(lo, hi, nbins + 1)
        mev = labels.alpha_energy_mev.where(frames.valid)
        for i, name in enumerate(frames.set.values):
            counts[i] = np.histogram(mev.sel(set=name).values, bins=edges)[0]
    return counts, edges


def compute(ctx) -> StageResult:
    frames = ctx.load("frames", "frames")
    alpha = ctx.load("alpha", "run")
    ranges = ctx.config.alpha.isotope_ranges
    labels = label_frames(frames, alpha, ranges)
    names = [str(n) for n in alpha.isotope.values] if ranges is None else list(ranges)
    sets, run = per_isotope(frames, labels, names, xray_gain(ctx.load("calibrate", "run")),
                            ctx.config.integrate, ctx.config.run.w_value)
    for i, end in enumerate(("iso_sca_lo", "iso_sca_hi")):
        run[end] = ("isotope", np.array([np.nan if ranges is None else float(ranges[n][i])
                                         for n in names]))
    run["isotope_tagging"] = "calibrated" if ranges is None else "sca"
    valid = frames.valid
    sets["n_untagged"] = ((labels.isotope == UNTAGGED) & valid).sum("frame").astype(np.int64)
    sets["n_no_alpha"] = (np.isnan(frames.alpha_energy_sca) & valid).sum("frame").astype(
        np.int64)
    counts, edges = energy_histograms(labels, frames, alpha)
    sets["alpha_energy_hist"] = (("set", "alpha_mev_bin"), counts)
    sca = frames.alpha_energy_sca.where(frames.valid)
    sets["alpha_sca_hist"] = (("set", "alpha_bin"), np.array(
        [np.histogram(sca.sel(set=n).values, bins=alpha.alpha_spectrum_edges.values)[0]
         for n in frames.set.values], dtype=np.int64).reshape(frames.sizes["set"], -1))
    run["alpha_energy_hist_edges"] = ("alpha_mev_bin_edge", edges)
    sets = sets.drop_vars([c for c in sets.coords if c not in sets.dims])
    for ds in (sets, run, labels):
        ds.attrs.update(run_id=ctx.run_id)
    return StageResult(sets=describe(sets, list(SETS)), run=describe(run, list(RUN)),
                       frames=describe(labels, list(FRAMES)))


STAGE = register(Stage(
    name="isotopes",
    version=4,
    reads=("stage:frames", "stage:alpha", "stage:calibrate", "config:run.w_value",
           "config:run.run_id") + tuple(  # the per-isotope fits are §6/§15 fits
               f"config:{p.key}" for p in INTEGRATE_PARAMS),
    params=PARAMS,
    provides={"frames": FRAMES, "sets": SETS, "run": RUN},
    compute=compute,
    doc="every frame's calibrated alpha energy and isotope (or untagged, kept and counted); "
        "per set and isotope the ion S2 fit, N_e and recombination against the recoil "
        "energy Q·4/A (§14)",
))
