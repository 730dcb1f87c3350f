"""Figures of the alpha channel (ALGORITHMS.md §13–§14): the run's spectrum with the peak
fits, the SCA → MeV calibration, each set's calibrated spectrum with the isotope ranges,
and the ion S2 area against drift field per isotope.  Functions take result datasets and
return figures; no I/O.  A failed peak or fit is drawn as far as it goes and named."""

from __future__ import annotations

import math

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ratag_xr.physics.crystal_ball import crystal_ball
from ratag_xr.plots._common import (
    AREA_UNIT,
    FONT_SIZE,
    TITLE_Y,
    fmt_pm,
    new_figure,
    nothing_to_show,
    omitted_note,
    scalar,
    text,
    wrap,
)

SCA = "SCA MeV"
#: one colour per isotope, in peak order (the Th-228 chain's five lines)
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
          "tab:pink", "tab:olive")


def _isotopes(ds: xr.Dataset) -> list[str]:
    return [str(n) for n in ds["isotope"].values]


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _peak(run: xr.Dataset, name: str) -> xr.Dataset:
    return run.sel(isotope=name)


def _peaks(run: xr.Dataset) -> xr.Dataset:
    """``run`` restricted to the fitted peaks (the alpha stage's isotopes), in the order of
    their start values (the peak table's, whatever order merged results put them in):
    merged results may also hold isotopes with only a configured SCA range
    (alpha.isotope_ranges), which are left out."""
    if "alpha_peak_start" not in run:
        return run.isel(isotope=slice(0, 0))
    start = np.asarray(run.alpha_peak_start.values, dtype=float)
    keep = np.flatnonzero(np.isfinite(start))
    return run.isel(isotope=keep[np.argsort(start[keep], kind="stable")])


def _colors(run: xr.Dataset, names) -> dict[str, str]:
    """One colour per isotope, the same in every figure: the peaks' in peak order, then
    the others (isotopes with only a configured range)."""
    order = _isotopes(_peaks(run))
    order += [n for n in names if n not in order]
    return {n: _color(i) for i, n in enumerate(order)}


def _sca_range(run: xr.Dataset, name: str) -> tuple[float, float] | None:
    """The configured SCA range of ``name`` (alpha.isotope_ranges), or None."""
    if "iso_sca_lo" not in run or name not in _isotopes(run):
        return None
    p = run.sel(isotope=name)
    lo, hi = scalar(p, "iso_sca_lo"), scalar(p, "iso_sca_hi")
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


def _mev_range(run: xr.Dataset, name: str) -> tuple[float, float] | None:
    """The calibrated energy range (MeV) ``name``'s frames were tagged in: the image of its
    configured SCA range under the calibration, or its §13 range; None without one."""
    sca = _sca_range(run, name)
    if sca is not None:
        if "alpha_cal_success" not in run or not bool(run.alpha_cal_success):
            return None
        coef = np.asarray(run.alpha_cal_coef.sel(alpha_order=int(run.alpha_cal_order_used))
                          .values, dtype=float)
        lo, hi = np.polynomial.polynomial.polyval(np.asarray(sca), coef)
        return float(lo), float(hi)
    if name not in _isotopes(run) or "alpha_range_lo" not in run:
        return None
    p = run.sel(isotope=name)
    lo, hi = scalar(p, "alpha_range_lo"), scalar(p, "alpha_range_hi")
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


def _fit_curve(p: xr.Dataset, x: np.ndarray, bin_width: float) -> np.ndarray:
    """The fitted Crystal Ball (plus continuum) of one peak in counts per bin at ``x``."""
    shape = scalar(p, "alpha_peak_amplitude") * crystal_ball(
        x, scalar(p, "alpha_peak_x0"), scalar(p, "alpha_peak_sigma"),
        scalar(p, "alpha_peak_beta"), scalar(p, "alpha_peak_m"), "left")
    a = scalar(p, "alpha_peak_continuum_a")
    if math.isfinite(a):
        shape = shape + a * np.exp(-scalar(p, "alpha_peak_continuum_lambda")
                                   * (x - scalar(p, "alpha_peak_continuum_origin")))
    return bin_width * shape


