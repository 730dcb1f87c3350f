"""X-ray gain calibration and recombination of a run (ALGORITHMS.md §8).

Uncertainty convention: every ``*_err`` / ``ci95`` in and out of this module is a 95 %
half-width, 1.96 × the standard error.  Propagation is linear, so the factor 1.96 passes
through unchanged.  Areas in mV·µs, energies in eV, ``g_S2`` in mV·µs per electron.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ratag_xr.errors import ConfigError
from ratag_xr.physics.fit import GaussFit

E_XRAY_EV = 12300.0
W_EV = 22.0


@dataclass(frozen=True)
class XrayCalibration:
    """S2 gain from the fitted X-ray peak.

    ``A_x_mean``, ``sigma``, ``ci95`` (mV·µs) copy the fit; ``N_e_exp`` = E_xray / W
    electrons; ``g_S2`` = A_x_mean / N_e_exp and ``g_S2_err`` = ci95 / N_e_exp (mV·µs per
    electron, ci95).  A failed X-ray fit gives NaN areas and gain, ``success=False``.
    """

    A_x_mean: float
    sigma: float
    ci95: float
    N_e_exp: float
    g_S2: float
    g_S2_err: float
    success: bool
    reason: str

    def to_dict(self) -> dict:
        """Plain-Python dict (JSON-ready)."""
        return asdict(self)


def _check_energies(*named):
    for name, value in named:
        if not (np.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a positive number, got {value}")


def xray_calibration(
    xray_fit: GaussFit, *, e_xray_ev: float = E_XRAY_EV, w_ev: float = W_EV
) -> XrayCalibration:
    """Gain ``g_S2`` from the Gaussian fit of the combined X-ray areas (mV·µs)."""
    _check_energies(("e_xray_ev", e_xray_ev), ("w_ev", w_ev))
    n_e_exp = e_xray_ev / w_ev
    if not xray_fit.success:
        nan = float("nan")
        return XrayCalibration(
            A_x_mean=nan, sigma=nan, ci95=nan, N_e_exp=n_e_exp, g_S2=nan, g_S2_err=nan,
            success=False, reason=f"X-ray fit failed: {xray_fit.reason}",
        )  # fmt: skip
    return XrayCalibration(
        A_x_mean=xray_fit.mean, sigma=xray_fit.sigma, ci95=xray_fit.ci95, N_e_exp=n_e_exp,
        g_S2=xray_fit.mean / n_e_exp, g_S2_err=xray_fit.ci95 / n_e_exp, success=True, reason="",
    )  # fmt: skip


@dataclass(frozen=True)
class Recombination:
    """Per-set electron count, recombination fraction and normalised ion area.

    Arrays (one entry per set, or 0-d for scalar input).  For each quantity ``q``:
    ``q_err_ion`` propagates only the ion ci95 (the reference), ``q_err`` the ion and X-ray
    ci95 in quadrature (independent).  ``N_exp`` is the expected electron count compared to.
    """

    N_exp: float
    N_e_meas: np.ndarray
    N_e_meas_err_ion: np.ndarray
    N_e_meas_err: np.ndarray
    r: np.ndarray
    r_err_ion: np.ndarray
    r_err: np.ndarray
    norm_A_ion: np.ndarray
    norm_A_ion_err_ion: np.ndarray
    norm_A_ion_err: np.ndarray

    def to_dict(self) -> dict:
        """Dict of floats / lists of floats (JSON-ready)."""
        return {f.name: np.asarray(getattr(self, f.name)).tolist() for f in fields(self)}


def recombination(
    a_ion,
    a_ion_err,
    a_x: float,
    a_x_err: float,
    *,
    n_e_exp: float,
    g_s2: float | None = None,
    e_recoil_ev: float | None = None,
    w_ev: float = W_EV,
) -> Recombination:
    """Electrons, recombination fraction and A_ion / A_x per set.

    ``a_ion`` / ``a_ion_err``: ion S2 area mean and ci95 per set (mV·µs, arrays);
    ``a_x`` / ``a_x_err``: X-ray area mean and ci95; ``n_e_exp``: electrons expected from
    the X-ray (E_xray / W); ``g_s2`` defaults to ``a_x / n_e_exp`` (a different value is a
    configuration mistake).  A NaN X-ray area (failed calibration) gives NaN results.

        N_e_meas = A_ion / g_S2 = A_ion × n_e_exp / A_x
        r = 1 − N_e_meas / N_exp,   N_exp = E_R / W if ``e_recoil_ev`` else n_e_exp
        norm_A_ion = A_ion / A_x

    With the default N_exp, r = 1 − A_ion / A_x.  Partial derivatives used:
    ∂N/∂A_ion = 1 / g_S2, ∂N/∂A_x = −N / A_x; ∂norm/∂A_ion = 1 / A_x,
    ∂norm/∂A_x = −norm / A_x; δr = δN / N_exp (N_exp is exact: W and E_R carry no error).
    """
    _check_energies(("n_e_exp", n_e_exp), ("w_ev", w_ev))
    if g_s2 is None:
        g_s2 = a_x / n_e_exp
    elif np.isfinite(a_x) and not np.isclose(g_s2, a_x / n_e_exp, rtol=1e-9, atol=0.0):
        raise ConfigError(f"g_s2 = {g_s2} disagrees with a_x / n_e_exp = {a_x / n_e_exp}")
    if e_recoil_ev is None:
        n_exp = float(n_e_exp)
    else:
        _check_energies(("e_recoil_ev", e_recoil_ev))
        n_exp = e_recoil_ev / w_ev

    a_ion = np.asarray(a_ion, dtype=float)
    a_ion_err = np.asarray(a_ion_err, dtype=float)
    a_x, a_x_err, g_s2 = np.float64(a_x), np.float64(a_x_err), np.float64(g_s2)
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero X-ray area gives inf/NaN
        rel_x = np.abs(a_x_err / a_x)  # relative ci95 of the X-ray area, hence of g_S2
        n_meas = a_ion / g_s2
        n_err_ion = np.abs(a_ion_err / g_s2)
        n_err = np.hypot(n_err_ion, n_meas * rel_x)
        norm = a_ion / a_x
        norm_err_ion = np.abs(a_ion_err / a_x)
        norm_err = np.hypot(norm_err_ion, norm * rel_x)
    return Recombination(
        N_exp=n_exp,
        N_e_meas=n_meas, N_e_meas_err_ion=n_err_ion, N_e_meas_err=n_err,
        r=1.0 - n_meas / n_exp, r_err_ion=n_err_ion / n_exp, r_err=n_err / n_exp,
        norm_A_ion=norm, norm_A_ion_err_ion=norm_err_ion, norm_A_ion_err=norm_err,
    )  # fmt: skip
