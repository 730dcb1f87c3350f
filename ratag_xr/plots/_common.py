"""Pieces shared by the result figures: figure factory, value access, number formatting and
the drawing of a histogram with its Gaussian fit.

Figures are built with :class:`matplotlib.figure.Figure` directly, never through pyplot:
no global figure registry, no GUI backend, so they are safe in Dask workers and headless
runs, and are freed like any Python object once dropped.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from scipy.special import ndtr

AREA_UNIT = "mV·µs"
FONT_SIZE = 10
#: Axes titles at this height (axes units, the default), given explicitly: matplotlib then
#: skips measuring every tick label to move the title clear of anything above the axes
#: (nothing is drawn there), a third of a ten-panel figure's drawing time.
TITLE_Y = 1.0
FIT_COLOR = "tab:red"
MEAN_COLOR = "black"
HIST_COLOR = "tab:blue"
EXCLUDED_COLOR = "0.7"


def new_figure(width: float, height: float) -> Figure:
    """An empty figure of ``width`` × ``height`` inches with constrained layout."""
    fig = Figure(figsize=(width, height), layout="constrained")
    fig.set_layout_engine("constrained", h_pad=0.06, w_pad=0.06)
    return fig


def scalar(ds: xr.Dataset, name: str, default: float = math.nan) -> float:
    """Value of the 0-d variable ``name`` as a float; ``default`` when ``ds`` lacks it."""
    return float(ds[name].values) if name in ds.variables else default


def text(ds: xr.Dataset, name: str) -> str:
    """Value of the 0-d string variable ``name`` ("" when absent)."""
    return str(ds[name].values.item()) if name in ds.variables else ""


def flag(ds: xr.Dataset, name: str) -> bool:
    """Value of the 0-d boolean variable ``name`` (False when absent)."""
    return bool(ds[name].values) if name in ds.variables else False


def fmt_pm(value: float, err: float) -> str:
    """``value ± err`` with ``err`` rounded to two significant digits ("n/a" for NaN)."""
    if not math.isfinite(value):
        return "n/a"
    if not (math.isfinite(err) and err > 0):
        return f"{value:.4g}"
    decimals = max(0, 1 - math.floor(math.log10(err)))
    return f"{value:.{decimals}f} ± {err:.{decimals}f}"


def fmt_like(value: float, err: float) -> str:
    """``value`` with as many decimals as :func:`fmt_pm` gives for ``err``."""
    text = fmt_pm(value, err) if math.isfinite(err) and err > 0 else f"{value:.3g}"
    return text.split(" ± ")[0]


def wrap(message: str, width: int = 60) -> str:
    """``message`` broken into lines of at most ``width`` characters."""
    if not message:
        return ""
    return "\n".join(textwrap.wrap(message, width, break_long_words=False,
                                   break_on_hyphens=False))  # fmt: skip


def expected_counts(edges, amplitude: float, mean: float, sigma: float) -> np.ndarray:
    """Expected entries per bin of a Gaussian holding ``amplitude`` entries in total:
    amplitude × [Φ(b) − Φ(a)] for each bin [a, b] between ``edges``."""
    cdf = ndtr((np.asarray(edges, dtype=float) - mean) / sigma)
    return amplitude * np.diff(cdf)


@dataclass(frozen=True)
class Curve:
    """A fitted component to draw over a histogram: counts per bin at ``x``."""

    x: np.ndarray
    y: np.ndarray
    label: str
    color: str = FIT_COLOR
    linestyle: str = "-"


@dataclass(frozen=True)
class HistFit:
    """A histogram with the result of its fit, read from a results dataset.

    Areas in mV·µs.  ``amplitude`` is the number of entries under the whole Gaussian; when
    the dataset does not store it, it is the count in the fitted bins divided by the
    Gaussian's probability in the fitted range (so the curve has the data's normalisation).
    Another model (the §15 Crystal Ball) gives its ``model`` name, the ``fit_range`` of its
    fitted bins, its ``components`` to draw instead of the Gaussian and ``notes`` for the
    legend (its tail parameters, its background).
    """

    counts: np.ndarray
    edges: np.ndarray
    mean: float
    sigma: float
    ci95: float
    chi2_ndf: float
    n_entries: float
    success: bool
    reason: str
    amplitude: float
    exclude_index: int
    model: str = "Gaussian"
    fit_range: tuple[float, float] | None = None
    components: tuple[Curve, ...] = ()
    notes: tuple[str, ...] = ()
    excluded_label: str = "not fitted"

    def fitted_bins(self) -> slice:
        """The bins the fit used: after ``exclude_index``, or inside ``fit_range``."""
        if self.fit_range is None or not all(map(math.isfinite, self.fit_range)):
            return slice(self.exclude_index, None)
        centres = 0.5 * (self.edges[:-1] + self.edges[1:])
        inside = np.flatnonzero((centres >= self.fit_range[0]) & (centres <= self.fit_range[1]))
        return slice(int(inside[0]), int(inside[-1]) + 1) if inside.size else slice(0, 0)

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, names: dict, exclude_index: int) -> HistFit:
        """Read the fields named in ``names`` (HistFit field -> variable) from ``ds``."""
        edges = np.asarray(ds[names["edges"]].values, dtype=float)
        counts = np.asarray(ds[names["counts"]].values, dtype=float)
        # Sets with fewer bins than the widest one are padded with NaN edges.
        edges = edges[np.isfinite(edges)]
        counts = counts[: max(edges.size - 1, 0)]
        mean, sigma = scalar(ds, names["mean"]), scalar(ds, names["sigma"])
        amplitude = scalar(ds, names["amplitude"])
        fitted = slice(exclude_index, None)
        if not math.isfinite(amplitude) and counts.size > exclude_index and sigma > 0:
            in_range = float(np.sum(expected_counts(edges[[exclude_index, -1]], 1.0, mean, sigma)))
            amplitude = float(np.sum(counts[fitted])) / in_range if in_range > 0 else math.nan
        return cls(
            counts=counts, edges=edges, mean=mean, sigma=sigma, ci95=scalar(ds, names["ci95"]),
            chi2_ndf=scalar(ds, names["chi2_ndf"]), n_entries=scalar(ds, names["n_entries"]),
            success=flag(ds, names["success"]), reason=text(ds, names["reason"]),
            amplitude=amplitude, exclude_index=exclude_index,
        )  # fmt: skip

    def curve(self, n_points: int = 400) -> tuple[np.ndarray, np.ndarray]:
        """Smooth fitted curve over the fitted range in counts per bin (bin width = mean
        width of the fitted bins), for drawing over the histogram."""
        lo, hi = self.edges[self.exclude_index], self.edges[-1]
        half = 0.5 * float(np.mean(np.diff(self.edges[self.exclude_index :])))
        x = np.linspace(lo, hi, n_points)
        y = self.amplitude * (
            ndtr((x + half - self.mean) / self.sigma) - ndtr((x - half - self.mean) / self.sigma)
        )
        return x, y


def draw_fitted_histogram(ax, fit: HistFit, *, quantity: str, count_label: str) -> None:
    """Histogram (fitted bins blue, excluded bins grey) with the fitted curve, the mean as
    a dashed line with its ±ci95 band, and a legend with mean ± ci95, σ, χ²/ndf and N.
    A failed fit draws the histogram and puts the reason (in red) in the legend."""
    fitted = fit.fitted_bins()
    entries = []  # (legend handle, label)
    if fit.counts.size:
        i0, i1, _ = fitted.indices(fit.counts.size)
        if i0 > 0 or i1 < fit.counts.size:
            ax.stairs(fit.counts, fit.edges, fill=True, color=EXCLUDED_COLOR)
            entries.append((Patch(facecolor=EXCLUDED_COLOR), fit.excluded_label))
        if i1 > i0:
            ax.stairs(fit.counts[i0:i1], fit.edges[i0:i1 + 1], fill=True, color="white")
            ax.stairs(fit.counts[i0:i1], fit.edges[i0:i1 + 1], fill=True, color=HIST_COLOR,
                      alpha=0.35)
            ax.stairs(fit.counts[i0:i1], fit.edges[i0:i1 + 1], color=HIST_COLOR,
                      linewidth=1.0)
            entries.insert(0, (Patch(facecolor=HIST_COLOR, alpha=0.5), "data"))

    usable = fit.success and math.isfinite(fit.mean) and fit.sigma > 0
    failed_label = wrap(f"fit failed: {fit.reason or 'no result'}", 40)
    if usable:
        chi2 = f", χ²/ndf = {fit.chi2_ndf:.2f}" if math.isfinite(fit.chi2_ndf) else ""
        for curve in fit.components:
            ax.plot(curve.x, curve.y, color=curve.color, linestyle=curve.linestyle,
                    linewidth=1.8)
            entries.append((Line2D([], [], color=curve.color, linestyle=curve.linestyle,
                                   linewidth=1.8), curve.label))
        if not fit.components and math.isfinite(fit.amplitude):
            ax.plot(*fit.curve(), color=FIT_COLOR, linewidth=1.8)
            entries.append((Line2D([], [], color=FIT_COLOR, linewidth=1.8),
                            f"{fit.model} fit{chi2}"))
        ax.axvline(fit.mean, color=MEAN_COLOR, linestyle="--", linewidth=1.2)
        mean_handle = Line2D([], [], color=MEAN_COLOR, linestyle="--")
        if math.isfinite(fit.ci95):
            ax.axvspan(fit.mean - fit.ci95, fit.mean + fit.ci95, color=MEAN_COLOR, alpha=0.15,
                       linewidth=0)  # fmt: skip
            mean_handle = (Patch(color=MEAN_COLOR, alpha=0.15), mean_handle)
        centre = "mean" if fit.model == "Gaussian" else "peak x₀"
        entries.append((mean_handle, f"{centre} = {fmt_pm(fit.mean, fit.ci95)} {AREA_UNIT} "
                        "(95% CI)"))
        entries.append((_blank(), f"σ = {fmt_like(fit.sigma, fit.ci95)} {AREA_UNIT}"))
        entries += [(_blank(), wrap(note, 44)) for note in fit.notes]
    else:
        entries.append((_blank(), failed_label))
    if math.isfinite(fit.n_entries):
        entries.append((_blank(), f"N = {fit.n_entries:.0f} entries in the fitted bins"))

    handles, labels = zip(*entries, strict=True)
    # a fit with notes (the Crystal Ball's tail and background) has a long legend: beside
    # the axes, not over the histogram
    place = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if fit.notes else \
        {"loc": "best"}
    legend = ax.legend(handles, labels, fontsize=FONT_SIZE - 1, framealpha=0.9,
                       handlelength=1.5, **place)  # fmt: skip
    if not usable:
        legend.get_texts()[labels.index(failed_label)].set_color(FIT_COLOR)
    ax.set_xlabel(f"{quantity} [{AREA_UNIT}]")
    ax.set_ylabel(count_label)
    ax.set_ylim(bottom=0)
    if fit.edges.size:
        ax.set_xlim(fit.edges[0], fit.edges[-1])


def _blank() -> Line2D:
    # Legend handle of a text-only entry.
    return Line2D([], [], linestyle="none")


def omitted_note(fig: Figure, groups: dict[str, list[str]]) -> None:
    """Write at the bottom of ``fig`` which sets were left out of it, one line per reason
    (``groups``: reason -> set names; empty groups are skipped)."""
    # ~13 characters per inch at this font size; set names are never split.
    width = int(13 * fig.get_figwidth())
    lines = [wrap(f"omitted ({why}): " + ", ".join(names), width)
             for why, names in groups.items() if names]  # fmt: skip
    if lines:
        # A figure-level label: constrained layout reserves room for it, whatever its length.
        fig.supxlabel("\n".join(lines), x=0.01, ha="left", fontsize=FONT_SIZE - 1, color="0.3")


def nothing_to_show(ax, x_all) -> None:
    """Say so in the middle of an empty ``ax``; keep the x range of every set (``x_all``)."""
    ax.text(0.5, 0.5, "no set has a value to show", transform=ax.transAxes, ha="center",
            va="center", fontsize=FONT_SIZE + 1, color="0.4")  # fmt: skip
    x = np.asarray(x_all, dtype=float)
    x = x[np.isfinite(x)]
    if x.size:
        pad = 0.05 * max(float(np.ptp(x)), abs(float(x.mean())), 1.0)
        ax.set_xlim(x.min() - pad, x.max() + pad)
