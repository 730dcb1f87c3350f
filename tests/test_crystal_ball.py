"""Crystal Ball shapes and fits (ALGORITHMS.md §13, §15): integrals, recovery, coverage.

Integrals are checked against ``scipy.integrate.quad`` of the shape written out from the
text of §13 in this file; samples come from the inverse-CDF sampler, itself checked
against binned ``quad`` probabilities.  Recovery tests fit many seeds and look at pulls
(fitted − true) / error and at the coverage of ci95.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.stats import chi2 as chi2_dist

from ratag_xr.errors import ConfigError
from ratag_xr.physics.crystal_ball import (
    S2_BG_CUTOFF,
    crystal_ball,
    crystal_ball_cdf,
    crystal_ball_integral,
    fit_crystal_ball_hist,
    fit_s2_two_stage,
    sample_crystal_ball,
)

SHAPES = [(-1.5, 2.0), (-0.3, 1.0), (-2.5, 10.0), (-1.0, 1.0 + 1e-9), (-4.9, 1.3),
          (-0.1, 5.0), (1.2, 3.0)]


def text_shape(x, x0, sigma, beta, m, tail):
    """§13 / §15 written out: left tail for z <= −|β|, right tail its mirror."""
    z = (x - x0) / sigma
    if tail == "right":
        z = -z
    b = abs(beta)
    if z > -b:
        return np.exp(-z * z / 2)
    return (m / b) ** m * np.exp(-b * b / 2) * (m / b - b - z) ** (-m)


def integral(x0, sigma, beta, m, tail, a, b):
    """∫_a^b of the text shape by adaptive quadrature, split at the junction."""
    junction = x0 + (-1 if tail == "left" else 1) * abs(beta) * sigma
    parts = [(a, junction), (junction, b)] if a < junction < b else [(a, b)]
    return sum(quad(lambda x: text_shape(x, x0, sigma, beta, m, tail), lo, hi,
                    epsabs=1e-14, epsrel=1e-12, limit=200)[0] for lo, hi in parts)


def pulls(fits, truth, names):
    return np.array([[(getattr(f, k) - truth[k]) / getattr(f, f"{k}_err") for k in names]
                     for f in fits])


def coverage(fits, x0):
    return np.mean([abs(f.x0 - x0) <= f.ci95 for f in fits])


# ---------------------------------------------------------------- shapes and integrals


@pytest.mark.parametrize("tail", ["left", "right"])
@pytest.mark.parametrize(("beta", "m"), SHAPES)
def test_shape_is_the_text_definition(tail, beta, m):
    x = np.linspace(2.0, 8.0, 1201)
    expected = [text_shape(v, 5.0, 0.2, beta, m, tail) for v in x]
    np.testing.assert_allclose(crystal_ball(x, 5.0, 0.2, beta, m, tail), expected,
                               rtol=1e-12)
    assert crystal_ball(5.0, 5.0, 0.2, beta, m, tail) == 1.0
    junction = 5.0 + (-1 if tail == "left" else 1) * abs(beta) * 0.2
    left, right = crystal_ball(np.array([junction - 1e-9, junction + 1e-9]), 5.0, 0.2, beta,
                               m, tail)
    assert left == pytest.approx(right, rel=1e-7)  # continuous at the junction


@pytest.mark.parametrize(("beta", "m"), SHAPES)
def test_right_tail_is_the_mirror_of_the_left(beta, m):
    x = np.linspace(-3.0, 3.0, 301)
    np.testing.assert_allclose(crystal_ball(x, 0.4, 0.3, beta, m, "right"),
                               crystal_ball(0.8 - x, 0.4, 0.3, beta, m, "left"), rtol=1e-12)


@pytest.mark.parametrize("tail", ["left", "right"])
@pytest.mark.parametrize(("beta", "m"), SHAPES)
def test_cdf_differences_equal_numerical_integration(tail, beta, m):
    x0, sigma = 5.0, 0.15
    points = np.r_[np.linspace(x0 - 4.0, x0 + 4.0, 33), x0 - abs(beta) * sigma,
                   x0 + abs(beta) * sigma, x0 - 30 * sigma, x0 + 30 * sigma]
    points.sort()
    cdf = crystal_ball_cdf(points, x0, sigma, beta, m, tail)
    assert np.all(np.diff(cdf) >= 0)
    for a, b, got in zip(points[:-1], points[1:], np.diff(cdf), strict=True):
        expected = integral(x0, sigma, beta, m, tail, a, b)
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-15), (a, b)


@pytest.mark.parametrize(("beta", "m"), [s for s in SHAPES if s[1] > 1.01])
def test_total_integral(beta, m):
    total = sum(quad(lambda x: text_shape(x, 0.0, 0.5, beta, m, "left"), a, b, limit=500)[0]
                for a, b in ((-np.inf, -abs(beta) * 0.5), (-abs(beta) * 0.5, np.inf)))
    assert crystal_ball_integral(0.0, 0.5, beta, m) == pytest.approx(total, rel=1e-7)
    assert crystal_ball_integral(0.0, 0.5, beta, 1.0) == np.inf


@pytest.mark.parametrize("tail", ["left", "right"])
@pytest.mark.parametrize(("beta", "m"), [(-1.5, 2.0), (-0.5, 1.5), (-3.0, 6.0)])
def test_sampler_follows_the_shape(tail, beta, m):
    rng = np.random.default_rng(1)
    n, x0, sigma = 200_000, 5.0, 0.15
    x = sample_crystal_ball(rng, n, x0, sigma, beta, m, tail)
    edges = np.r_[-np.inf, np.linspace(x0 - 6 * sigma, x0 + 6 * sigma, 41), np.inf]
    counts, _ = np.histogram(x, edges)
    total = sum(integral(x0, sigma, beta, m, tail, a, b)
                for a, b in ((-np.inf, x0), (x0, np.inf)))
    expected = np.array([integral(x0, sigma, beta, m, tail, a, b)
                         for a, b in zip(edges[:-1], edges[1:], strict=True)]) / total * n
    ok = expected > 5
    stat = np.sum((counts[ok] - expected[ok]) ** 2 / expected[ok])
    assert chi2_dist.sf(stat, ok.sum() - 1) > 1e-3, stat
    with pytest.raises(ConfigError):
        sample_crystal_ball(rng, 10, x0, sigma, beta, 1.0, tail)


# ---------------------------------------------------------------- recovery and coverage

LEFT_TRUTH = dict(x0=5.4, sigma=0.08, beta=-1.2, m=3.0)


def test_left_tailed_fit_recovers_the_truth_and_ci95_covers():
    fits = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        x = sample_crystal_ball(rng, 5000, **LEFT_TRUTH, tail="left")
        counts, edges = np.histogram(x, bins=120, range=(4.0, 8.2))
        f = fit_crystal_ball_hist(counts, edges, window=(5.0, 5.7), start={"x0": 5.45})
        assert f.success, f.reason
        fits.append(f)
    p = pulls(fits, LEFT_TRUTH, ("x0", "sigma", "beta"))
    assert np.all(np.mean(np.abs(p) < 3, axis=0) >= 0.96), np.mean(np.abs(p) < 3, axis=0)
    assert np.all(np.abs(np.mean(p, axis=0)) < 0.35), np.mean(p, axis=0)
    assert np.all(np.abs(np.std(p, axis=0) - 1.0) < 0.3), np.std(p, axis=0)
    assert 0.90 <= coverage(fits, LEFT_TRUTH["x0"]) <= 0.99
    assert all(f.ci95 == pytest.approx(1.96 * f.x0_err) for f in fits)
    # Baker–Cousins chi2 of a correct model: chi2/ndf ~ 1 on average
    assert np.mean([f.chi2 for f in fits]) / fits[0].ndf == pytest.approx(1.0, abs=0.15)


def test_right_tailed_fit_recovers_the_truth():
    truth = dict(x0=1.8, sigma=0.25, beta=1.0, m=3.0)
    fits = []
    for seed in range(100):
        rng = np.random.default_rng(1000 + seed)
        x = sample_crystal_ball(rng, 10_000, **truth, tail="right")
        counts, edges = np.histogram(x, bins=100, range=(0.0, 4.0))
        f = fit_crystal_ball_hist(counts, edges, tail="right", start={"x0": 1.7})
        assert f.success, f.reason
        assert f.beta > 0 and f.n_signal == pytest.approx(f.n_entries, rel=0.02)
        fits.append(f)
    p = pulls(fits, truth, ("x0", "sigma", "beta"))
    assert np.all(np.mean(np.abs(p) < 3, axis=0) >= 0.95)
    assert np.all(np.abs(np.mean(p, axis=0)) < 0.4)
    assert 0.88 <= coverage(fits, truth["x0"]) <= 1.0


def test_po212_like_peak_with_continuum():
    truth = dict(x0=7.5, sigma=0.12, beta=-1.0, m=2.5)
    lam, window = 1.2, (6.3, 8.0)
    fits = []
    for seed in range(60):
        rng = np.random.default_rng(2000 + seed)
        peak = sample_crystal_ball(rng, 4000, **truth, tail="left")
        # exponential continuum from the window's low end, truncated at the window
        u = rng.uniform(0, 1, 3000) * (1 - np.exp(-lam * (window[1] - window[0])))
        cont = window[0] - np.log1p(-u) / lam
        counts, edges = np.histogram(np.r_[peak, cont], bins=120, range=(4.0, 8.2))
        f = fit_crystal_ball_hist(counts, edges, window=window, continuum=True,
                                  start={"x0": 7.5})
        assert f.success, f.reason
        assert f.has_continuum and f.continuum_origin == window[0]
        fits.append(f)
    p = pulls(fits, truth | {"continuum_lambda": lam}, ("x0", "sigma", "continuum_lambda"))
    assert np.all(np.mean(np.abs(p) < 3, axis=0) >= 0.95), p
    assert np.all(np.abs(np.mean(p, axis=0)) < 0.5)
    assert 0.85 <= coverage(fits, truth["x0"]) <= 1.0
    # the curve to draw integrates to the entries of the window
    f = fits[0]
    lo, hi = f.fit_range
    x = np.linspace(lo, hi, 20001)
    drawn = np.trapezoid(f.counts_per_bin(x, 1.0), x)
    assert drawn == pytest.approx(f.n_entries, rel=0.03)


S2_TRUTH = dict(x0=1.8, sigma=0.3, beta=1.0, m=3.0)


def s2_histogram(seed, n_signal=10_000, n_zero=3000, zero_sigma=0.05, bin_cuts=(-0.4, 4.0)):
    rng = np.random.default_rng(seed)
    zero = rng.normal(0.0, zero_sigma, n_zero) if zero_sigma > 0 else np.zeros(n_zero)
    areas = np.r_[sample_crystal_ball(rng, n_signal, **S2_TRUTH, tail="right"), zero]
    return np.histogram(areas, bins=110, range=bin_cuts)


def test_two_stage_fit_recovers_the_s2_peak_next_to_a_zero_area_population():
    fits = []
    for seed in range(200):
        counts, edges = s2_histogram(3000 + seed)
        r = fit_s2_two_stage(counts, edges)
        assert r.two_stage and r.success, r.reason
        assert r.bg_fraction_observed == pytest.approx(3000 / 13000, abs=0.02)
        bg = r.background
        assert bg.success, bg.reason
        assert abs(bg.mean) < 3 * bg.mean_err + 0.01 and bg.sigma == pytest.approx(0.05, 0.2)
        assert r.signal_range[0] == pytest.approx(bg.mean + 5 * bg.sigma)
        fits.append(r.signal)
    p = pulls(fits, S2_TRUTH, ("x0", "sigma", "beta"))
    assert np.all(np.mean(np.abs(p) < 3, axis=0) >= 0.96), np.mean(np.abs(p) < 3, axis=0)
    assert np.all(np.abs(np.mean(p, axis=0)) < 0.35), np.mean(p, axis=0)
    assert 0.90 <= coverage(fits, S2_TRUTH["x0"]) <= 0.99
    # both components can be drawn: background near 0, signal near x0
    centres = 0.5 * (edges[:-1] + edges[1:])
    width = edges[1] - edges[0]
    assert r.background_per_bin(0.0, width) > 50 * r.signal.counts_per_bin(0.0, width)
    total = r.counts_per_bin(centres, width)
    np.testing.assert_allclose(total, r.signal.counts_per_bin(centres, width)
                               + bg.counts_per_bin(centres, width))
    json.dumps(r.to_dict())


def test_two_stage_with_every_zero_area_frame_in_one_bin_starts_above_the_cutoff():
    fits = []
    for seed in range(40):
        counts, edges = s2_histogram(4000 + seed, zero_sigma=0.0, bin_cuts=(0.0, 4.0))
        r = fit_s2_two_stage(counts, edges)
        assert r.two_stage and not r.background.success  # one filled bin: no Gaussian
        assert r.signal_range[0] == S2_BG_CUTOFF and r.success, r.reason
        fits.append(r.signal)
    p = pulls(fits, S2_TRUTH, ("x0", "sigma"))
    assert np.all(np.mean(np.abs(p) < 3, axis=0) >= 0.95)
    assert 0.85 <= coverage(fits, S2_TRUTH["x0"]) <= 1.0


def test_small_zero_area_population_gives_one_crystal_ball_fit():
    counts, edges = s2_histogram(5, n_zero=0)
    r = fit_s2_two_stage(counts, edges, upper_limit=3.9)
    assert not r.two_stage and r.background is None and r.success
    assert r.signal_range == (edges[0], 3.9) and r.signal.fit_range[1] <= 3.9
    assert abs(r.signal.x0 - S2_TRUTH["x0"]) < 3 * r.signal.x0_err
    counts, edges = s2_histogram(5, n_zero=700)  # 700 / 10700 = 6.5 % < 7.7 %
    assert not fit_s2_two_stage(counts, edges).two_stage
    assert fit_s2_two_stage(counts, edges, bg_fraction=0.05).two_stage


# ---------------------------------------------------------------- failures and bad input


def test_failures_are_reported_not_raised():
    edges = np.linspace(4.0, 8.2, 121)
    empty = fit_crystal_ball_hist(np.zeros(120), edges, window=(5.0, 5.5))
    assert not empty.success and "entries" in empty.reason and np.isnan(empty.x0)
    json.dumps(empty.to_dict())
    few = np.zeros(120)
    few[30:33] = 50
    f = fit_crystal_ball_hist(few, edges, window=(4.0, 6.0))
    assert not f.success and "bin(s)" in f.reason
    # a spectrum rising to the window's edge: no peak inside, x0 runs to the bound
    rng = np.random.default_rng(0)
    counts, _ = np.histogram(rng.exponential(0.3, 5000) + 4.0, edges)
    f = fit_crystal_ball_hist(counts[::-1], edges, window=(7.0, 8.2))
    assert not f.success and ("edge" in f.reason or "converge" in f.reason), f.reason
    assert np.isfinite(f.x0)  # the fitted numbers are kept for diagnosis
    outside = fit_crystal_ball_hist(counts, edges, window=(9.0, 10.0))
    assert not outside.success and "entries" in outside.reason
    s2 = fit_s2_two_stage(np.zeros(100), np.linspace(0, 4, 101))
    assert not s2.success and not s2.two_stage and s2.reason


def test_parameters_at_a_bound_are_reported():
    rng = np.random.default_rng(3)
    x = sample_crystal_ball(rng, 20_000, 5.4, 0.005, -1.5, 3.0)  # far narrower than 0.01
    counts, edges = np.histogram(x, bins=2000, range=(5.0, 5.8))
    f = fit_crystal_ball_hist(counts, edges, window=(5.3, 5.5))
    assert "sigma" in f.at_limit


@pytest.mark.parametrize("kwargs", [
    {"tail": "both"}, {"start": {"mu": 1.0}}, {"limits": {"sigma": (0.3, 0.01)}},
    {"limits": {"lam": (0.1, 5)}}, {"window": (5.5, 5.0)}, {"window": (np.nan, 5.0)},
    {"start": {"cont_a": 1.0}},  # continuum parameter without continuum
])
def test_malformed_input_raises_config_error(kwargs):
    edges = np.linspace(4.0, 8.2, 121)
    with pytest.raises(ConfigError):
        fit_crystal_ball_hist(np.ones(120), edges, **kwargs)


def test_malformed_histograms_raise_config_error():
    with pytest.raises(ConfigError):
        fit_crystal_ball_hist(np.ones(10), np.arange(10.0))
    with pytest.raises(ConfigError):
        fit_crystal_ball_hist(-np.ones(10), np.arange(11.0))
    with pytest.raises(ConfigError):
        fit_s2_two_stage(np.ones(10), np.arange(11.0), upper_limit=-1.0)
    with pytest.raises(ConfigError):
        fit_s2_two_stage(np.ones(10), np.arange(11.0), n_sigma=np.nan)


def test_a_window_without_tail_holds_the_tail_parameters():
    """Window starting above the junction: m (and beta) cannot be determined."""
    held, pulls_x0 = [], []
    for seed in range(30):
        rng = np.random.default_rng(6000 + seed)
        x = sample_crystal_ball(rng, 8000, **LEFT_TRUTH, tail="left")
        counts, edges = np.histogram(x, bins=240, range=(4.0, 8.2))
        lo = LEFT_TRUTH["x0"] - 1.0 * LEFT_TRUTH["sigma"]  # the tail begins at -1.2 sigma
        f = fit_crystal_ball_hist(counts, edges, window=(lo, 5.8), start={"x0": 5.45})
        assert f.success, f.reason
        if f.held:
            assert "m" in f.held and np.isnan(f.m_err) and f.m == 2.0  # the §13 start
            n_bins = round((f.fit_range[1] - f.fit_range[0]) / (edges[1] - edges[0]))
            assert f.ndf == n_bins - 5 + len(f.held)
        held.append(bool(f.held))
        pulls_x0.append((f.x0 - LEFT_TRUTH["x0"]) / f.x0_err)
    assert np.mean(held) > 0.5
    assert np.mean(np.abs(pulls_x0) < 3) >= 0.9
