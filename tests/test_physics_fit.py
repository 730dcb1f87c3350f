"""Binned Poisson ML Gaussian fit (ALGORITHMS.md §6): bias, honest errors, failures."""

import json

import numpy as np
import pytest
from scipy.optimize import curve_fit

from ratag_xr.errors import ConfigError
from ratag_xr.physics.fit import fit_gaussian_hist, hist_quantile, robust_range_hist

TRUE_MEAN, TRUE_SIGMA = 1.8, 0.4


def histogram(values, bin_cuts, nbins):
    """Counts and edges of the finite ``values`` (what the stages histogram)."""
    v = np.asarray(values, dtype=float)
    return np.histogram(v[np.isfinite(v)], bins=nbins, range=bin_cuts)


def sample(seed, n, mean=TRUE_MEAN, sigma=TRUE_SIGMA, n_pedestal=0):
    rng = np.random.default_rng(seed)
    return np.r_[rng.normal(mean, sigma, n), np.zeros(n_pedestal)]


@pytest.mark.parametrize(
    ("n", "bin_cuts", "nbins", "n_pedestal"),
    [
        (300, (0.0, 4.0), 100, 150),  # sparse bins plus a zero-area spike in bin 0
        (1000, (0.0, 4.0), 25, 0),  # coarse bins: sigma = 1.6 bin widths
        (5000, (0.0, 4.0), 100, 2000),
    ],
)
def test_mean_is_unbiased_and_its_error_is_honest(n, bin_cuts, nbins, n_pedestal):
    means, errs, pulls_sigma = [], [], []
    for seed in range(100):
        counts, edges = histogram(sample(seed, n, n_pedestal=n_pedestal), bin_cuts, nbins)
        f = fit_gaussian_hist(counts, edges, exclude_index=1)
        assert f.success, f.reason
        assert f.n_total == counts.sum() and f.n_entries == counts[1:].sum()
        means.append(f.mean)
        errs.append(f.mean_err)
        pulls_sigma.append((f.sigma - TRUE_SIGMA) / f.sigma_err)
        assert f.ci95 == pytest.approx(1.96 * f.mean_err)
    means, errs = np.array(means), np.array(errs)
    pulls = (means - TRUE_MEAN) / errs
    assert np.mean(np.abs(pulls) < 3) >= 0.97
    # the reported error matches the scatter of fitted means over seeds
    assert np.std(means) / np.mean(errs) == pytest.approx(1.0, abs=0.2)
    # no bias beyond what 100 seeds can resolve (standard error of a mean pull: 0.1)
    assert abs(np.mean(pulls)) < 0.35
    # ML sigma is biased low by O(sigma / N): about -0.15 in pull at N = 300
    assert abs(np.mean(pulls_sigma)) < 0.5
    assert np.std(pulls_sigma) == pytest.approx(1.0, abs=0.2)


def test_truncated_gaussian_next_to_the_excluded_pedestal_is_recovered():
    # peak at 0.5 with sigma 0.4: part of it lies in the excluded bin and below 0
    pulls = []
    for seed in range(40):
        counts, edges = histogram(sample(seed, 2000, mean=0.5, n_pedestal=500), (0, 4), 100)
        f = fit_gaussian_hist(counts, edges)
        assert f.success, f.reason
        pulls.append((f.mean - 0.5) / f.mean_err)
    assert abs(np.mean(pulls)) < 0.5 and np.mean(np.abs(pulls) < 3) >= 0.95


def test_agrees_with_least_squares_at_high_statistics():
    x = sample(7, 400_000)
    counts, edges = histogram(x, (0.0, 4.0), 100)
    f = fit_gaussian_hist(counts, edges, exclude_index=0)
    centres = 0.5 * (edges[:-1] + edges[1:])
    ok = counts > 0

    def gauss(c, a, mu, s):
        return a * np.exp(-0.5 * ((c - mu) / s) ** 2)

    p, cov = curve_fit(gauss, centres[ok], counts[ok], p0=[counts.max(), 1.8, 0.4],
                       sigma=np.sqrt(counts[ok]), absolute_sigma=True)  # fmt: skip
    assert f.mean == pytest.approx(p[1], abs=0.3 * f.mean_err)
    assert f.sigma == pytest.approx(p[2], abs=1.0 * f.sigma_err)
    assert f.mean_err == pytest.approx(np.sqrt(cov[1, 1]), rel=0.1)
    # amplitude is the Gaussian's number of entries; the LSQ peak height times the
    # bin width over sqrt(2 pi) sigma must match it
    peak = f.amplitude * (edges[1] - edges[0]) / (np.sqrt(2 * np.pi) * f.sigma)
    assert peak == pytest.approx(p[0], rel=0.01)
    assert f.counts_per_bin(f.mean, edges[1] - edges[0]) == pytest.approx(peak)
    assert f.amplitude == pytest.approx(400_000, rel=0.01)
    assert f.n_entries == counts.sum()


