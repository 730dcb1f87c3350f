"""X-ray calibration and recombination (ALGORITHMS.md §8): hand numbers and Monte Carlo."""

import json

import numpy as np
import pytest

from ratag_xr.errors import ConfigError
from ratag_xr.physics.calibration import recombination, xray_calibration
from ratag_xr.physics.fit import GaussFit


def xray_fit(mean=8.0, sigma=1.5, ci95=0.1, success=True, reason=""):
    return GaussFit(
        mean=mean, sigma=sigma, amplitude=1000.0, mean_err=ci95 / 1.96, sigma_err=0.05,
        amplitude_err=30.0, ci95=ci95, chi2=50.0, chi2_ndf=1.0, ndf=50, n_entries=1000.0,
        n_total=1000.0, success=success, reason=reason,
    )  # fmt: skip


def test_calibration_by_hand():
    cal = xray_calibration(xray_fit())
    assert cal.success
    assert cal.N_e_exp == pytest.approx(559.0909090909, rel=1e-12)  # 12300 / 22
    assert cal.g_S2 == pytest.approx(176.0 / 12300.0, rel=1e-12)  # 8 × 22 / 12300
    assert cal.g_S2_err == pytest.approx(0.1 * 22.0 / 12300.0, rel=1e-12)
    assert (cal.A_x_mean, cal.sigma, cal.ci95) == (8.0, 1.5, 0.1)
    json.dumps(cal.to_dict())


def test_failed_xray_fit_gives_no_gain():
    cal = xray_calibration(xray_fit(success=False, reason="only 3 entries"))
    assert not cal.success and "only 3 entries" in cal.reason
    assert np.isnan(cal.g_S2) and cal.N_e_exp == pytest.approx(12300 / 22)


def test_recombination_by_hand_default_compares_with_the_xray():
    rec = recombination([4.0, 6.0], [0.2, 0.3], 8.0, 0.1, n_e_exp=12300 / 22)
    np.testing.assert_allclose(rec.r, [0.5, 0.25], rtol=1e-12)
    np.testing.assert_allclose(rec.norm_A_ion, [0.5, 0.75], rtol=1e-12)
    np.testing.assert_allclose(rec.N_e_meas, [4 * 12300 / 176, 6 * 12300 / 176], rtol=1e-12)
    np.testing.assert_allclose(rec.r_err_ion, [0.2 / 8, 0.3 / 8], rtol=1e-12)
    # r = 1 − A_ion/A_x: δr² = (δA_ion/A_x)² + (A_ion δA_x / A_x²)²
    expected = [np.sqrt(0.025**2 + (4 * 0.1 / 64) ** 2), np.sqrt(0.0375**2 + (6 * 0.1 / 64) ** 2)]
    np.testing.assert_allclose(rec.r_err, expected, rtol=1e-12)
    np.testing.assert_allclose(rec.norm_A_ion_err, rec.r_err, rtol=1e-12)
    assert rec.N_exp == pytest.approx(12300 / 22)
    d = rec.to_dict()
    json.dumps(d)
    assert d["r"] == pytest.approx([0.5, 0.25])


def test_recoil_energy_sets_the_expected_count():
    rec = recombination(4.0, 0.2, 8.0, 0.1, n_e_exp=12300 / 22, e_recoil_ev=96840.0)
    n_meas = 4.0 * 12300 / (22 * 8.0)
    assert rec.N_exp == pytest.approx(96840 / 22)
    assert float(rec.r) == pytest.approx(1 - n_meas / (96840 / 22), rel=1e-12)
    assert float(rec.r_err_ion) == pytest.approx(0.2 * 12300 / (22 * 8.0) / (96840 / 22))


def test_error_propagation_matches_monte_carlo():
    rng = np.random.default_rng(11)
    a_ion, a_ion_ci, a_x, a_x_ci = np.array([3.0, 5.0]), np.array([0.15, 0.2]), 8.0, 0.25
    rec = recombination(a_ion, a_ion_ci, a_x, a_x_ci, n_e_exp=12300 / 22, e_recoil_ev=50000.0)
    n = 200_000
    ion = a_ion[:, None] + a_ion_ci[:, None] / 1.96 * rng.standard_normal((2, n))
    x = a_x + a_x_ci / 1.96 * rng.standard_normal(n)
    n_meas = ion * (12300 / 22) / x
    r = 1 - n_meas / (50000 / 22)
    norm = ion / x
    np.testing.assert_allclose(1.96 * r.std(axis=1), rec.r_err, rtol=0.05)
    np.testing.assert_allclose(1.96 * n_meas.std(axis=1), rec.N_e_meas_err, rtol=0.05)
    np.testing.assert_allclose(1.96 * norm.std(axis=1), rec.norm_A_ion_err, rtol=0.05)
    # ion-only errors: the X-ray area held fixed
    r_ion = 1 - ion * (12300 / 22) / a_x / (50000 / 22)
    np.testing.assert_allclose(1.96 * r_ion.std(axis=1), rec.r_err_ion, rtol=0.05)
    assert np.all(rec.r_err > rec.r_err_ion)


def test_inconsistent_gain_is_a_config_error_and_nan_xray_propagates():
    with pytest.raises(ConfigError):
        recombination([4.0], [0.2], 8.0, 0.1, n_e_exp=559.09, g_s2=0.02)
    rec = recombination([4.0], [0.2], float("nan"), float("nan"), n_e_exp=559.09, g_s2=np.nan)
    assert np.all(np.isnan(rec.r)) and np.all(np.isnan(rec.r_err))
    with pytest.raises(ConfigError):
        xray_calibration(xray_fit(), w_ev=0.0)
