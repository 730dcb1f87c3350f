"""Longitudinal diffusion from the spread of S2 durations (ALGORITHMS.md §9).

A cloud drifting a time t at speed v with longitudinal diffusion coefficient D_L arrives
with a time spread σ_t² = σ_0² + 2 D_L t / v², so a straight line of σ² (µs²) against
x = t / v² (µs³/mm²) has slope 2 D_L (mm²/µs) and intercept σ_0² (µs²).  Per set,
σ² = s2_duration_std².  The S2 *duration* spread measures longitudinal diffusion only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ratag_xr.errors import ConfigError
from ratag_xr.physics.transport import number_density, reduced_field


@dataclass(frozen=True)
class DiffusionFit:
    """Straight-line fit σ² = σ_0² + 2 D_L · t / v².

    ``D_L``, ``D_L_err`` in mm²/µs; ``sigma0_sq``, ``sigma0_sq_err`` in µs²; errors 1σ.
    ``weighting`` is ``"errors"`` (given σ² errors), ``"n_values"`` (errors estimated from
    the number of durations per set) or ``"none"`` (unweighted).  ``reason`` also carries
    notes on a successful fit (e.g. unweighted, errors not estimable).
    """

    D_L: float
    D_L_err: float
    sigma0_sq: float
    sigma0_sq_err: float
    chi2_ndf: float
    n_sets: int
    weighting: str
    errors_scaled: bool
    success: bool
    reason: str

    def to_dict(self) -> dict:
        """Plain-Python dict (JSON-ready)."""
        return asdict(self)


def diffusion_x_variables(
    time_drift, speed_drift, drift_field, *, pressure_bar: float, temperature_k: float
) -> dict:
    """The x variables of the diffusion panels.

    ``time_drift`` (µs), ``t_over_v2`` = time_drift / speed_drift² (µs³/mm²),
    ``field_per_pressure`` = drift_field / pressure (V·cm⁻¹·bar⁻¹, the reference's
    "reduced field"), ``red_drift_field`` = E/n (Td).
    """
    t = np.asarray(time_drift, dtype=float)
    v = np.asarray(speed_drift, dtype=float)
    e = np.asarray(drift_field, dtype=float)
    return {
        "time_drift": t,
        "t_over_v2": t / v**2,
        "field_per_pressure": e / pressure_bar,
        "red_drift_field": reduced_field(e, number_density(pressure_bar, temperature_k)),
    }


def sigma2_error_from_n(sigma2, n_values):
    """1σ error of a sample variance s² from n values of a Gaussian: s² √(2 / (n − 1)).

    NaN where n < 2.
    """
    s2 = np.asarray(sigma2, dtype=float)
    n = np.asarray(n_values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n >= 2, s2 * np.sqrt(2.0 / (n - 1.0)), np.nan)


def _failed(reason: str, n_sets: int, weighting: str) -> DiffusionFit:
    nan = float("nan")
    return DiffusionFit(
        D_L=nan, D_L_err=nan, sigma0_sq=nan, sigma0_sq_err=nan, chi2_ndf=nan, n_sets=n_sets,
        weighting=weighting, errors_scaled=False, success=False, reason=reason,
    )  # fmt: skip


def fit_diffusion(
    time_drift,
    speed_drift,
    sigma2,
    sigma2_err=None,
    *,
    n_values=None,
    absolute_sigma: bool = True,
) -> DiffusionFit:
    """Weighted straight-line fit of ``sigma2`` (µs²) against time_drift / speed_drift².

    Weights are 1 / σ²_err².  Without ``sigma2_err``, errors are estimated from
    ``n_values`` (durations used per set) as s² √(2 / (n − 1)) — a Gaussian-sample
    approximation that ignores the robust estimator's lower efficiency; without either,
    the fit is unweighted.  A set is used when t, v, σ² (and its error, if weighted) are
    finite and the error is > 0.

    Uncertainties: with errors (given or estimated) and ``absolute_sigma=True`` the
    covariance is (AᵀWA)⁻¹, unscaled: the errors are taken as true, and ``chi2_ndf`` shows
    whether they are.  With ``absolute_sigma=False``, and always for an unweighted fit, the
    covariance is scaled by χ²/ndf (the residual scatter), which needs >= 3 sets; with 2
    sets such a fit succeeds with NaN uncertainties.  ``chi2_ndf`` is NaN for an unweighted
    fit (no errors to compare with).  Fewer than 2 usable sets: failure.
    """
    t = np.asarray(time_drift, dtype=float).ravel()
    v = np.asarray(speed_drift, dtype=float).ravel()
    y = np.asarray(sigma2, dtype=float).ravel()
    if not t.size == v.size == y.size:
        raise ConfigError(
            f"time_drift, speed_drift, sigma2 need equal lengths, got {t.size}, {v.size}, {y.size}"
        )
    if sigma2_err is not None:
        err = np.broadcast_to(np.asarray(sigma2_err, dtype=float), y.shape)
        weighting = "errors"
    elif n_values is not None:
        err = sigma2_error_from_n(y, np.broadcast_to(np.asarray(n_values), y.shape))
        weighting = "n_values"
    else:
        err = np.ones_like(y)
        weighting = "none"

    with np.errstate(divide="ignore", invalid="ignore"):
        x = t / v**2
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(err) & (err > 0)
    n = int(ok.sum())
    if n < 2:
        return _failed(f"only {n} usable set(s) for the diffusion fit, need >= 2", n, weighting)
    x, y, w = x[ok], y[ok], 1.0 / err[ok] ** 2
    if np.ptp(x) == 0:
        return _failed(f"all {n} sets have the same t/v^2: slope undefined", n, weighting)

    # Weighted least squares via the normal equations of y = a + b x.
    s, sx, sy = w.sum(), (w * x).sum(), (w * y).sum()
    sxx, sxy = (w * x * x).sum(), (w * x * y).sum()
    det = s * sxx - sx * sx
    slope = (s * sxy - sx * sy) / det
    intercept = (sxx * sy - sx * sxy) / det
    var_slope, var_icpt = s / det, sxx / det
    ndf = n - 2
    chi2 = float((w * (y - intercept - slope * x) ** 2).sum())
    chi2_ndf = chi2 / ndf if ndf > 0 else float("nan")

    scale = weighting == "none" or not absolute_sigma
    notes = []
    if weighting == "none":
        notes.append("unweighted fit (no sigma2 errors or n_values given)")
    if scale:
        if ndf > 0:
            var_slope, var_icpt = var_slope * chi2_ndf, var_icpt * chi2_ndf
        else:
            var_slope = var_icpt = float("nan")
            notes.append("2 sets: no residuals to estimate the uncertainties")
    return DiffusionFit(
        D_L=float(slope / 2.0), D_L_err=float(np.sqrt(var_slope) / 2.0),
        sigma0_sq=float(intercept), sigma0_sq_err=float(np.sqrt(var_icpt)),
        chi2_ndf=float("nan") if weighting == "none" else float(chi2_ndf), n_sets=n,
        weighting=weighting, errors_scaled=scale,
        success=True, reason="; ".join(notes),
    )  # fmt: skip