def plot_alpha_spectrum(run: xr.Dataset, run_id: str) -> Figure:
    """The run's spectrum of ``alpha_energy_sca`` (every frame of the PMT sets and of the
    monitor sets, the monitors' share shaded), each peak's Crystal Ball fit over its fit
    window, the start values and the windows; failed peaks named with their reasons.  The
    configured SCA ranges of a single-isotope run (alpha.isotope_ranges) are shaded."""
    ranges = {name: r for name in _isotopes(run) if (r := _sca_range(run, name))}
    colors = _colors(run, list(ranges))
    run = _peaks(run)
    edges = np.asarray(run.alpha_spectrum_edges.values, dtype=float)
    counts = np.asarray(run.alpha_spectrum.values, dtype=float)
    monitors = np.asarray(run.alpha_monitor_spectrum.values, dtype=float).sum(axis=0) \
        if run.sizes.get("monitor", 0) else np.zeros_like(counts)
    width = float(np.mean(np.diff(edges)))
    fig = new_figure(9.0, 5.5)
    ax = fig.add_subplot()
    ax.stairs(counts, edges, fill=True, color="0.75", label="all frames of the run")
    ax.stairs(counts, edges, color="0.35", linewidth=0.8)
    if monitors.any():
        ax.stairs(monitors, edges, fill=True, color="tab:cyan", alpha=0.5,
                  label="of which alpha monitor sets")
    for name, (lo, hi) in ranges.items():
        ax.axvspan(lo, hi, color=colors[name], alpha=0.12, linewidth=0,
                   label=f"{name} range [{lo:g}, {hi:g}] {SCA} (alpha.isotope_ranges)")
    failed = []
    for i, name in enumerate(_isotopes(run)):
        p = _peak(run, name)
        lo, hi = scalar(p, "alpha_peak_window_lo"), scalar(p, "alpha_peak_window_hi")
        lane = 0.022 * i  # one lane per window: neighbouring windows overlap
        ax.axvspan(lo, hi, ymin=lane, ymax=lane + 0.016, color=_color(i), alpha=0.8)
        if not bool(p.alpha_peak_success):
            failed.append(f"{name} ({text(p, 'alpha_peak_reason') or 'no result'})")
            continue
        x = np.linspace(lo, hi, 300)
        chi2 = scalar(p, "alpha_peak_chi2_ndf")
        x0 = fmt_pm(scalar(p, "alpha_peak_x0"), scalar(p, "alpha_peak_x0_err"))
        ax.plot(x, _fit_curve(p, x, width), color=_color(i), linewidth=1.8,
                label=f"{name}: x0 = {x0}, σ = {scalar(p, 'alpha_peak_sigma'):.3f}, "
                      f"χ²/ndf = {chi2:.2f}")
    ax.set_xlabel(f"alpha energy, alpha_energy_sca [{SCA}]")
    ax.set_ylabel(f"frames / bin ({width:.3f} {SCA})")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    n = int(run.alpha_n_frames) + int(run.alpha_monitor_n_frames.sum())
    ax.set_title(f"{run_id} — alpha spectrum, {n} frames, Crystal Ball fits in their windows "
                 "(coloured bars: fit windows)", fontsize=FONT_SIZE + 1, y=TITLE_Y)
    ax.legend(fontsize=FONT_SIZE - 2, loc="upper right")
    omitted_note(fig, {"peak fit failed": failed})
    return fig


