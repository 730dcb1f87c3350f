"""Per-set S2 window statistics (ALGORITHMS.md §4)."""

import json

import numpy as np
import pytest

from ratag_xr.errors import ConfigError
from ratag_xr.physics.s2_window import ALL_METHODS, s2_window_stats


@pytest.fixture
def frames():
    rng = np.random.default_rng(42)
    start = rng.normal(12.0, 0.8, 500)
    dur = rng.normal(14.0, 3.0, 500)
    end = start + dur
    # frames without a crossing carry NaN
    start[::17] = np.nan
    end[::17] = np.nan
    dur[::17] = np.nan
    return start, end, dur


def direct(x, method):
    """Plain-numpy statement of each method (the definition)."""
    if method == "percentile":
        return np.median(x), (np.percentile(x, 84) - np.percentile(x, 16)) / 2
    if method == "mad":
        return np.median(x), 1.4826 * np.median(np.abs(x - np.median(x)))
    return np.mean(x), np.std(x, ddof=0)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_each_method_matches_numpy(frames, method):
    start, end, dur = frames
    st = s2_window_stats(start, end, dur, method=method)
    s_ok, e_ok = start[np.isfinite(start)], end[np.isfinite(end)]
    d_ok = dur[np.isfinite(dur) & (dur >= 5.0) & (dur <= 25.0)]
    for stat, x in ((st.start, s_ok), (st.end, e_ok), (st.duration, d_ok)):
        centre, spread = direct(x, method)
        assert stat.success and stat.n == x.size
        assert stat.mean == pytest.approx(centre, rel=1e-12)
        assert stat.std == pytest.approx(spread, rel=1e-12)
    assert st.method == method and st.success and st.window_success
    # duration cuts removed some values, NaN frames removed from all
    assert st.start.n == 500 - 30 and st.duration.n < st.start.n


def test_flat_names_match_the_stored_variables(frames):
    st = s2_window_stats(*frames)
    d = st.to_dict()
    json.dumps(d)
    for name in ("t_s2_start", "t_s2_end", "s2_duration"):
        for suffix in ("mean", "std", "n", "success", "reason"):
            assert f"{name}_{suffix}" in d
    assert d["t_s2_start_mean"] == st.t_s2_start_mean == st.start.mean
    assert d["s2_duration_std"] == st.s2_duration_std


def test_duration_fails_alone_when_too_few_inside_cuts():
    rng = np.random.default_rng(1)
    start = rng.normal(10, 1, 15)
    dur = np.r_[rng.uniform(6, 20, 5), np.full(10, 40.0)]  # only 5 inside (5, 25)
    st = s2_window_stats(start, start + dur, dur)
    assert st.start.success and st.end.success and st.window_success
    assert not st.duration.success and not st.success
    assert np.isnan(st.s2_duration_mean) and np.isnan(st.s2_duration_std)
    assert st.duration.n == 5
    assert "only 5" in st.duration.reason and "need >= 10" in st.duration.reason
    assert st.t_s2_start_mean == pytest.approx(np.median(start))


def test_start_can_fail_while_duration_succeeds():
    # e.g. durations passed from elsewhere; the statistics do not depend on each other
    st = s2_window_stats([1.0] * 9, np.arange(20.0), np.full(12, 10.0), min_values=10)
    assert not st.start.success and st.end.success and st.duration.success
    assert not st.window_success


def test_duration_cuts_include_both_ends():
    dur = np.array([5.0, 25.0] * 5 + [4.999, 25.001])
    st = s2_window_stats(dur, dur, dur)
    assert st.duration.n == 10 and st.duration.success


def test_all_nan_input_fails_every_statistic_without_raising():
    nan = np.full(50, np.nan)
    st = s2_window_stats(nan, nan, nan)
    assert not (st.start.success or st.end.success or st.duration.success)
    assert st.start.n == 0


def test_bad_configuration_raises():
    x = np.arange(20.0)
    with pytest.raises(ConfigError):
        s2_window_stats(x, x, x, method="mode")
    with pytest.raises(ConfigError):
        s2_window_stats(x, x, x, duration_cuts=(25.0, 5.0))
