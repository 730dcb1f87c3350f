"""S1 time estimate (ALGORITHMS.md §3) on synthetic chunk-mean waveforms."""

import numpy as np
import pytest

from ratag_xr.errors import ConfigError
from ratag_xr.physics.s1 import estimate_t_s1, s1_candidates

DT = 0.002  # µs per sample
TIME = -2.0 + DT * np.arange(3500)  # -2 µs .. 5 µs


def pulse(index, height, width=5.0):
    """Gaussian pulse of ``height`` mV centred on sample ``index`` (width in samples)."""
    i = np.arange(TIME.size)
    return height * np.exp(-0.5 * ((i - index) / width) ** 2)


def idx(t):
    return int(np.argmin(np.abs(TIME - t)))


def batch_means(s1_indices, *, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for k in s1_indices:
        # S1 before the trigger, a much larger S2-like pulse after it (must be ignored).
        w = pulse(k, 2.0) + pulse(idx(2.0), 10.0, width=200.0)
        rows.append(w + noise * rng.standard_normal(TIME.size))
    return np.array(rows)


def test_all_batches_agree_gives_the_peak_time_exactly():
    k = idx(-0.5)
    res = estimate_t_s1(batch_means([k] * 5), TIME)
    assert res.success and res.reason == ""
    assert res.t_s1 == TIME[k]
    assert res.t_s1_std == 0.0
    assert (res.n_candidates, res.n_kept) == (5, 5)


def test_noisy_batches_find_the_pre_trigger_peak_not_the_larger_later_one():
    k = idx(-0.5)
    res = estimate_t_s1(batch_means([k] * 5, noise=0.01, seed=3), TIME)
    assert res.success
    assert abs(res.t_s1 - TIME[k]) <= 3 * DT
    assert res.t_s1_std <= 3 * DT
    assert res.t_s1 < 0


def test_outlier_candidate_is_removed_by_the_sigma_cut():
    k, k_out = idx(-0.5), idx(-1.5)
    res = estimate_t_s1(batch_means([k, k, k, k, k_out]), TIME)
    # candidates: mean -0.7, std 0.4 -> the -1.5 candidate is 0.8 away and dropped
    assert (res.n_candidates, res.n_kept) == (5, 4)
    assert res.t_s1 == TIME[k]
    assert res.t_s1_std == 0.0


def test_spread_candidates_take_the_centre_of_the_fullest_histogram_bin():
    k = idx(-0.5)
    ks = [k, k, k, k + 1, k - 1, idx(-0.48)]
    res = estimate_t_s1(batch_means(ks), TIME)
    kept_t = TIME[[k, k, k, k + 1, k - 1]]  # -0.48 lies > 1 std from the mean
    counts, edges = np.histogram(kept_t, bins=50)
    j = np.argmax(counts)
    assert res.n_kept == 5
    assert res.t_s1 == pytest.approx(0.5 * (edges[j] + edges[j + 1]), abs=1e-12)
    assert abs(res.t_s1 - TIME[k]) <= (edges[1] - edges[0])
    assert res.t_s1_std == pytest.approx(np.std(kept_t), rel=1e-12)


def test_nan_batch_is_skipped_and_candidates_listed_per_batch():
    k = idx(-0.5)
    w = batch_means([k] * 4)
    w[1, :] = np.nan
    cand = s1_candidates(w, TIME)
    assert np.isnan(cand[1]) and np.all(cand[[0, 2, 3]] == TIME[k])
    res = estimate_t_s1(w, TIME)
    assert res.success and res.n_candidates == 3 and res.t_s1 == TIME[k]


def test_no_peak_before_trigger_is_a_failure_with_reason():
    w = np.tile(pulse(idx(2.0), 10.0, width=200.0), (5, 1))  # only a pulse after t = 0
    res = estimate_t_s1(w, TIME)
    assert not res.success
    assert np.isnan(res.t_s1) and np.isnan(res.t_s1_std)
    assert "no S1 peak" in res.reason and "5 chunk means" in res.reason
    assert res.to_dict()["success"] is False


def test_all_nan_is_a_failure_not_an_exception():
    res = estimate_t_s1(np.full((3, TIME.size), np.nan), TIME)
    assert not res.success and res.n_candidates == 0


def test_peak_below_min_height_is_not_a_candidate():
    w = 0.0005 * np.tile(pulse(idx(-0.5), 1.0), (2, 1))
    assert not estimate_t_s1(w, TIME).success
    assert estimate_t_s1(w, TIME, min_height=0.0001).success


def test_shape_mismatch_raises_config_error():
    with pytest.raises(ConfigError):
        estimate_t_s1(np.zeros((2, 10)), TIME)


@pytest.mark.parametrize("kind", ["noise", "plateaus", "walk"])
def test_find_peaks_is_scipys_with_height_and_distance(kind):
    """The S1 peak search gives scipy.signal.find_peaks' peaks and heights, flat tops,
    equal heights and all, for the height and distance conditions it uses."""
    from scipy.signal import find_peaks as scipy_find_peaks

    from ratag_xr.physics.peaks import find_peaks

    rng = np.random.default_rng(7)
    n_peaks = 0
    for _ in range(400):
        n = int(rng.integers(1, 500))
        if kind == "noise":
            x = rng.normal(size=n)
        elif kind == "plateaus":
            x = rng.integers(0, 4, size=n).astype(float)
        else:
            x = np.round(np.cumsum(rng.normal(size=n)), 1)
        height = float(rng.choice([-1.0, 0.0, 0.5, 1.0]))
        distance = float(rng.choice([1, 2, 3.5, 10, 60]))
        want, props = scipy_find_peaks(x, height=height, distance=distance)
        got, heights = find_peaks(x, height=height, distance=distance)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(heights, props["peak_heights"])
        n_peaks += want.size
    assert n_peaks > 1000  # the comparison saw many peaks


def test_find_peaks_refuses_a_distance_below_one_sample():
    from ratag_xr.physics.peaks import find_peaks

    with pytest.raises(ValueError, match="distance"):
        find_peaks(np.zeros(10), distance=0.5)