def plot_alpha_calibration(run: xr.Dataset, run_id: str) -> Figure:
    """Fitted peak positions x0 (SCA MeV) against the reference energies (MeV) with the
    linear and quadratic calibrations, and below them the residuals (keV) of both."""
    run = _peaks(run)
    names = _isotopes(run)
    ok = np.asarray(run.alpha_peak_success.values, dtype=bool)
    x0 = np.asarray(run.alpha_peak_x0.values, dtype=float)
    x0_err = np.asarray(run.alpha_peak_x0_err.values, dtype=float)
    ref = np.asarray(run.alpha_peak_ref_energy.values, dtype=float)
    coef = run.alpha_cal_coef
    order = int(run.alpha_cal_order_used)
    fig = new_figure(7.5, 7.0)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2.2, 1))
    top.errorbar(x0[ok], ref[ok], xerr=np.where(np.isfinite(x0_err), x0_err, 0)[ok],
                 marker="o", linestyle="none", color="k", capsize=3,
                 label="fitted peaks (x0 ± 1σ)")
    for i, name in enumerate(names):
        if ok[i]:
            top.annotate(name, (x0[i], ref[i]), textcoords="offset points", xytext=(6, -12),
                         fontsize=FONT_SIZE - 1, color=_color(i))
    span = x0[ok] if ok.any() else np.asarray(run.alpha_peak_start.values, dtype=float)
    pad = 0.05 * max(float(np.ptp(span)), 0.5)
    x = np.linspace(span.min() - pad, span.max() + pad, 200)
    styles = {1: ("tab:blue", "linear"), 2: ("tab:red", "quadratic")}
    for k, (color, label) in styles.items():
        c = np.asarray(coef.sel(alpha_order=k).values, dtype=float)
        if not np.isfinite(c).all():
            continue
        used = " (used)" if k == order and bool(run.alpha_cal_success) else ""
        terms = " + ".join(f"{v:.4g}" + ("" if j == 0 else " x" if j == 1 else " x²")
                           for j, v in enumerate(c[:k + 1]))
        top.plot(x, np.polynomial.polynomial.polyval(x, c), color=color,
                 linestyle="-" if used else "--", label=f"{label}{used}: E = {terms}")
        resid = np.asarray(run[f"alpha_peak_residual_{label}"].values, dtype=float) * 1e3
        slope = np.abs(c[1] + 2 * c[2] * x0)  # MeV per SCA MeV: x0's error in keV
        shift = 0.006 * (x.max() - x.min()) * (1 if k == 2 else -1)
        bottom.errorbar(x0[ok] + shift, resid[ok],
                        yerr=np.where(np.isfinite(x0_err), slope * x0_err * 1e3, 0)[ok],
                        marker="o" if k == 1 else "s", linestyle="none", color=color,
                        capsize=3, label=f"{label} (error bar: x0's 1σ)")
    bottom.axhline(0, color="0.4", linewidth=0.8)
    top.set_ylabel("reference energy [MeV]")
    bottom.set_ylabel("reference − fit [keV]")
    bottom.set_xlabel(f"fitted peak position x0 [{SCA}]")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.legend(fontsize=FONT_SIZE - 2, loc="upper left")
    if ok.any():
        if bottom.get_legend_handles_labels()[0]:  # (no calibration: no residuals)
            bottom.legend(fontsize=FONT_SIZE - 2, loc="best")
    else:
        nothing_to_show(top, span)
    title = f"{run_id} — alpha energy calibration"
    if not bool(run.alpha_cal_success):
        title += "\n" + wrap(f"calibration failed: {text(run, 'alpha_cal_reason')}", 70)
    top.set_title(title, fontsize=FONT_SIZE + 1, y=TITLE_Y)
    omitted_note(fig, {"peak fit failed": [n for n, good in zip(names, ok, strict=True)
                                           if not good]})
    return fig