def test_chi2_per_ndf_is_near_one_for_a_good_model():
    chi2 = []
    for seed in range(60):
        counts, edges = histogram(sample(seed, 20_000), (0.4, 3.2), 40)
        f = fit_gaussian_hist(counts, edges, exclude_index=0)
        assert f.ndf == 37
        chi2.append(f.chi2_ndf)
    assert np.mean(chi2) == pytest.approx(1.0, abs=0.1)


def test_wrong_model_gives_large_chi2():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(1.0, 0.2, 5000), rng.normal(2.5, 0.2, 5000)]
    f = fit_gaussian_hist(*histogram(x, (0, 4), 100), exclude_index=0)
    assert f.chi2_ndf > 10


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (np.array([]), "entries"),
        (np.full(15, 2.0) + np.linspace(0, 0.5, 15), "entries"),  # 15 < 20
        (np.zeros(500), "entries"),  # everything in the excluded pedestal bin
        (np.r_[np.full(50, 1.01), np.full(50, 2.01)], "2 fitted bin"),
    ],
)
def test_failures_are_reported_not_raised(values, words):
    f = fit_gaussian_hist(*histogram(values, (0, 4), 100))
    assert not f.success and words in f.reason
    assert np.isnan(f.mean) and np.isnan(f.ci95)
    json.dumps(f.to_dict())


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (np.random.default_rng(2).uniform(0.0, 4.0, 3000), "outside"),  # flat
        (np.random.default_rng(2).normal(5.0, 1.0, 3000), "outside"),  # peak beyond range
        (np.r_[np.full(50, 1.01), np.full(50, 2.01), np.full(50, 3.01)], "bin width"),
    ],
)
def test_fits_without_a_resolved_peak_in_range_fail(values, words):
    f = fit_gaussian_hist(*histogram(values, (0, 4), 100))
    assert not f.success and words in f.reason
    assert np.isfinite(f.mean)  # the fitted numbers are kept for diagnosis


def test_start_values_can_be_given_and_unknown_names_are_refused():
    counts, edges = histogram(sample(1, 2000), (0, 4), 100)
    f = fit_gaussian_hist(counts, edges, start={"mean": 3.0, "sigma": 1.0})
    g = fit_gaussian_hist(counts, edges)
    assert f.success and f.mean == pytest.approx(g.mean, abs=0.01 * g.mean_err)
    with pytest.raises(ConfigError):
        fit_gaussian_hist(counts, edges, start={"centre": 1.0})


def test_malformed_histogram_raises_config_error():
    with pytest.raises(ConfigError):
        fit_gaussian_hist(np.ones(10), np.arange(10.0))
    with pytest.raises(ConfigError):
        fit_gaussian_hist(np.ones(10), np.arange(11.0), exclude_index=10)


def test_robust_range_from_a_summed_fine_histogram_matches_the_values():
    x = sample(5, 20_000)
    counts = sum(histogram(chunk, (0.0, 20.0), 2000)[0] for chunk in np.array_split(x, 7))
    edges = np.linspace(0.0, 20.0, 2001)  # 0.01 wide bins, summed over chunks
    lo, hi = robust_range_hist(counts, edges)
    median = np.median(x)
    half = 5 * 1.4826 * np.median(np.abs(x - median))  # median ± 5 robust sigma, floor 0
    assert lo == pytest.approx(max(0.0, median - half), abs=0.06)
    assert hi == pytest.approx(median + half, abs=0.06)
    assert robust_range_hist(np.zeros(5), np.arange(6.0)) is None


def test_hist_quantile_interpolates_inside_the_bin():
    counts, edges = np.array([0, 10, 0, 30]), np.arange(5.0)
    assert hist_quantile(counts, edges, 0.125) == pytest.approx(1.5)
    assert hist_quantile(counts, edges, 0.625) == pytest.approx(3.5)
