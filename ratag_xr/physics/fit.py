"""Gaussian fit of a histogram of areas (ALGORITHMS.md §6).

The fit works on a histogram, not on the values, so a chunked caller can histogram
each chunk with the same edges, sum the counts and fit once.

Model: the expected count of bin ``i`` is ``amplitude × [Φ(b_{i+1}) − Φ(b_i)]`` where Φ is
the normal CDF of (mean, sigma): the Gaussian is integrated over each bin, not sampled at
the bin centre, so coarse bins do not bias sigma.  ``amplitude`` is therefore the number of
entries under the whole Gaussian (not a peak height); :meth:`GaussFit.counts_per_bin`
gives the curve to draw over a histogram.

The fit is a binned extended Poisson maximum-likelihood fit
(:class:`iminuit.cost.ExtendedBinnedNLL`), minimised by MIGRAD, errors from HESSE.  Its cost is
the Baker–Cousins likelihood χ² (2 × NLL relative to the saturated model, errordef 1, set
by the cost object), which is what ``chi2`` / ``chi2_ndf`` report, with
ndf = bins fitted − 3.  Least squares on counts is biased at low counts; this is not.

Units follow the histogrammed quantity (mV·µs for areas).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import ndtr

from ratag_xr.errors import ConfigError

#: Fewer entries than this in the fitted bins: no fit is attempted.
MIN_ENTRIES = 20
#: Fewer non-empty fitted bins than this: three parameters cannot be determined.
MIN_FILLED_BINS = 3
#: A fitted sigma below this fraction of a bin width is not resolved by the histogram.
MIN_SIGMA_BINS = 0.25
#: ci95 = Z95 × standard error of the centre.
Z95 = 1.96
#: Fit window half-width in robust standard deviations around the robust centre.
CORE_SIGMAS = 5.0
#: Scale factor turning a median absolute deviation into a Gaussian sigma.
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class GaussFit:
    """Result of :func:`fit_gaussian_hist`; values in the units of the histogrammed axis.

    ``mean_err`` / ``sigma_err`` / ``amplitude_err`` are 1σ (HESSE); ``ci95`` = 1.96 ×
    ``mean_err``.  ``n_entries`` counts the entries in the fitted bins, ``n_total`` those of
    the whole histogram (excluded bins included).  When the minimiser ran but a check failed
    the fitted numbers are kept for diagnosis and ``success`` is False; when no fit was
    attempted they are NaN.
    """

    mean: float
    sigma: float
    amplitude: float
    mean_err: float
    sigma_err: float
    amplitude_err: float
    ci95: float
    chi2: float
    chi2_ndf: float
    ndf: int
    n_entries: float
    n_total: float
    success: bool
    reason: str

    def to_dict(self) -> dict:
        """Plain-Python dict (JSON-ready)."""
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in asdict(self).items()}

    def counts_per_bin(self, x, bin_width: float):
        """Fitted curve in counts per bin of width ``bin_width`` at positions ``x`` (to plot)."""
        z = (np.asarray(x, dtype=float) - self.mean) / self.sigma
        return self.amplitude * bin_width * np.exp(-0.5 * z * z) / (np.sqrt(2 * np.pi) * self.sigma)


def _failed(reason: str, *, n_entries: float, n_total: float, ndf: int = 0) -> GaussFit:
    nan = float("nan")
    return GaussFit(
        mean=nan, sigma=nan, amplitude=nan, mean_err=nan, sigma_err=nan, amplitude_err=nan,
        ci95=nan, chi2=nan, chi2_ndf=nan, ndf=ndf, n_entries=float(n_entries),
        n_total=float(n_total), success=False, reason=reason,
    )  # fmt: skip


def histogram(values, bin_cuts=(0.0, 4.0), nbins: int = 100):
    """Counts and edges of ``values`` in ``nbins`` equal bins over ``bin_cuts``.

    NaN and values outside ``bin_cuts`` are ignored (the last bin includes its right edge,
    as in :func:`numpy.histogram`).  Every chunk histogrammed with the same ``bin_cuts`` and
    ``nbins`` gets identical edges, so chunk counts can simply be summed.
    """
    lo, hi = (float(c) for c in bin_cuts)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ConfigError(f"bin_cuts must be finite with low < high, got {tuple(bin_cuts)}")
    if int(nbins) < 1:
        raise ConfigError(f"nbins must be >= 1, got {nbins}")
    v = np.asarray(values, dtype=float).ravel()
    return np.histogram(v[np.isfinite(v)], bins=int(nbins), range=(lo, hi))


def robust_range_hist(counts, edges, k: float = 5.0, floor: float | None = 0.0):
    """Automatic histogram range ``median ± k × 1.4826 × MAD`` from a (summed) histogram.

    Median and MAD come from the cumulative counts (linear inside a bin), so the result is
    exact up to the bin width; a chunked caller histograms every chunk finely over a wide
    fixed range, sums the counts and calls this.  The lower end is clipped at ``floor``
    (areas are not negative; ``None`` disables it); a zero MAD falls back to the standard
    deviation.  Returns ``None`` for an empty histogram.
    """
    counts, edges = check_hist(counts, edges)
    if counts.sum() <= 0:
        return None
    centre = hist_quantile(counts, edges, 0.5)
    # MAD: the median of |x − centre| from the bin centres, weighted by the counts.
    mids = 0.5 * (edges[:-1] + edges[1:])
    dev = np.abs(mids - centre)
    order = np.argsort(dev)
    cum = np.cumsum(counts[order])
    mad = float(dev[order][np.searchsorted(cum, 0.5 * cum[-1])])
    scale = MAD_TO_SIGMA * mad
    if scale == 0.0:
        var = np.sum(counts * (mids - centre) ** 2) / counts.sum()
        scale = float(np.sqrt(var))
    return _range_around(centre, scale, k, floor)


def _range_around(centre: float, scale: float, k: float, floor: float | None):
    half = k * scale if scale > 0 else 0.5
    lo, hi = centre - half, centre + half
    if floor is not None:
        lo = max(lo, float(floor))
    if hi <= lo:  # everything below the floor: keep a non-empty range
        hi = lo + 1.0
    return lo, hi


def hist_quantile(counts, edges, q: float) -> float:
    """The ``q`` quantile (0 < q < 1) of a histogram, linear inside the bin that holds it."""
    counts, edges = check_hist(counts, edges)
    cdf = np.concatenate([[0.0], np.cumsum(counts, dtype=float)])
    target = q * cdf[-1]
    # First edge whose cumulative count reaches the target; the bin before it holds it.
    i = int(np.searchsorted(cdf, target, side="left"))
    i = min(max(i, 1), counts.size)
    in_bin = counts[i - 1]
    frac = (target - cdf[i - 1]) / in_bin if in_bin > 0 else 0.5
    return float(edges[i - 1] + frac * (edges[i] - edges[i - 1]))


def check_hist(counts, edges):
    counts = np.asarray(counts, dtype=float).ravel()
    edges = np.asarray(edges, dtype=float).ravel()
    if edges.size != counts.size + 1:
        raise ConfigError(f"need len(edges) == len(counts) + 1, got {edges.size} and {counts.size}")
    if np.any(np.diff(edges) <= 0):
        raise ConfigError("histogram edges must be strictly increasing")
    return counts, edges


def _scaled_cdf(xe, amplitude, mean, sigma):
    # Expected entries below each edge; ExtendedBinnedNLL differences it per bin.
    return amplitude * ndtr((xe - mean) / sigma)


def fit_gaussian_hist(counts, edges, *, exclude_index: int = 1, start=None,
                      core_sigmas: float | None = CORE_SIGMAS) -> GaussFit:
    """Binned Poisson ML fit of a Gaussian to ``counts`` (one per bin between ``edges``).

    The first ``exclude_index`` bins (the pedestal of zero-area frames) are left out, and
    so are bins farther than ``core_sigmas`` robust standard deviations from the robust
    centre (pile-up, saturated frames): a Gaussian cannot describe such outliers, and a
    single entry 9σ out dominates a Poisson likelihood and its curvature (the errors
    collapse).  ``None`` fits every bin after ``exclude_index``.
    ``start`` optionally overrides the starting values: a mapping with any of
    ``amplitude``, ``mean``, ``sigma``.  By default they come from robust statistics of the
    fitted bins (median and IQR/1.349 from the cumulative counts, the entry count).

    Never raises for bad data: too few entries (< :data:`MIN_ENTRIES`), entries in fewer
    than :data:`MIN_FILLED_BINS` bins, a non-converged fit, a failed HESSE, a sigma below
    :data:`MIN_SIGMA_BINS` of a bin width or above 10× the fitted range, or a mean outside
    the fitted range give ``success=False`` with a reason.
    Raises :class:`ConfigError` for malformed input (shapes, ``exclude_index``, ``start``).
    """
    counts, edges = check_hist(counts, edges)
    if np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise ConfigError("histogram counts must be finite and >= 0")
    exclude_index = int(exclude_index)
    if not 0 <= exclude_index < counts.size:
        raise ConfigError(f"exclude_index must be in [0, {counts.size}), got {exclude_index}")
    n_total = float(counts.sum())
    n_fit = counts[exclude_index:]
    e_fit = edges[exclude_index:]
    n_entries = float(n_fit.sum())
    ndf = n_fit.size - 3

    if n_entries < MIN_ENTRIES:
        return _failed(
            f"only {n_entries:g} entries in the fitted bins, need >= {MIN_ENTRIES}",
            n_entries=n_entries, n_total=n_total, ndf=ndf,
        )  # fmt: skip
    n_filled = int(np.count_nonzero(n_fit))
    if n_filled < MIN_FILLED_BINS:
        return _failed(
            f"entries in only {n_filled} fitted bin(s), need >= {MIN_FILLED_BINS}",
            n_entries=n_entries, n_total=n_total, ndf=ndf,
        )  # fmt: skip

    p = _start_values(n_fit, e_fit)
    unknown = set(start or {}) - set(p)
    if unknown:
        raise ConfigError(f"unknown start parameter(s) {sorted(unknown)}; use {sorted(p)}")
    p.update(start or {})
    if core_sigmas is not None:
        lo, hi = p["mean"] - core_sigmas * p["sigma"], p["mean"] + core_sigmas * p["sigma"]
        keep = np.flatnonzero((e_fit[1:] > lo) & (e_fit[:-1] < hi))
        n_fit, e_fit = n_fit[keep[0]: keep[-1] + 1], e_fit[keep[0]: keep[-1] + 2]
        n_entries = float(n_fit.sum())
        ndf = n_fit.size - 3
        if n_entries < MIN_ENTRIES or np.count_nonzero(n_fit) < MIN_FILLED_BINS:
            return _failed(
                f"only {n_entries:g} entries in {np.count_nonzero(n_fit)} bin(s) within "
                f"{core_sigmas:g} robust sigma of the centre {p['mean']:.4g}",
                n_entries=n_entries, n_total=n_total, ndf=ndf,
            )  # fmt: skip
        p["amplitude"] = n_entries
    width = float(e_fit[-1] - e_fit[0])
    min_bin = float(np.min(np.diff(e_fit)))
    # imported here: iminuit.cost imports numba, which a figure helper (it draws the
    # models, never fits them) has no use for
    from iminuit import Minuit
    from iminuit.cost import ExtendedBinnedNLL

    cost = ExtendedBinnedNLL(n_fit, e_fit, _scaled_cdf)
    m = Minuit(cost, amplitude=p["amplitude"], mean=p["mean"], sigma=p["sigma"])
    sigma_floor = 1e-3 * min_bin
    m.limits["sigma"] = (sigma_floor, None)
    m.limits["amplitude"] = (0.0, None)
    try:
        m.migrad()
        if m.valid:
            m.hesse()
    except RuntimeError as exc:  # Minuit's own failures; bad input was refused above
        return _failed(f"minimiser error: {exc}", n_entries=n_entries, n_total=n_total, ndf=ndf)

    v, e = m.values, m.errors
    chi2 = float(m.fval)
    result = dict(
        mean=float(v["mean"]), sigma=float(v["sigma"]), amplitude=float(v["amplitude"]),
        mean_err=float(e["mean"]), sigma_err=float(e["sigma"]),
        amplitude_err=float(e["amplitude"]), ci95=Z95 * float(e["mean"]), chi2=chi2,
        chi2_ndf=chi2 / ndf if ndf > 0 else float("nan"), ndf=ndf, n_entries=n_entries,
        n_total=n_total,
    )  # fmt: skip

    reason = ""
    if not m.valid:
        reason = "fit did not converge (MIGRAD minimum not valid)"
    elif not (np.isfinite(result["mean_err"]) and result["mean_err"] > 0):
        reason = "HESSE gave no finite error of the mean"
    elif result["sigma"] < MIN_SIGMA_BINS * min_bin:
        reason = (
            f"fitted sigma {result['sigma']:.3g} is below {MIN_SIGMA_BINS} bin width: "
            "peak not resolved by the binning"
        )
    elif not e_fit[0] <= result["mean"] <= e_fit[-1]:
        reason = (
            f"fitted mean {result['mean']:.4g} outside the fitted range "
            f"[{e_fit[0]:g}, {e_fit[-1]:g}]"
        )
    elif result["sigma"] > 10 * width:
        reason = f"fitted sigma {result['sigma']:.4g} exceeds 10x the fitted range: flat spectrum"
    return GaussFit(**result, success=not reason, reason=reason)


def _start_values(n_fit, e_fit) -> dict:
    mean = hist_quantile(n_fit, e_fit, 0.5)
    iqr = hist_quantile(n_fit, e_fit, 0.75) - hist_quantile(n_fit, e_fit, 0.25)
    sigma = max(iqr / 1.349, float(np.max(np.diff(e_fit))))
    return {"amplitude": float(n_fit.sum()), "mean": mean, "sigma": sigma}