def plot_alpha_spectrum_set(sets: xr.Dataset, run: xr.Dataset, set_name: str,
                            run_id: str) -> Figure:
    """One set's calibrated alpha spectrum (MeV) with each isotope's range shaded and the
    Th228/Ra224 boundary; the legend counts the set's frames per isotope.  A configured SCA
    range (alpha.isotope_ranges) is shaded where the calibration maps it; a run tagged by
    such ranges without a calibration shows the set's spectrum of ``alpha_energy_sca``
    with the ranges instead."""
    row = sets.sel(set=set_name)
    names = _isotopes(row) if "iso_n_frames" in row else []
    sca_ranges = {n: r for n in names if (r := _sca_range(run, n))}
    edges = np.asarray(run.alpha_energy_hist_edges.values, dtype=float)
    counts = np.asarray(row.alpha_energy_hist.values, dtype=float)
    scale, unit = "calibrated alpha energy, alpha_energy_mev", "MeV"
    if not np.isfinite(edges).all() and sca_ranges and "alpha_sca_hist" in row:
        edges = np.asarray(run.alpha_spectrum_edges.values, dtype=float)
        counts = np.asarray(row.alpha_sca_hist.values, dtype=float)
        scale, unit = "alpha energy, alpha_energy_sca", SCA
    fig = new_figure(8.0, 5.0)
    ax = fig.add_subplot()
    handles = []
    colors = _colors(run, names)
    if np.isfinite(edges).all():
        ax.stairs(counts, edges, fill=True, color="0.7")
        ax.stairs(counts, edges, color="0.3", linewidth=0.8)
        handles.append(Patch(color="0.7", label="frames"))
        for name in names:
            shown = sca_ranges.get(name) if unit == SCA else _mev_range(run, name)
            if shown is None:
                continue
            lo, hi = shown
            ax.axvspan(lo, hi, color=colors[name], alpha=0.25, linewidth=0)
            n = int(row.iso_n_frames.sel(isotope=name))
            how = (f" (SCA [{sca_ranges[name][0]:g}, {sca_ranges[name][1]:g}])"
                   if name in sca_ranges and unit != SCA else "")
            handles.append(Patch(color=colors[name], alpha=0.4,
                                 label=f"{name} [{lo:.3f}, {hi:.3f}] {unit}{how}: {n} frames"))
        boundary = scalar(run, "alpha_overlap_boundary") if "alpha_overlap_boundary" in run \
            and not sca_ranges else math.nan
        if math.isfinite(boundary):
            ax.axvline(boundary, color="k", linestyle=":", linewidth=1.2)
            handles.append(Line2D([], [], color="k", linestyle=":",
                                  label=f"Th228/Ra224 boundary {boundary:.3f} MeV"))
        ax.set_xlim(edges[0], edges[-1])
    else:
        ax.text(0.5, 0.5, wrap("no calibration: " + (text(run, "alpha_cal_reason")
                                                      or "no result"), 50),
                transform=ax.transAxes, ha="center", va="center", color="tab:red")
    handles.append(Line2D([], [], linestyle="none",
                          label=f"untagged: {int(row.n_untagged)} frames "
                                f"({int(row.n_no_alpha)} without an alpha energy)"))
    ax.legend(handles=handles, fontsize=FONT_SIZE - 2, loc="upper right")
    ax.set_xlabel(f"{scale} [{unit}]")
    ax.set_ylabel("frames / bin")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    tagged = "\ntagged by alpha.isotope_ranges on the SCA scale (no calibration)" \
        if unit == SCA else ""
    ax.set_title(f"{run_id} — {set_name}: alpha spectrum and isotope ranges{tagged}",
                 fontsize=FONT_SIZE + 1, y=TITLE_Y)
    return fig


def plot_s2_vs_drift_isotopes(sets: xr.Dataset, run_id: str) -> Figure:
    """Ion S2 area mean against drift field, one series per isotope (error bars ci95),
    slightly offset in x so the bars do not hide each other; the all-frames mean in grey."""
    x = np.asarray(sets.drift_field.values, dtype=float)
    names = _isotopes(sets)
    spread = float(np.ptp(x[np.isfinite(x)])) if np.isfinite(x).any() else 1.0
    step = 0.012 * (spread or 1.0)
    fig = new_figure(8.0, 5.5)
    ax = fig.add_subplot()
    if "s2_area_mean" in sets:
        keep = np.isfinite(x) & np.isfinite(sets.s2_area_mean.values)
        half = (len(names) / 2 + 0.8) * step
        ax.hlines(sets.s2_area_mean.values[keep], x[keep] - half, x[keep] + half,
                  color="0.55", linewidth=2.5, zorder=0, label="all frames of the set")
    failed, shown = [], False
    for i, name in enumerate(names):
        iso = sets.sel(isotope=name)
        y = np.asarray(iso.iso_s2_area_mean.values, dtype=float)
        err = np.asarray(iso.iso_s2_area_ci95.values, dtype=float)
        ok = np.asarray(iso.iso_s2_fit_success.values, dtype=bool) & np.isfinite(x) & \
            np.isfinite(y)
        failed += [f"{name} {s}" for s in np.asarray(sets.set.values).astype(str)[~ok]]
        if not ok.any():
            continue
        shown = True
        offset = (i - (len(names) - 1) / 2) * step
        ax.errorbar(x[ok] + offset, y[ok], yerr=np.where(np.isfinite(err), err, 0)[ok],
                    marker="o", markersize=4, capsize=3, linestyle="none", color=_color(i),
                    label=f"{name} ({int(iso.iso_n_frames.sum())} frames)")
    ax.set_xlabel("drift field [V/cm]")
    ax.set_ylabel(f"ion S2 area mean [{AREA_UNIT}]")
    ax.set_title(f"{run_id} — ion S2 area vs drift field per isotope (error bars 95% CI)",
                 fontsize=FONT_SIZE + 1, y=TITLE_Y)
    ax.grid(alpha=0.3)
    if shown:
        ax.legend(fontsize=FONT_SIZE - 1)
    else:
        nothing_to_show(ax, x)
    omitted_note(fig, {"per-isotope fit failed": failed})
    return fig
