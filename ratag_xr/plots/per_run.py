"""Figures of a whole run: combined X-ray histogram, S2 area against drift field, diffusion
and recombination (ALGORITHMS.md §8–§10).  Functions take result datasets and return
figures; no I/O.  Sets whose value is missing (failed step) are left out and named in a
note under the axes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from ratag_xr.errors import AnalysisError
from ratag_xr.physics.diffusion import diffusion_x_variables
from ratag_xr.plots._common import (
    AREA_UNIT,
    FONT_SIZE,
    TITLE_Y,
    HistFit,
    draw_fitted_histogram,
    flag,
    fmt_pm,
    new_figure,
    nothing_to_show,
    omitted_note,
    scalar,
    text,
    wrap,
)
from ratag_xr.vocabulary import GAIN_OWN

#: HistFit field -> variable of the ``run`` dataset.
XRAY_HIST_VARS = {
    "counts": "xray_hist", "edges": "xray_hist_edges", "mean": "A_x_mean",
    "sigma": "A_x_sigma", "ci95": "A_x_ci95", "chi2_ndf": "xray_chi2_ndf",
    "n_entries": "xray_n_entries", "success": "xray_fit_success", "reason": "xray_fit_reason",
    "amplitude": "xray_amplitude",
}  # fmt: skip

MARKER = {"marker": "o", "markersize": 5, "capsize": 3, "linestyle": "none", "color": "tab:blue"}
DRIFT_FIELD_LABEL = "drift field [V/cm]"


def _values(sets: xr.Dataset, name: str) -> np.ndarray:
    return np.asarray(sets[name].values, dtype=float)


def _set_names(sets: xr.Dataset) -> np.ndarray:
    return np.asarray(sets["set"].values).astype(str)


def plot_xray_histogram(run: xr.Dataset, run_id: str, *, exclude_index: int = 0) -> Figure:
    """Combined histogram of the accepted X-ray areas (mV·µs) of all sets, with the
    Gaussian fit, its mean ± ci95 and the resulting gain g_S2."""
    fit = HistFit.from_dataset(run, XRAY_HIST_VARS, exclude_index)
    fig = new_figure(7.5, 5.0)
    ax = fig.add_subplot()
    draw_fitted_histogram(ax, fit, quantity="X-ray S2 area", count_label="events / bin")
    title = f"{run_id} — X-ray S2 area, all sets combined"
    # this histogram's own gain (g_S2 may be another run's: calibrate.g_s2)
    own = "g_S2_own" if "g_S2_own" in run else "g_S2"
    if fit.success and math.isfinite(scalar(run, own)):
        gain = fmt_pm(scalar(run, own), scalar(run, f"{own}_err"))
        title += (f"\ngain $g_{{S2}}$ = {gain} {AREA_UNIT} per electron (95% CI), "
                  f"$N_{{e,\\mathrm{{exp}}}}$ = {scalar(run, 'N_e_exp'):.1f}")  # fmt: skip
    elif not fit.success:
        title += " — fit failed"
    if own == "g_S2_own" and str(run.g_S2_source.values.item()) != GAIN_OWN:
        source = str(run.g_S2_source.values.item())
        title += (f"\nthe recombination uses $g_{{S2}}$ = "
                  f"{fmt_pm(scalar(run, 'g_S2'), scalar(run, 'g_S2_err'))} from "
                  f"{Path(source).name if '/' in source else source}")
    ax.set_title(title, fontsize=FONT_SIZE + 1, y=TITLE_Y)
    return fig


def plot_s2_vs_drift(sets: xr.Dataset, run_id: str, normalized: bool = False) -> Figure:
    """Ion S2 area mean against drift field with ci95 error bars.

    ``normalized=True`` plots A_ion / A_x (``norm_A_ion`` ± ``norm_A_ion_err``) instead of
    the area in mV·µs.  Sets with a failed S2 fit (or no normalised value) are omitted and
    named under the axes.
    """
    y_name, err_name = ("norm_A_ion", "norm_A_ion_err") if normalized else (
        "s2_area_mean", "s2_area_ci95")  # fmt: skip
    x, y, err = _values(sets, "drift_field"), _values(sets, y_name), _values(sets, err_name)
    fitted = np.asarray(sets["s2_fit_success"].values, dtype=bool)
    keep = fitted & np.isfinite(x) & np.isfinite(y)
    fig = new_figure(7.5, 5.0)
    ax = fig.add_subplot()
    ax.errorbar(x[keep], y[keep], yerr=np.where(np.isfinite(err), err, 0)[keep],
                label="set mean, error bar 95% CI", **MARKER)  # fmt: skip
    if normalized:
        ax.set_ylabel(r"$A_\mathrm{ion} / A_x$ (dimensionless)")
        title = rf"{run_id} — ion S2 area normalised to the X-ray peak, $A_\mathrm{{ion}} / A_x$"
    else:
        ax.set_ylabel(f"ion S2 area mean [{AREA_UNIT}]")
        title = f"{run_id} — ion S2 area vs drift field"
    ax.set_xlabel(DRIFT_FIELD_LABEL)
    ax.set_title(title, fontsize=FONT_SIZE + 1, y=TITLE_Y)
    ax.grid(alpha=0.3)
    if keep.any():
        ax.legend(fontsize=FONT_SIZE - 1)
    names = _set_names(sets)
    no_value = r"no $A_\mathrm{ion} / A_x$" if normalized else "no S2 area mean or drift field"
    if not keep.any():
        nothing_to_show(ax, x)
    omitted_note(fig, {"S2 fit failed": list(names[~fitted]),
                      no_value: list(names[fitted & ~keep])})  # fmt: skip
    return fig


def plot_diffusion(sets: xr.Dataset, run: xr.Dataset, run_id: str) -> Figure:
    """Longitudinal diffusion from the S2 duration spread: three panels of σ²_obs (µs²)
    against drift time (µs), drift time / speed² (µs³/mm², with the straight-line fit
    σ² = σ_0² + 2 D_L t / v²) and drift field / pressure (V·cm⁻¹·bar⁻¹)."""
    missing = [a for a in ("pressure", "temperature") if a not in sets.attrs]
    if missing:
        raise AnalysisError(f"sets dataset lacks the attribute(s) {missing} (bar, K)")
    xs = diffusion_x_variables(
        _values(sets, "time_drift"), _values(sets, "speed_drift"), _values(sets, "drift_field"),
        pressure_bar=float(sets.attrs["pressure"]), temperature_k=float(sets.attrs["temperature"]),
    )  # fmt: skip
    y, err = _values(sets, "sigma2_obs"), _values(sets, "sigma2_obs_err")
    keep = np.isfinite(y) & np.isfinite(xs["t_over_v2"])
    yerr = np.where(np.isfinite(err), err, 0)[keep]

    fig = new_figure(15.0, 5.0)
    axes = fig.subplots(1, 3, sharey=True)
    panels = (
        ("time_drift", "drift time t [µs]"),
        ("t_over_v2", "drift time / drift speed², t / v² [µs³/mm²]"),
        ("field_per_pressure", "drift field / pressure [V cm⁻¹ bar⁻¹]"),
    )
    for ax, (key, label) in zip(axes, panels, strict=True):
        ax.errorbar(xs[key][keep], y[keep], yerr=yerr,
                    label=r"sets, $\sigma^2_\mathrm{obs}$ ± 1σ", **MARKER)  # fmt: skip
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(r"$\sigma^2_\mathrm{obs}$ = (spread of S2 duration)² [µs²]")

    ax = axes[1]
    if flag(run, "diffusion_success"):
        d_l, d_l_err = scalar(run, "D_L"), scalar(run, "D_L_err")
        s0, s0_err = scalar(run, "sigma0_sq"), scalar(run, "sigma0_sq_err")
        x_max = float(np.nanmax(xs["t_over_v2"][keep])) if keep.any() else 1.0
        line_x = np.array([0.0, 1.05 * x_max])
        ax.plot(line_x, s0 + 2.0 * d_l * line_x, color="tab:red", linewidth=1.5,
                label=r"fit $\sigma^2 = \sigma_0^2 + 2 D_L\, t / v^2$" + "\n"
                      rf"$D_L$ = {fmt_pm(d_l, d_l_err)} mm²/µs" + "\n"
                      rf"$\sigma_0^2$ = {fmt_pm(s0, s0_err)} µs² (errors 1σ)")  # fmt: skip
    else:
        reason = text(run, "diffusion_reason") or "no result"
        ax.text(0.03, 0.97, wrap(f"diffusion fit failed: {reason}", 45), transform=ax.transAxes,
                ha="left", va="top", fontsize=FONT_SIZE - 1, color="tab:red")  # fmt: skip
    ax.legend(loc="lower right", fontsize=FONT_SIZE - 1)
    if not keep.any():
        for ax, (key, _) in zip(axes, panels, strict=True):
            nothing_to_show(ax, xs[key])
    omitted_note(fig, {"no S2 duration spread": list(_set_names(sets)[~keep])})
    fig.suptitle(f"{run_id} — longitudinal diffusion (S2 duration spread; "
                 f"{timing_text(sets.attrs)})", fontsize=FONT_SIZE + 2)  # fmt: skip
    return fig


def timing_text(attrs) -> str:
    """How the S2 durations were found, in words, from the ``prepare`` attributes."""
    method = attrs.get("s2_window_method")
    spread = {"percentile": "(p84 − p16)/2", "mad": "1.4826 MAD", "std": "std"}.get(
        method, str(method))
    if attrs.get("s2_timing") == "clean":
        timing = f"clean S2 timing: start after the last gap > {attrs.get('s2_max_gap'):g} µs"
    else:
        timing = "reference S2 timing: first crossing after t_s1 + 0.75 t_drift"
    return f"{timing}; spread {spread}"


def plot_recombination(sets: xr.Dataset, run_id: str) -> Figure:
    """Recombination r = 1 − N_e,meas / N_exp against drift field; thin bars with caps are
    the full ci95 (ion and X-ray fits), thick bars the ion-fit-only ci95."""
    x, r = _values(sets, "drift_field"), _values(sets, "r")
    err, err_ion = _values(sets, "r_err"), _values(sets, "r_err_ion")
    keep = np.isfinite(x) & np.isfinite(r)
    fig = new_figure(7.5, 5.0)
    ax = fig.add_subplot()
    ax.errorbar(x[keep], r[keep], yerr=np.where(np.isfinite(err), err, 0)[keep],
                label="r, 95% CI (ion and X-ray fits)", elinewidth=1.0, **MARKER)  # fmt: skip
    if np.isfinite(err_ion[keep]).any():
        ax.errorbar(x[keep], r[keep], yerr=np.where(np.isfinite(err_ion), err_ion, 0)[keep],
                    fmt="none", ecolor="tab:orange", elinewidth=7, alpha=0.6, zorder=1,
                    label="95% CI of the ion fit alone")  # fmt: skip
    ax.set_xlabel(DRIFT_FIELD_LABEL)
    ax.set_ylabel(r"$r = 1 - N_{e,\mathrm{meas}} / N_{e,\mathrm{exp}}$ (dimensionless)")
    ax.set_title(f"{run_id} — electron-ion recombination vs drift field",
                 fontsize=FONT_SIZE + 1, y=TITLE_Y)
    ax.grid(alpha=0.3)
    if keep.any():
        ax.legend(fontsize=FONT_SIZE - 1)
    if not keep.any():
        nothing_to_show(ax, x)
    omitted_note(fig, {"no recombination value": list(_set_names(sets)[~keep])})
    return fig
