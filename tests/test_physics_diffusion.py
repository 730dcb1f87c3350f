"""Longitudinal diffusion fit (ALGORITHMS.md §9)."""

import json

import numpy as np
import pytest

from ratag_xr.physics.diffusion import (
    diffusion_x_variables,
    fit_diffusion,
    sigma2_error_from_n,
)
from ratag_xr.physics.transport import set_transport

D_L, SIGMA0_SQ = 0.01, 0.5  # mm²/µs, µs²


@pytest.fixture(scope="module")
def sets():
    """Drift time and speed of 10 field settings of a 2 bar, 293 K, 1.4 cm drift gap run."""
    tr = set_transport(
        np.linspace(20.0, 1400.0, 10), 3000.0, pressure_bar=2.0, temperature_k=293.0,
        drift_gap_cm=1.4, el_gap_cm=0.8,
    )  # fmt: skip
    return tr["time_drift"], tr["speed_drift"]


def truth(t, v):
    return SIGMA0_SQ + 2 * D_L * t / v**2


def test_recovers_known_parameters_within_errors(sets):
    t, v = sets
    err = np.full(t.size, 0.02)
    pull_d, pull_0 = [], []
    for seed in range(200):
        y = truth(t, v) + err * np.random.default_rng(seed).standard_normal(t.size)
        f = fit_diffusion(t, v, y, err)
        assert f.success and f.n_sets == 10 and f.weighting == "errors"
        pull_d.append((f.D_L - D_L) / f.D_L_err)
        pull_0.append((f.sigma0_sq - SIGMA0_SQ) / f.sigma0_sq_err)
    # unscaled errors are honest when the input errors are
    for pull in (np.array(pull_d), np.array(pull_0)):
        assert np.mean(np.abs(pull) < 3) >= 0.98
        assert np.std(pull) == pytest.approx(1.0, abs=0.15)
        assert abs(np.mean(pull)) < 0.25


def test_weighted_fit_matches_polyfit_with_weights(sets):
    t, v = sets
    rng = np.random.default_rng(4)
    err = rng.uniform(0.01, 0.05, t.size)
    y = truth(t, v) + err * rng.standard_normal(t.size)
    f = fit_diffusion(t, v, y, err)
    # numpy weights multiply the residuals: w = 1/err
    p, cov = np.polyfit(t / v**2, y, 1, w=1 / err, cov="unscaled")
    assert f.D_L == pytest.approx(p[0] / 2, rel=1e-9)
    assert f.sigma0_sq == pytest.approx(p[1], rel=1e-9)
    assert f.D_L_err == pytest.approx(np.sqrt(cov[0, 0]) / 2, rel=1e-9)
    assert f.sigma0_sq_err == pytest.approx(np.sqrt(cov[1, 1]), rel=1e-9)
    chi2 = np.sum(((y - np.polyval(p, t / v**2)) / err) ** 2)
    assert f.chi2_ndf == pytest.approx(chi2 / 8, rel=1e-9)
    scaled = fit_diffusion(t, v, y, err, absolute_sigma=False)
    assert scaled.errors_scaled and scaled.D_L == f.D_L
    assert scaled.D_L_err == pytest.approx(f.D_L_err * np.sqrt(f.chi2_ndf), rel=1e-9)


def test_unweighted_fit_matches_polyfit(sets):
    t, v = sets
    y = truth(t, v) + 0.02 * np.random.default_rng(9).standard_normal(t.size)
    f = fit_diffusion(t, v, y)
    p, cov = np.polyfit(t / v**2, y, 1, cov=True)  # residual-scaled covariance
    assert f.weighting == "none" and f.errors_scaled and "unweighted" in f.reason
    assert f.D_L == pytest.approx(p[0] / 2, rel=1e-9)
    assert f.sigma0_sq == pytest.approx(p[1], rel=1e-9)
    assert f.D_L_err == pytest.approx(np.sqrt(cov[0, 0]) / 2, rel=1e-9)
    assert f.sigma0_sq_err == pytest.approx(np.sqrt(cov[1, 1]), rel=1e-9)
    assert np.isnan(f.chi2_ndf)


def test_errors_from_the_number_of_durations():
    assert sigma2_error_from_n(2.0, 9) == pytest.approx(1.0)  # 2 × sqrt(2/8)
    assert np.isnan(sigma2_error_from_n(2.0, 1))
    t, v = np.array([10.0, 12.0, 14.0]), np.ones(3)
    y = truth(t, v)
    f = fit_diffusion(t, v, y, n_values=[100, 200, 400])
    assert f.weighting == "n_values" and f.D_L == pytest.approx(D_L, rel=1e-9)
    w = 1 / sigma2_error_from_n(y, np.array([100, 200, 400])) ** 2
    x = t / v**2
    det = w.sum() * (w * x * x).sum() - (w * x).sum() ** 2
    assert f.D_L_err == pytest.approx(np.sqrt(w.sum() / det) / 2, rel=1e-9)


def test_too_few_sets_fail_and_nan_sets_are_dropped():
    f = fit_diffusion([14.0], [1.0], [0.6])
    assert not f.success and "only 1 usable set" in f.reason and np.isnan(f.D_L)
    f = fit_diffusion([14.0, 10.0, 12.0], [1.0, 1.0, np.nan], [0.78, 0.7, 0.74])
    assert f.success and f.n_sets == 2 and np.isnan(f.D_L_err)
    assert f.D_L == pytest.approx(0.01)  # slope (0.78 − 0.7) / (14 − 10) = 0.02
    f = fit_diffusion([14.0, 14.0], [1.0, 1.0], [0.6, 0.7])
    assert not f.success and "same" in f.reason
    json.dumps(f.to_dict())


def test_panel_x_variables_by_hand():
    d = diffusion_x_variables([14.0], [2.0], [100.0], pressure_bar=2.0, temperature_k=293.0)
    n_cm3 = 2.0e5 / (1.380649e-23 * 293.0) * 1e-6
    assert d["time_drift"][0] == 14.0
    assert d["t_over_v2"][0] == pytest.approx(3.5)
    assert d["field_per_pressure"][0] == pytest.approx(50.0)
    assert d["red_drift_field"][0] == pytest.approx(100.0 / n_cm3 * 1e17, rel=1e-12)
