"""Figures of one set: the ion S2 area histogram and the waveform validation panel
(ALGORITHMS.md §10).  Functions take result datasets and return figures; no I/O."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import xarray as xr
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from scipy.special import ndtr

from ratag_xr.errors import AnalysisError
from ratag_xr.physics.crystal_ball import crystal_ball_cdf
from ratag_xr.plots._common import (
    AREA_UNIT,
    FONT_SIZE,
    TITLE_Y,
    Curve,
    HistFit,
    draw_fitted_histogram,
    flag,
    fmt_pm,
    new_figure,
    scalar,
    text,
)
from ratag_xr.vocabulary import wf_id

#: HistFit field -> variable of the ``sets`` dataset.
S2_HIST_VARS = {
    "counts": "s2_area_hist", "edges": "s2_area_hist_edges", "mean": "s2_area_mean",
    "sigma": "s2_area_sigma", "ci95": "s2_area_ci95", "chi2_ndf": "s2_area_chi2_ndf",
    "n_entries": "s2_area_n_entries", "success": "s2_fit_success", "reason": "s2_fit_reason",
    "amplitude": "s2_area_amplitude",
}  # fmt: skip

#: Time markers of the validation figure: (centre, spread, colour, label), times in µs.
TIME_MARKERS = (
    ("t_s1", "t_s1_std", "tab:red", "S1"),
    ("t_s2_start_mean", "t_s2_start_std", "tab:blue", "S2 start"),
    ("t_s2_end_mean", "t_s2_end_std", "tab:purple", "S2 end"),
)


BACKGROUND_COLOR = "tab:orange"


def crystal_ball_fit(row: xr.Dataset, exclude_index: int) -> HistFit:
    """The §15 Crystal Ball fit of one set (``row = sets.sel(set=name)``) as a
    :class:`HistFit`: the fitted curve over its fitted bins and, for a two-stage fit, the
    background Gaussian of the zero-area frames and the sum of both."""
    fit = HistFit.from_dataset(row, S2_HIST_VARS, exclude_index)
    x0, sigma = scalar(row, "s2_area_mean"), scalar(row, "s2_area_sigma")
    beta, m = scalar(row, "s2_area_beta"), scalar(row, "s2_area_m")
    height, chi2 = scalar(row, "s2_area_cb_amplitude"), scalar(row, "s2_area_chi2_ndf")
    fit_range = (scalar(row, "s2_fit_low"), scalar(row, "s2_fit_high"))
    notes = [f"tail β = {fmt_pm(beta, 1.96 * scalar(row, 's2_area_beta_err'))}, "
             f"m = {fmt_pm(m, 1.96 * scalar(row, 's2_area_m_err'))} (95% CI)"]
    components = []
    edges = fit.edges
    usable = fit.success and all(map(math.isfinite, (x0, sigma, beta, m, height, *fit_range)))
    if usable and edges.size > 1:
        half = 0.5 * float(np.mean(np.diff(edges)))  # curves in counts per (mean) bin

        def per_bin(x):
            return height * (crystal_ball_cdf(x + half, x0, sigma, beta, m, "right")
                             - crystal_ball_cdf(x - half, x0, sigma, beta, m, "right"))

        x_sig = np.linspace(*fit_range, 400)
        chi2_text = f", χ²/ndf = {chi2:.2f}" if math.isfinite(chi2) else ""
        components.append(Curve(x_sig, per_bin(x_sig), f"Crystal Ball fit{chi2_text}"))
        bg_mean, bg_sigma = scalar(row, "s2_bg_mean"), scalar(row, "s2_bg_sigma")
        bg_n = scalar(row, "s2_bg_amplitude")
        if flag(row, "s2_two_stage") and flag(row, "s2_bg_success"):
            x_all = np.linspace(edges[0], edges[-1], 800)
            z = (x_all[:, None] + np.array([half, -half]) - bg_mean) / bg_sigma
            bg = bg_n * (ndtr(z[:, 0]) - ndtr(z[:, 1]))
            components.append(Curve(x_all, bg, "background: zero-area Gaussian "
                                    "(stage 1)", BACKGROUND_COLOR))
            inside = (x_all >= fit_range[0]) & (x_all <= fit_range[1])
            total = bg + np.where(inside, per_bin(np.clip(x_all, *fit_range)), 0.0)
            components.append(Curve(x_all, total, "sum", "0.3", ":"))
            notes.append(f"background μ = {bg_mean:.3g}, σ = {bg_sigma:.3g} {AREA_UNIT}, "
                         f"{bg_n:.0f} frames under it")
        elif flag(row, "s2_two_stage"):
            notes.append(f"background fit failed: {text(row, 's2_bg_reason')}; Crystal Ball "
                         f"fitted from {fit_range[0]:.3g} {AREA_UNIT}")
    excluded = "outside the Crystal Ball fit" if flag(row, "s2_two_stage") else "not fitted"
    return dataclasses.replace(fit, model="Crystal Ball", fit_range=fit_range,
                               components=tuple(components), notes=tuple(notes),
                               excluded_label=excluded)


def plot_s2_histogram(
    sets: xr.Dataset, set_name: str, run_id: str, *, exclude_index: int = 1
) -> Figure:
    """Histogram of the ion S2 areas (mV·µs) of ``set_name`` with its fit.

    Shows the fitted curve, the mean with its ±ci95 band, σ, χ²/ndf and N; the bins left
    out of the fit (the first ``exclude_index``, ALGORITHMS.md §6, or those outside a
    Crystal Ball's fitted range) are drawn grey.  A §15 Crystal Ball fit also states its
    tail parameters and, two-stage, draws the background Gaussian of the zero-area frames.
    A failed fit shows the histogram and the reason.
    """
    row = sets.sel(set=set_name)
    if text(row, "s2_fit_model") == "crystal_ball":
        fit = crystal_ball_fit(row, exclude_index)
    else:
        fit = HistFit.from_dataset(row, S2_HIST_VARS, exclude_index)
    fig = new_figure(11.0 if fit.notes else 7.5, 5.0)
    ax = fig.add_subplot()
    draw_fitted_histogram(ax, fit, quantity="S2 area", count_label="frames / bin")
    details = [f"drift field {scalar(row, 'drift_field'):.1f} V/cm"]
    n_nan, n_frames = scalar(row, "n_area_nan"), scalar(row, "n_frames")
    if n_nan > 0:
        details.append(f"{n_nan:.0f} of {n_frames:.0f} frames not integrable")
    status = "" if fit.success else " — fit failed"
    ax.set_title(f"{run_id} · {set_name}{status}\nion S2 area, " + ", ".join(details),
                 fontsize=FONT_SIZE + 1, y=TITLE_Y)  # fmt: skip
    return fig


#: Columns of the min/max envelope drawn per frame: more than the pixels of a subplot (a
#: panel is about 5.5 in, 825 px at 150 DPI); twice that drew the same picture in 3-4x the
#: time (every column's segment spans the noise band and is stroked anti-aliased).
ENVELOPE_COLUMNS = 1000


def min_max_envelope(t: np.ndarray, y: np.ndarray, columns: int = ENVELOPE_COLUMNS):
    """The samples to draw for a long trace: per column of ``len(y) // columns`` samples its
    minimum and maximum, in time order.  Every extreme (a pulse's peak, the baseline's
    dips) is kept, so the drawn line equals the full trace at screen resolution while a
    190 000-sample frame draws ~100x faster.  Short traces are returned whole."""
    n = len(y)
    if n <= 2 * columns:
        return t, y
    k = n // columns
    m = k * columns
    yb, tb = y[:m].reshape(columns, k), t[:m].reshape(columns, k)
    rows = np.arange(columns)
    i_min, i_max = np.nanargmin(np.where(np.isnan(yb), np.inf, yb), axis=1), \
        np.nanargmax(np.where(np.isnan(yb), -np.inf, yb), axis=1)
    first, second = np.minimum(i_min, i_max), np.maximum(i_min, i_max)
    t_env = np.stack([tb[rows, first], tb[rows, second]], axis=1).ravel()
    y_env = np.stack([yb[rows, first], yb[rows, second]], axis=1).ravel()
    return np.concatenate([t_env, t[m:]]), np.concatenate([y_env, y[m:]])


def _time_markers(ax, lines, bands) -> None:
    """Dashed lines at the times ``lines`` [(t, color)] and shaded bands ``bands``
    [(t_lo, t_hi, color)] over the full height of ``ax``: what ``axvline`` and ``axvspan``
    draw, as two collections instead of an artist each (the ten panels' markers took a
    fifth of the figure's time).  They do not change the axes' limits."""
    where = ax.get_xaxis_transform()  # x in data, y in axes units
    if bands:
        ax.add_collection(PolyCollection(
            [[(lo, 0), (lo, 1), (hi, 1), (hi, 0)] for lo, hi, _ in bands],
            facecolors=[c for *_, c in bands], alpha=0.18, linewidths=0, transform=where),
            autolim=False)
    if lines:
        ax.add_collection(LineCollection(
            [[(t, 0), (t, 1)] for t, _ in lines], colors=[c for _, c in lines],
            linestyles="--", linewidths=1.0, transform=where), autolim=False)


#: Layout of the validation figure, inches: panel row height and the margins.
PANEL_HEIGHT, TOP, BOTTOM, LEFT, RIGHT = 1.9, 0.75, 1.05, 0.8, 0.2


def plot_waveform_validation(waveforms: xr.Dataset, set_row: xr.Dataset, run_id: str) -> Figure:
    """Individual frames (not averages) of one set, one subplot each, two per row.

    ``waveforms``: ``waveform`` (frame, time) in mV with coords ``time`` (µs), ``file`` and
    ``frame_in_file``; the caller picks the frames (10 for the run report).  ``set_row`` is
    ``sets.sel(set=name)``: S1 (red), S2 start (blue) and S2 end (purple) are drawn as
    dashed lines with their ±σ band.  Each subplot is titled by the frame's wf_id.
    """
    n = int(waveforms.sizes.get("frame", 0))
    if n == 0:
        raise AnalysisError("waveform validation needs at least one frame, got none")
    n_cols = 2
    n_rows = math.ceil(n / n_cols)
    width, height = 12.0, PANEL_HEIGHT * n_rows + TOP + BOTTOM
    # A fixed layout (inches): constrained layout measured every tick label of the ten
    # panels and took half of the figure's drawing time.
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=LEFT / width, right=1 - RIGHT / width, top=1 - TOP / height,
                        bottom=BOTTOM / height, wspace=0.14, hspace=0.5)
    grid = fig.subplots(n_rows, n_cols, sharex=True, squeeze=False)
    axes = list(grid.flat)
    for ax in axes[n:]:  # odd count: the last slot stays empty
        fig.delaxes(ax)
    axes = axes[:n]

    time = np.asarray(waveforms["time"].values, dtype=float)
    files = waveforms["file"].values
    frames_in_file = waveforms["frame_in_file"].values
    markers = [(scalar(set_row, centre), scalar(set_row, spread), color)
               for centre, spread, color, _ in TIME_MARKERS]
    lines = [(t, color) for t, _, color in markers if math.isfinite(t)]
    bands = [(t - s, t + s, color) for t, s, color in markers
             if math.isfinite(t) and math.isfinite(s) and s > 0]
    for i, ax in enumerate(axes):
        t_env, y_env = min_max_envelope(time, np.asarray(waveforms["waveform"].isel(frame=i)
                                                          .values, dtype=float))
        ax.plot(t_env, y_env, color="0.15", linewidth=0.5)
        _time_markers(ax, lines, bands)
        ax.set_title(wf_id(files[i], frames_in_file[i]), fontsize=FONT_SIZE - 1, y=TITLE_Y)
        ax.tick_params(labelsize=FONT_SIZE - 1)
        ax.grid(alpha=0.3, linewidth=0.5)
        if i % n_cols == 0:
            ax.set_ylabel("signal [mV]")
        if i >= n - n_cols:  # lowest subplot of its column
            ax.set_xlabel("time [µs]")
            ax.xaxis.set_tick_params(labelbottom=True)

    handles, labels = [], []
    for centre, spread, color, label in TIME_MARKERS:
        handles.append((Patch(color=color, alpha=0.18), Line2D([], [], color=color, ls="--")))
        t, s = scalar(set_row, centre), scalar(set_row, spread)
        labels.append(f"{label}: {fmt_pm(t, s)} µs (±σ)" if math.isfinite(t) else
                      f"{label}: not determined")  # fmt: skip
    # Below the panels: above them it would collide with the suptitle.
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.1 / height),
               ncols=3, fontsize=FONT_SIZE)
    set_name = str(set_row["set"].values) if "set" in set_row.coords else ""
    fig.suptitle(f"{run_id} · {set_name} — waveform validation, {n} individual frames "
                 "(not averaged)", fontsize=FONT_SIZE + 2, y=1 - 0.12 / height)  # fmt: skip
    return fig
