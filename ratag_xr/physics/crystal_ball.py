"""Crystal Ball shapes and binned fits (ALGORITHMS.md §13 alpha peaks, §15 S2 areas).

Shapes (unit height at ``x0``; ``z = (x − x0) / sigma``, ``b = |beta|``):

* left tail (§13, alpha peaks): ``exp(−z²/2)`` for ``z > −b``, else
  ``(m/b)^m · exp(−b²/2) · (m/b − b − z)^(−m)``;
* right tail (§15, S2 areas): the mirror image, the power-law tail at ``z >= b``.

Only ``|beta|`` enters the shape; the fit bounds keep ``beta`` on one side of zero
(negative for the left tail, positive for the right tail, as the group's tables have it).

Integral: the antiderivative :func:`crystal_ball_cdf` is exact, so a binned fit integrates
every bin (as :mod:`ratag_xr.physics.fit` does for the Gaussian).  It is taken from the
junction ``z = −b``:  core ``√(2π)·(Φ(z) − Φ(−b))``; tail ``−e^{−b²/2}·(m/b)·L·φ((1 − m)L)``
with ``L = log1p(−(z + b)·b/m)`` and ``φ(u) = expm1(u)/u``, smooth through ``m = 1``,
where the tail stops being integrable to −∞ (a fit window is finite, so that is allowed).

Fits: binned extended Poisson likelihood (:class:`iminuit.cost.ExtendedBinnedNLL`),
MIGRAD then HESSE, ``chi2`` the Baker–Cousins likelihood χ² (the cost value), as in
:mod:`ratag_xr.physics.fit`.  ``amplitude`` is the peak height in entries per unit of
``x`` (per SCA unit, or per mV·µs): the curve over a histogram is
``amplitude × bin width × shape``, so "start N = max count" is the highest bin count
over its width.  Units of ``x0``, ``sigma``, window and edges: those of the histogrammed
quantity (SCA-scale MeV for alpha energies, mV·µs for S2 areas); ``beta``, ``m`` are
dimensionless.  Bad data never raise: a failed fit has ``success=False`` and a reason.
Malformed input (shapes, unknown parameter names, inverted limits) raises
:class:`ConfigError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.special import ndtr, ndtri

from ratag_xr.errors import ConfigError
from ratag_xr.physics.fit import (
    MIN_ENTRIES,
    MIN_SIGMA_BINS,
    Z95,
    GaussFit,
    check_hist,
    fit_gaussian_hist,
    hist_quantile,
)

TAILS = ("left", "right")
SQRT_2PI = float(np.sqrt(2.0 * np.pi))
SHAPE_PARAMS = ("amplitude", "x0", "sigma", "beta", "m")
CONTINUUM_PARAMS = ("cont_a", "cont_lambda")
#: §13 start values (the alpha peaks); ``amplitude`` and ``x0`` come from the data.
ALPHA_START = {"sigma": 0.15, "beta": -1.5, "m": 2.0, "cont_lambda": 1.0}
#: §13 bounds (``x0`` defaults to the fit window, ``amplitude``/``cont_a`` to >= 0).
ALPHA_LIMITS = {"beta": (-5.0, -0.1), "m": (1.0, 10.0), "sigma": (0.01, 0.3),
                "cont_lambda": (0.1, 5.0)}
#: MIGRAD + HESSE rounds before a fit whose HESSE invalidates the minimum is given up.
MIGRAD_ROUNDS = 3
#: A parameter within this fraction of its allowed range from a bound is "at the limit".
AT_LIMIT_FRACTION = 1e-4


# ---------------------------------------------------------------- shapes


def _check_tail(tail: str) -> bool:
    if tail not in TAILS:
        raise ConfigError(f"tail must be one of {TAILS}, got {tail!r}")
    return tail == "right"


def _left_shape(z, b, m):
    core = z > -b
    out = np.empty_like(z)
    out[core] = np.exp(-0.5 * z[core] ** 2)
    zt = z[~core]
    # (m/b)^m e^{-b²/2} (m/b - b - z)^{-m} = e^{-b²/2} (1 - (z + b) b/m)^{-m}, base >= 1
    out[~core] = np.exp(-0.5 * b * b - m * np.log1p(-(zt + b) * b / m))
    return out


def _left_antiderivative(z, b, m):
    core = z > -b
    out = np.empty_like(z)
    out[core] = SQRT_2PI * (ndtr(z[core]) - ndtr(-b))
    log_r = np.log1p(-(z[~core] + b) * b / m)  # >= 0
    u = (1.0 - m) * log_r
    with np.errstate(invalid="ignore", divide="ignore"):
        phi = np.where(u == 0.0, 1.0, np.expm1(u) / np.where(u == 0.0, 1.0, u))
    out[~core] = -np.exp(-0.5 * b * b) * (m / b) * log_r * phi
    return out


def crystal_ball(x, x0, sigma, beta, m, tail: str = "left"):
    """Unit-height Crystal Ball shape at ``x`` (``x``, ``x0``, ``sigma`` in one unit)."""
    right = _check_tail(tail)
    z = (np.asarray(x, dtype=float) - x0) / sigma
    z = np.atleast_1d(-z if right else z)
    out = _left_shape(z, abs(float(beta)), float(m))
    return out.reshape(np.shape(x)) if np.ndim(x) else float(out[0])


def crystal_ball_cdf(x, x0, sigma, beta, m, tail: str = "left"):
    """Integral of the unit-height shape from the tail/core junction to ``x`` (units of x).

    ``∫ crystal_ball dx`` between two points is the difference of this function there;
    it is finite for every ``m`` (also ``m <= 1``, whose tail has no finite total).
    """
    right = _check_tail(tail)
    z = np.atleast_1d((np.asarray(x, dtype=float) - x0) / sigma)
    b, mm = abs(float(beta)), float(m)
    out = -sigma * _left_antiderivative(-z, b, mm) if right else \
        sigma * _left_antiderivative(z, b, mm)
    return out.reshape(np.shape(x)) if np.ndim(x) else float(out[0])


def crystal_ball_integral(x0, sigma, beta, m) -> float:
    """Total integral of the unit-height shape (units of x); ``inf`` for ``m <= 1``."""
    b, mm = abs(float(beta)), float(m)
    if mm <= 1.0:
        return float("inf")
    return float(sigma * (np.exp(-0.5 * b * b) * (mm / b) / (mm - 1.0) + SQRT_2PI * ndtr(b)))


def sample_crystal_ball(rng, n: int, x0, sigma, beta, m, tail: str = "left"):
    """``n`` values drawn from the Crystal Ball by inverting its CDF (needs ``m > 1``)."""
    right = _check_tail(tail)
    b, mm = abs(float(beta)), float(m)
    if not mm > 1.0:
        raise ConfigError(f"a Crystal Ball with m = {m} <= 1 has no finite integral")
    t = np.exp(-0.5 * b * b) * (mm / b) / (mm - 1.0)  # tail mass, z units
    total = t + SQRT_2PI * ndtr(b)
    u = rng.uniform(0.0, total, int(n))
    z = np.empty_like(u)
    tail_part = u < t
    r = (u[tail_part] / t) ** (1.0 / (1.0 - mm))  # r = 1 - (z + b) b / m >= 1
    z[tail_part] = -b - (r - 1.0) * mm / b
    upper = (total - u[~tail_part]) / SQRT_2PI  # = 1 - Φ(z): accurate far up the core
    z[~tail_part] = -ndtri(upper)
    return x0 + sigma * (-z if right else z)


# ---------------------------------------------------------------- fit result


@dataclass(frozen=True)
class CrystalBallFit:
    """Result of :func:`fit_crystal_ball_hist`; values in the units of the histogrammed axis.

    ``x0``, ``sigma`` (x units), ``beta``, ``m``, ``amplitude`` (peak height, entries per
    x unit), ``continuum_a`` (entries per x unit at ``continuum_origin``) and
    ``continuum_lambda`` (per x unit; both NaN without a continuum); ``*_err`` 1σ (HESSE);
    ``ci95`` = 1.96 × ``x0_err``; ``fit_range`` the edges of the fitted bins;
    ``n_entries`` the entries in them; ``n_signal`` the Crystal Ball's entries in the fit
    range; ``at_limit`` the parameters that ended at a bound (their errors are not
    reliable); ``held`` the tail parameters the window could not determine, kept at their
    start values (errors NaN; x0 and sigma are then conditional on them).  When the
    minimiser ran but a check failed, the numbers are kept for diagnosis and ``success``
    is False; when no fit was attempted they are NaN.
    """

    tail: str
    x0: float
    sigma: float
    beta: float
    m: float
    amplitude: float
    x0_err: float
    sigma_err: float
    beta_err: float
    m_err: float
    amplitude_err: float
    continuum_a: float
    continuum_lambda: float
    continuum_a_err: float
    continuum_lambda_err: float
    continuum_origin: float
    ci95: float
    chi2: float
    chi2_ndf: float
    ndf: int
    n_entries: float
    n_signal: float
    fit_range: tuple[float, float]
    success: bool
    reason: str
    at_limit: tuple[str, ...] = field(default=())
    held: tuple[str, ...] = field(default=())

    @property
    def has_continuum(self) -> bool:
        return bool(np.isfinite(self.continuum_a))

    def to_dict(self) -> dict:
        """Plain-Python dict (JSON-ready)."""
        out = {}
        for k, v in asdict(self).items():
            out[k] = list(v) if isinstance(v, tuple) else \
                (v.item() if isinstance(v, np.generic) else v)
        return out

    def signal_density(self, x):
        """The Crystal Ball in entries per x unit at ``x``."""
        return self.amplitude * crystal_ball(x, self.x0, self.sigma, self.beta, self.m,
                                             self.tail)

    def continuum_density(self, x):
        """The continuum in entries per x unit at ``x`` (0 without a continuum)."""
        x = np.asarray(x, dtype=float)
        if not self.has_continuum:
            return np.zeros_like(x)
        return self.continuum_a * np.exp(-self.continuum_lambda * (x - self.continuum_origin))

    def counts_per_bin(self, x, bin_width: float):
        """Fitted curve (signal + continuum) in counts per bin of ``bin_width`` (to plot)."""
        return bin_width * (self.signal_density(x) + self.continuum_density(x))


def _nan_fit(tail, reason, *, n_entries, fit_range, ndf=0, origin=float("nan")):
    nan = float("nan")
    return CrystalBallFit(
        tail=tail, x0=nan, sigma=nan, beta=nan, m=nan, amplitude=nan, x0_err=nan,
        sigma_err=nan, beta_err=nan, m_err=nan, amplitude_err=nan, continuum_a=nan,
        continuum_lambda=nan, continuum_a_err=nan, continuum_lambda_err=nan,
        continuum_origin=origin, ci95=nan, chi2=nan, chi2_ndf=nan, ndf=ndf,
        n_entries=float(n_entries), n_signal=nan, fit_range=fit_range, success=False,
        reason=reason,
    )  # fmt: skip


# ---------------------------------------------------------------- fits


def _select_window(counts, edges, window):
    """Bins whose centres lie in ``window`` (inclusive), as (counts, edges)."""
    if window is None:
        return counts, edges
    lo, hi = (float(w) for w in window)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ConfigError(f"fit window must be finite with low < high, got {tuple(window)}")
    centres = 0.5 * (edges[:-1] + edges[1:])
    keep = np.flatnonzero((centres >= lo) & (centres <= hi))
    if keep.size == 0:
        return counts[:0], edges[:1]
    return counts[keep[0]:keep[-1] + 1], edges[keep[0]:keep[-1] + 2]


def _check_limits(limits: Mapping, names) -> dict:
    out = {}
    for name, lim in (limits or {}).items():
        if name not in names:
            raise ConfigError(f"unknown limit parameter {name!r}; use {sorted(names)}")
        lo, hi = (None if v is None else float(v) for v in lim)
        if lo is not None and hi is not None and not lo < hi:
            raise ConfigError(f"limits of {name} must have low < high, got {tuple(lim)}")
        out[name] = (lo, hi)
    return out


def _model(right: bool, continuum: bool, origin: float):
    sign = -1.0 if right else 1.0

    def signal(xe, amplitude, x0, sigma, beta, m):
        z = sign * (xe - x0) / sigma
        return sign * amplitude * sigma * _left_antiderivative(z, abs(beta), m)

    if not continuum:
        return signal

    def with_continuum(xe, amplitude, x0, sigma, beta, m, cont_a, cont_lambda):
        tail = -cont_a / cont_lambda * np.exp(-cont_lambda * (xe - origin))
        return signal(xe, amplitude, x0, sigma, beta, m) + tail

    return with_continuum


def fit_crystal_ball_hist(counts, edges, *, tail: str = "left", start=None, limits=None,
                          continuum: bool = False, window=None,
                          continuum_origin: float | None = None) -> CrystalBallFit:
    """Binned Poisson ML fit of a Crystal Ball (plus optional exponential continuum).

    ``counts``/``edges``: a histogram (any x unit, e.g. SCA-scale MeV or mV·µs).
    ``window``: (low, high) in x units; bins whose centres lie inside are fitted (None:
    all bins).  ``tail``: "left" (§13) or "right" (§15).  ``continuum``: add the Po212
    β-continuum ``cont_a · exp(−cont_lambda · (x − continuum_origin))``, origin = the
    window's low end by default (entries per x unit; ``cont_lambda`` per x unit).

    ``start`` / ``limits``: mappings overriding any of ``amplitude``, ``x0``, ``sigma``,
    ``beta``, ``m`` (and ``cont_a``, ``cont_lambda``); a limit is ``(low, high)``, either
    may be None.  Defaults are §13's: sigma 0.15 in [0.01, 0.3], beta −1.5 in [−5, −0.1]
    (mirrored to +1.5 in [0.1, 5] for the right tail), m 2 in [1, 10], cont_lambda 1 in
    [0.1, 5]; x0 starts at the highest bin and is bound to the fitted range; amplitude
    starts at the highest count per bin width, >= 0.  For S2 areas pass data-driven
    sigma bounds (mV·µs), as :func:`fit_s2_two_stage` does.

    Procedure: MIGRAD with the tail (beta, m) held at its start, then everything free
    (MIGRAD + HESSE, repeated while HESSE finds the minimum unconverged); if the window
    does not determine the tail (HESSE fails), ``m`` and then ``beta`` are held at their
    start values and listed in ``held``.

    Fails (``success=False``, never raises) with fewer than 20 entries, fewer filled bins
    than parameters, a non-converged MIGRAD, no finite HESSE error of x0, x0 at the edge
    of its range (no peak inside), or sigma below a quarter bin width.
    """
    right = _check_tail(tail)
    counts, edges = check_hist(counts, edges)
    if np.any(counts < 0) or not np.all(np.isfinite(counts)):
        raise ConfigError("histogram counts must be finite and >= 0")
    names = SHAPE_PARAMS + (CONTINUUM_PARAMS if continuum else ())
    unknown = set(start or {}) - set(names)
    if unknown:
        raise ConfigError(f"unknown start parameter(s) {sorted(unknown)}; use {sorted(names)}")
    user_limits = _check_limits(limits, names)
    n_fit, e_fit = _select_window(counts, edges, window)
    origin = float(window[0] if window is not None else edges[0]) \
        if continuum_origin is None else float(continuum_origin)
    origin = origin if continuum else float("nan")
    fit_range = (float(e_fit[0]), float(e_fit[-1]))
    n_entries = float(n_fit.sum())
    ndf = n_fit.size - len(names)
    if n_entries < MIN_ENTRIES:
        return _nan_fit(tail, f"only {n_entries:g} entries in the fit window "
                        f"[{fit_range[0]:g}, {fit_range[1]:g}], need >= {MIN_ENTRIES}",
                        n_entries=n_entries, fit_range=fit_range, ndf=ndf, origin=origin)
    n_filled = int(np.count_nonzero(n_fit))
    if n_filled < len(names):
        return _nan_fit(tail, f"entries in only {n_filled} bin(s), need >= {len(names)} for "
                        f"{len(names)} parameters", n_entries=n_entries, fit_range=fit_range,
                        ndf=ndf, origin=origin)

    widths = np.diff(e_fit)
    centres = 0.5 * (e_fit[:-1] + e_fit[1:])
    density = n_fit / widths
    sign = 1.0 if right else -1.0
    lim = {"amplitude": (0.0, None), "x0": fit_range, "sigma": ALPHA_LIMITS["sigma"],
           "beta": tuple(sorted(sign * abs(v) for v in ALPHA_LIMITS["beta"])),
           "m": ALPHA_LIMITS["m"], "cont_a": (0.0, None),
           "cont_lambda": ALPHA_LIMITS["cont_lambda"]}
    lim.update(user_limits)
    p = {"amplitude": float(density.max()), "x0": float(centres[np.argmax(density)]),
         "sigma": ALPHA_START["sigma"], "beta": sign * abs(ALPHA_START["beta"]),
         "m": ALPHA_START["m"], "cont_lambda": ALPHA_START["cont_lambda"],
         "cont_a": max(float(np.mean(density[:3])), 1e-3 * float(density.max()))}
    p.update({k: float(v) for k, v in (start or {}).items()})
    p = {k: _clip(p[k], lim[k]) for k in names}  # a start outside its bounds: the bound

    # imported here: iminuit.cost imports numba, which a figure helper (it draws the
    # models, never fits them) has no use for
    from iminuit import Minuit
    from iminuit.cost import ExtendedBinnedNLL

    cost = ExtendedBinnedNLL(n_fit, e_fit, _model(right, continuum, origin))
    mn = Minuit(cost, **p)
    for k in names:
        mn.limits[k] = lim[k]
    held: tuple[str, ...] = ()
    try:
        with np.errstate(all="ignore"):
            # the core first, with the tail held at its start: from §13's sigma start (up
            # to ~2x the true width) a free tail can run to beta = -5, where m has no
            # effect in the window and MIGRAD stalls in that flat direction
            mn.fixed["beta"] = mn.fixed["m"] = True
            mn.migrad()
            core = {k: float(mn.values[k]) for k in names}
            # then the tail free; if the window hardly holds any tail (a narrow window on
            # the tail side, as Ra224's in §13), its power m and then beta are flat
            # directions and HESSE fails: hold them at their start values instead
            for held in ((), ("m",), ("beta", "m")):
                for k in names:
                    mn.values[k] = core[k]
                    mn.fixed[k] = k in held
                if _minimise(mn):
                    break
    except RuntimeError as exc:  # Minuit's own failures; bad input was refused above
        return _nan_fit(tail, f"minimiser error: {exc}", n_entries=n_entries,
                        fit_range=fit_range, ndf=ndf, origin=origin)
    ndf += len(held)

    v = mn.values
    nan = float("nan")
    e = {k: nan if k in held else float(mn.errors[k]) for k in names}
    at_limit = tuple(k for k in names if k not in held and _at_limit(v[k], lim[k]))
    chi2 = float(mn.fval)
    x0, sigma = float(v["x0"]), float(v["sigma"])
    cdf = crystal_ball_cdf(np.array(fit_range), x0, sigma, v["beta"], v["m"], tail)
    result = dict(
        tail=tail, x0=x0, sigma=sigma, beta=float(v["beta"]), m=float(v["m"]),
        amplitude=float(v["amplitude"]), x0_err=float(e["x0"]), sigma_err=float(e["sigma"]),
        beta_err=float(e["beta"]), m_err=float(e["m"]), amplitude_err=float(e["amplitude"]),
        continuum_a=float(v["cont_a"]) if continuum else nan,
        continuum_lambda=float(v["cont_lambda"]) if continuum else nan,
        continuum_a_err=float(e["cont_a"]) if continuum else nan,
        continuum_lambda_err=float(e["cont_lambda"]) if continuum else nan,
        continuum_origin=origin, ci95=Z95 * float(e["x0"]), chi2=chi2,
        chi2_ndf=chi2 / ndf if ndf > 0 else nan, ndf=ndf, n_entries=n_entries,
        n_signal=float(v["amplitude"]) * float(cdf[1] - cdf[0]), fit_range=fit_range,
        at_limit=at_limit, held=held,
    )  # fmt: skip

    reason = ""
    if not mn.valid:
        reason = "fit did not converge (MIGRAD minimum not valid)"
    elif not (np.isfinite(result["x0_err"]) and result["x0_err"] > 0):
        reason = "HESSE gave no finite error of x0"
    elif "x0" in at_limit:
        reason = (f"fitted x0 {x0:.4g} at the edge of its range [{lim['x0'][0]:g}, "
                  f"{lim['x0'][1]:g}]: no peak inside the fit window")
    elif sigma < MIN_SIGMA_BINS * float(widths.min()):
        reason = (f"fitted sigma {sigma:.3g} is below {MIN_SIGMA_BINS} bin width: "
                  "peak not resolved by the binning")
    return CrystalBallFit(**result, success=not reason, reason=reason)


def _minimise(mn) -> bool:
    """MIGRAD then HESSE; True if the minimum is valid.

    HESSE's exact second derivatives can show that MIGRAD's approximate ones stopped
    short along the (beta, m) valley (the EDM rises): go on from there, a few times.
    """
    for _ in range(MIGRAD_ROUNDS):
        mn.migrad()
        if not mn.valid:
            return False
        mn.hesse()
        if mn.valid:
            return True
    return False


def _clip(value, lim) -> float:
    lo, hi = lim
    return float(min(max(value, -np.inf if lo is None else lo), np.inf if hi is None else hi))


def _at_limit(value, lim) -> bool:
    lo, hi = lim
    span = (hi - lo) if lo is not None and hi is not None else max(abs(value), 1.0)
    tol = AT_LIMIT_FRACTION * span
    return bool((lo is not None and value - lo <= tol) or (hi is not None and hi - value <= tol))


# ---------------------------------------------------------------- two-stage S2 fit

#: §15 defaults of the two-stage S2 area fit (areas in mV·µs).
S2_BG_FRACTION = 0.077
S2_BG_THRESHOLD = 0.1  # mV·µs: entries at or below are the zero-area (pedestal) population
S2_BG_CUTOFF = 0.3  # mV·µs: the background Gaussian is fitted to the bins at or below
#: The Crystal Ball starts n_sigma background sigmas above the background mean.  Not 3:
#: ~0.1 % of the zero-area population lies above 3 sigma, where the Crystal Ball expects
#: nothing, and a Poisson likelihood widens the Crystal Ball towards those few entries
#: (+0.6 sigma_err in sigma in the tests); above 5 sigma lie < 1e-6 of them.
S2_N_SIGMA = 5.0


@dataclass(frozen=True)
class S2TwoStageFit:
    """Result of :func:`fit_s2_two_stage` (areas in mV·µs).

    ``signal``: the right-tailed Crystal Ball of the ion S2 areas (``x0`` = its centre,
    ``ci95`` = 1.96 × its standard error).  ``background``: the Gaussian of the zero-area
    population (None when the single-stage fit was used).  ``two_stage`` says which;
    ``bg_fraction_observed`` is the fraction of entries at or below ``bg_threshold``;
    ``signal_range`` the (low, high) area range the Crystal Ball was fitted in, ``lower``
    taken from the background fit (or ``bg_cutoff`` when that fit failed, with the reason
    in ``background.reason``).  ``success``/``reason`` are the Crystal Ball's.
    """

    signal: CrystalBallFit
    background: GaussFit | None
    two_stage: bool
    bg_fraction_observed: float
    signal_range: tuple[float, float]
    success: bool
    reason: str

    def background_per_bin(self, x, bin_width: float):
        """The background Gaussian in counts per bin of ``bin_width`` (0 if none or failed)."""
        x = np.asarray(x, dtype=float)
        if self.background is None or not self.background.success:
            return np.zeros_like(x)
        return self.background.counts_per_bin(x, bin_width)

    def counts_per_bin(self, x, bin_width: float):
        """Signal plus background in counts per bin of ``bin_width`` (to plot)."""
        return self.signal.counts_per_bin(x, bin_width) + self.background_per_bin(x, bin_width)

    def to_dict(self) -> dict:
        """Plain-Python dict (JSON-ready)."""
        return {"signal": self.signal.to_dict(),
                "background": None if self.background is None else self.background.to_dict(),
                "two_stage": self.two_stage,
                "bg_fraction_observed": float(self.bg_fraction_observed),
                "signal_range": list(self.signal_range), "success": self.success,
                "reason": self.reason}


def s2_start_and_limits(counts, edges) -> tuple[dict, dict]:
    """Data-driven start values and bounds of a right-tailed Crystal Ball on S2 areas.

    x0 starts at the median, sigma at IQR / 1.349 (at least a bin width), bounded to
    [a quarter bin width, the fitted range]; beta +1.5 in [0.1, 5], m 2 in [1, 10].
    """
    width = float(edges[-1] - edges[0])
    bin_w = float(np.min(np.diff(edges)))
    iqr = hist_quantile(counts, edges, 0.75) - hist_quantile(counts, edges, 0.25)
    sigma = max(iqr / 1.349, float(np.max(np.diff(edges))))
    start = {"x0": hist_quantile(counts, edges, 0.5), "sigma": min(sigma, 0.5 * width),
             "beta": 1.5, "m": 2.0}
    limits = {"sigma": (MIN_SIGMA_BINS * bin_w, width), "beta": (0.1, 5.0), "m": (1.0, 10.0)}
    return start, limits


def fit_s2_two_stage(counts, edges, *, bg_fraction: float = S2_BG_FRACTION,
                     bg_threshold: float = S2_BG_THRESHOLD, bg_cutoff: float = S2_BG_CUTOFF,
                     n_sigma: float = S2_N_SIGMA, upper_limit: float | None = None,
                     two_stage: bool = True, exclude_index: int = 0,
                     start=None, limits=None) -> S2TwoStageFit:
    """Right-tailed Crystal Ball fit of S2 areas with an optional background stage (§15).

    ``counts``/``edges``: histogram of ion S2 areas (mV·µs).  A bin is "at or below" a
    value when its centre is.  If ``two_stage`` and more than ``bg_fraction`` of the
    entries lie at or below ``bg_threshold`` (mV·µs), a Gaussian
    (:func:`~ratag_xr.physics.fit.fit_gaussian_hist`, no bin excluded) is first fitted to
    the bins at or below ``bg_cutoff`` (mV·µs), then the Crystal Ball to the bins with
    centres above ``μ_bg + n_sigma·σ_bg`` and below ``upper_limit`` (mV·µs; None = the last
    edge).  Otherwise one Crystal Ball fit over the bins below ``upper_limit`` after the
    first ``exclude_index`` bins (the §6 exclusion of the zero-area frames, which the
    background stage replaces).  If the background fit fails (e.g. all zero-area frames in
    one bin) the Crystal Ball starts above ``bg_cutoff`` instead.  ``start``/``limits``
    override :func:`s2_start_and_limits` (names as in :func:`fit_crystal_ball_hist`).
    """
    counts, edges = check_hist(counts, edges)
    for name, value in (("bg_fraction", bg_fraction), ("bg_threshold", bg_threshold),
                        ("bg_cutoff", bg_cutoff), ("n_sigma", n_sigma)):
        if not np.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value}")
    top = float(edges[-1]) if upper_limit is None else float(upper_limit)
    if not top > edges[0]:
        raise ConfigError(f"upper_limit {upper_limit} is not above the first edge {edges[0]}")
    centres = 0.5 * (edges[:-1] + edges[1:])
    total = float(counts.sum())
    low_fraction = float(counts[centres <= bg_threshold].sum() / total) if total > 0 else 0.0

    background = None
    lower = -np.inf
    if two_stage and low_fraction > bg_fraction:
        k = int(np.count_nonzero(centres <= bg_cutoff))
        if k == 0:
            raise ConfigError(f"bg_cutoff {bg_cutoff} lies below every bin centre")
        background = fit_gaussian_hist(counts[:k], edges[:k + 1], exclude_index=0)
        lower = (background.mean + n_sigma * background.sigma if background.success
                 else float(bg_cutoff))
    elif exclude_index:  # the bins from edges[exclude_index] on
        lower = float(edges[min(int(exclude_index), centres.size)])
    keep = (centres > lower) & (centres < top)
    signal_range = (float(max(lower, edges[0])), top)
    if not keep.any():
        fit = _nan_fit("right", f"no bins between {signal_range[0]:.4g} and {top:.4g} mV·µs",
                       n_entries=0, fit_range=signal_range)
        return S2TwoStageFit(fit, background, background is not None, low_fraction,
                             signal_range, False, fit.reason)
    idx = np.flatnonzero(keep)
    n_sig, e_sig = counts[idx[0]:idx[-1] + 1], edges[idx[0]:idx[-1] + 2]
    p, lim = (s2_start_and_limits(n_sig, e_sig) if n_sig.sum() > 0 else ({}, {}))
    p.update(start or {})
    lim.update(limits or {})
    fit = fit_crystal_ball_hist(n_sig, e_sig, tail="right", start=p, limits=lim)
    return S2TwoStageFit(fit, background, background is not None, low_fraction,
                         signal_range, fit.success, fit.reason)
