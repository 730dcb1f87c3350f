"""The alpha-energy kernel (ALGORITHMS.md §12) against the scipy route it replaces.

The reference is the definition written with scipy and numpy, not with the kernel's
running sums: volts from codes, the baseline (mean below the threshold, else the median
of the first 200 samples), ``scipy.signal.savgol_filter(v, w, 3)`` with its default
``mode="interp"`` ends, maximum, divided by the SCA factor.  The exactness of the integer
route is checked against an int64 ``numpy.convolve`` with the integer Savitzky–Golay
weights.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.signal import savgol_filter

from ratag_xr.kernels.alpha import (
    MAX_SAVGOL_WINDOW,
    code_range,
    frame_alpha_energy,
    interior_codes,
)

DTYPES = ("int8", "int16", "float32", "float64")
CODE_RANGE = {"int8": (-128, 127), "int16": (-32768, 32767)}
DEFAULTS = dict(t0=-3.0, dt=2e-4, alpha_threshold_bs=300.0, savgol_window=501.0,
                sca_factor=1.058)


def reference(raw, scale, offset, threshold_mv=300.0, window=501, sca=1.058):
    """§12 with scipy: v in mV, baseline, savgol_filter(v / 1000 − baseline, w, 3)."""
    v_mv = np.asarray(raw).astype(np.float64) * scale + offset
    below = v_mv < threshold_mv
    baseline = v_mv[below].mean() if below.sum() >= 10 else np.median(v_mv[:200])
    smooth = savgol_filter(v_mv / 1000.0 - baseline / 1000.0, window, 3)
    return smooth.max() / sca


def kernel(raw, scale, offset, **params):
    p = DEFAULTS | params
    return frame_alpha_energy(raw, scale, offset, p["t0"], p["dt"], p["alpha_threshold_bs"],
                              float(p["savgol_window"]), p["sca_factor"])


def assert_matches(raw, scale, offset, threshold_mv, window, sca=1.058):
    got = kernel(raw, scale, offset, alpha_threshold_bs=threshold_mv, savgol_window=window,
                 sca_factor=sca)
    expected = reference(raw, scale, offset, threshold_mv, window, sca)
    # absolute floor: the rounding of the float64 reference itself (a w-tap convolution
    # of values of size max|v|), which matters only where the result is ~0 (flat frames)
    v_max = np.max(np.abs(np.asarray(raw, np.float64) * scale + offset)) / 1000.0
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9 * v_max / sca)
    return expected


def alpha_frame(rng, dtype, n, *, pulses=None, edge=None, noise=None, amplitude=None):
    """An alpha-channel frame: baseline, noise, positive pulses (fast rise, slow decay).

    Returns (raw, scale mV/code, offset mV).  ``edge`` = "start"/"end" puts a pulse on the
    first/last sample of the record, which only the interp ends of savgol_filter see.
    """
    dtype = np.dtype(dtype)
    t = np.arange(n, dtype=np.float64)
    mv = rng.normal(0.0, rng.uniform(2.0, 40.0) if noise is None else noise, n)
    n_pulses = int(rng.integers(0, 3)) if pulses is None else pulses
    positions = list(rng.uniform(0, n, n_pulses))
    if edge == "start":
        positions.append(rng.uniform(-0.3, 0.3) * min(n, 400))
    elif edge == "end":
        positions.append(n - 1 - rng.uniform(-0.3, 0.3) * min(n, 400))
    for t_pulse in positions:
        height = rng.uniform(200.0, 2000.0) if amplitude is None else amplitude
        rise, decay = rng.uniform(2.0, 60.0), rng.uniform(50.0, 3000.0)
        x = t - t_pulse
        mv += height * np.where(x < 0, np.exp(-0.5 * (x / rise) ** 2), np.exp(-x / decay))
    offset = rng.uniform(-100.0, 100.0)
    if dtype.kind == "i":
        lo, hi = CODE_RANGE[dtype.name]
        scale = rng.uniform(10.0, 30.0) if dtype.itemsize == 1 else rng.uniform(0.05, 0.2)
        codes = np.clip(np.round((mv - offset) / scale + rng.uniform(-0.3, 0.3) * 20), lo, hi)
        return codes.astype(dtype), scale, offset
    scale = rng.uniform(0.01, 3.0)
    return ((mv - offset) / scale).astype(dtype), scale, offset


WINDOWS = st.one_of(st.sampled_from([5, 7, 9, 21, 51, 501]),
                    st.integers(2, 300).map(lambda k: 2 * k + 1))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(DTYPES), window=WINDOWS,
       extra=st.one_of(st.integers(0, 4), st.integers(0, 4000)),
       edge=st.sampled_from([None, "start", "end"]),
       threshold=st.sampled_from(["default", "low", "high", "random"]),
       negative_scale=st.booleans())
def test_hypothesis_frames_match_scipy(seed, dtype, window, extra, edge, threshold,
                                       negative_scale):
    rng = np.random.default_rng(seed)
    raw, scale, offset = alpha_frame(rng, dtype, window + extra, edge=edge)
    if negative_scale:  # a channel whose pulses come out negative in codes
        scale = -scale
        raw = (-raw.astype(np.float64)).clip(*CODE_RANGE.get(dtype, (-np.inf, np.inf)))
        raw = raw.astype(dtype)
    v = raw.astype(np.float64) * scale + offset
    thr = {"default": 300.0, "low": v.min() - 1.0, "high": v.max() + 1.0,
           "random": rng.uniform(v.min(), v.max() + 1e-9)}[threshold]
    assert_matches(raw, scale, offset, thr, window)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [20_000, 50_000])
def test_realistic_frames_across_many_blocks(dtype, n):
    rng = np.random.default_rng(n + len(dtype))
    values = []
    for edge in (None, "start", "end", None):
        raw, scale, offset = alpha_frame(rng, dtype, n, pulses=1, edge=edge)
        values.append(assert_matches(raw, scale, offset, 300.0, 501))
    assert np.ptp(values) > 0  # the frames differ: the comparison is not of constants


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("window", [5, 7, 501])
@pytest.mark.parametrize("extra", [0, 1, 2, 3, 4])
def test_frames_just_longer_than_the_window(dtype, window, extra):
    rng = np.random.default_rng(window * 10 + extra)
    for edge in ("start", "end", None):
        raw, scale, offset = alpha_frame(rng, dtype, window + extra, pulses=1, edge=edge)
        assert_matches(raw, scale, offset, 300.0, window)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("side", ["start", "end"])
def test_pulse_on_the_record_end_is_seen_through_the_interp_end(dtype, side):
    rng = np.random.default_rng(11)
    n, window = 5000, 501
    raw, scale, offset = alpha_frame(rng, dtype, n, pulses=0, noise=3.0)
    pulse = np.zeros(n)
    k = np.arange(n) if side == "start" else np.arange(n)[::-1]
    pulse += 1500.0 * np.exp(-k / 80.0)  # peaks on the first / last sample
    v = raw.astype(np.float64) * scale + offset + pulse
    raw = np.round((v - offset) / scale) if np.dtype(dtype).kind == "i" else (v - offset) / scale
    raw = raw.clip(*CODE_RANGE.get(dtype, (-np.inf, np.inf))).astype(dtype)
    energy = assert_matches(raw, scale, offset, 300.0, window)
    # the interior alone (no interp ends) would miss most of the pulse
    interior = savgol_filter(raw.astype(np.float64), window, 3, mode="constant")[250:-250]
    assert energy > 1.2 * (interior.max() * scale / 1000.0) / 1.058


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("level", [0, 7, -5, 100])
@pytest.mark.parametrize("window", [5, 501])
def test_flat_frames_give_zero(dtype, level, window):
    raw = np.full(3000, level, dtype=dtype)
    for threshold in (300.0, -1e9):  # mean of all samples; the median branch
        assert_matches(raw, 0.25, 3.0, threshold, window)
        assert abs(kernel(raw, 0.25, 3.0, alpha_threshold_bs=threshold,
                          savgol_window=window)) < 1e-12


@pytest.mark.parametrize("dtype", DTYPES)
def test_baseline_branches(dtype):
    """>= 10 samples below the threshold: their mean; fewer: median of the first 200."""
    rng = np.random.default_rng(3)
    raw, scale, offset = alpha_frame(rng, dtype, 4000, pulses=1, noise=5.0)
    v = np.sort(raw.astype(np.float64) * scale + offset)
    for k in (0, 1, 9, 10, 11, 500):  # number of samples strictly below the threshold
        thr = v[0] - 1.0 if k == 0 else np.nextafter(v[k], -np.inf) if v[k] > v[k - 1] \
            else None
        if thr is None:  # ties at the k-th value: skip this count
            continue
        assert np.count_nonzero(raw.astype(np.float64) * scale + offset < thr) == k
        assert_matches(raw, scale, offset, thr, 501)
    # the two branches really differ on this frame (the median is not the mean)
    below_all = kernel(raw, scale, offset, alpha_threshold_bs=v[-1] + 1.0)
    median = kernel(raw, scale, offset, alpha_threshold_bs=v[0] - 1.0)
    assert below_all != pytest.approx(median, rel=1e-9)


@pytest.mark.parametrize("scale", [0.1, -0.1, 0.37, -1.3, 3e-5])
@pytest.mark.parametrize("offset", [0.0, 12.3, -7.77])
def test_code_range_equals_the_float_comparison(scale, offset):
    codes = np.arange(-40000, 40001)
    v = codes.astype(np.float64) * scale + offset
    for threshold in (v[10], v[-10], 0.3, np.nextafter(v[40000], np.inf), 1e12, -1e12):
        lo, hi = code_range(scale, offset, threshold)
        np.testing.assert_array_equal((codes >= lo) & (codes <= hi), v < threshold)


@pytest.mark.parametrize("window", [5, 501, 4001, MAX_SAVGOL_WINDOW])
def test_integer_numerators_are_exact_at_full_scale(window):
    """Full-scale int16 codes: the running sums equal an exact int64 convolution."""
    rng = np.random.default_rng(window)
    n = window + 6000
    raw = rng.choice(np.array([-32768, 32767], np.int16), n)
    raw[rng.integers(0, n, n // 3)] = rng.integers(-32768, 32768, n // 3)
    m = window // 2
    k = np.arange(-m, m + 1, dtype=np.int64)
    taps = 3 * (3 * m * m + 3 * m - 1) - 15 * k * k
    exact = np.convolve(raw.astype(np.int64), taps[::-1], mode="valid")
    first = raw[:window].astype(np.int64)  # the moments of the first window, in numpy
    moments = [int(np.sum(k**j * first)) for j in (0, 1, 2)]
    top, bottom, b_sum, b_cnt = interior_codes(raw, m, *moments, -(2**20), 0)
    assert top == exact.max() and bottom == exact.min()
    assert b_sum == raw[raw <= 0].astype(np.int64).sum() and b_cnt == np.sum(raw <= 0)


def exact_codes_savgol(raw, window):
    """savgol_filter(raw, window, 3) of integer codes without scipy's coefficients.

    Interior: the exact int64 convolution with the integer weights; ends: a cubic least
    squares fit (numpy.linalg.lstsq) in the scaled coordinate k / m of the end window.
    scipy's own coefficients lose accuracy for very long windows (at 16383 samples the
    sum of their errors is ~1, against ~1e-9 at 8001), so this is the reference there.
    """
    m = window // 2
    k = np.arange(-m, m + 1, dtype=np.int64)
    taps = 3 * (3 * m * m + 3 * m - 1) - 15 * k * k
    den = (2 * m - 1) * (2 * m + 1) * (2 * m + 3)
    inner = np.convolve(raw.astype(np.int64), taps[::-1], mode="valid") / den
    vander = np.vander(k / m, 4, increasing=True)
    ends = []
    for seg, kk in ((raw[:window], k[:m]), (raw[-window:], k[m + 1:])):
        coef = np.linalg.lstsq(vander, seg.astype(np.float64), rcond=None)[0]
        ends.append(np.vander(kk / m, 4, increasing=True) @ coef)
    return np.concatenate([ends[0], inner, ends[1]])


def test_exact_reference_agrees_with_scipy_where_scipy_is_accurate():
    rng = np.random.default_rng(4)
    raw, _, _ = alpha_frame(rng, "int16", 3000, pulses=2, edge="end")
    np.testing.assert_allclose(exact_codes_savgol(raw, 501),
                               savgol_filter(raw.astype(np.float64), 501, 3),
                               rtol=0, atol=1e-9 * np.abs(raw).max())


def test_largest_window_is_exact_and_one_more_is_nan():
    rng = np.random.default_rng(5)
    raw, scale, offset = alpha_frame(rng, "int16", MAX_SAVGOL_WINDOW + 500, pulses=2)
    v = raw.astype(np.float64) * scale + offset
    baseline = v[v < 300.0].mean()
    smooth = exact_codes_savgol(raw, MAX_SAVGOL_WINDOW) * scale + offset
    expected = (smooth.max() - baseline) / 1000.0 / 1.058
    assert kernel(raw, scale, offset, savgol_window=MAX_SAVGOL_WINDOW) == pytest.approx(
        expected, rel=1e-9)
    assert np.isnan(kernel(raw, scale, offset, savgol_window=MAX_SAVGOL_WINDOW + 2))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [0, 777, 2999])
def test_non_finite_samples_give_nan(dtype, bad, where):
    rng = np.random.default_rng(6)
    raw, scale, offset = alpha_frame(rng, dtype, 3000, pulses=1)
    raw[where] = bad
    with np.errstate(all="raise"):  # and without floating-point warnings
        assert np.isnan(kernel(raw, scale, offset))


@pytest.mark.parametrize(("name", "value"), [
    ("scale", np.nan), ("scale", 0.0), ("scale", np.inf), ("offset", np.nan),
    ("offset", np.inf), ("t0", np.nan), ("dt", np.nan), ("dt", 0.0), ("dt", -1.0),
    ("alpha_threshold_bs", np.nan), ("savgol_window", np.nan), ("savgol_window", 500.0),
    ("savgol_window", 3.0), ("savgol_window", 1.0), ("savgol_window", 0.0),
    ("savgol_window", -501.0), ("savgol_window", 501.5), ("savgol_window", 3001.0),
    ("savgol_window", np.inf), ("sca_factor", np.nan), ("sca_factor", 0.0),
    ("sca_factor", -1.058), ("sca_factor", np.inf),
])
@pytest.mark.parametrize("dtype", ["int16", "float64"])
def test_bad_parameters_give_nan(name, value, dtype):
    rng = np.random.default_rng(7)
    raw, scale, offset = alpha_frame(rng, dtype, 3000, pulses=1)
    p = dict(DEFAULTS, scale=scale, offset=offset) | {name: value}
    with np.errstate(all="raise"):  # no floating-point warnings either
        got = frame_alpha_energy(raw, p["scale"], p["offset"], p["t0"], p["dt"],
                                 p["alpha_threshold_bs"], p["savgol_window"], p["sca_factor"])
    assert np.isnan(got)
    assert np.isfinite(kernel(raw, scale, offset))  # the same frame with good parameters


def test_window_equal_to_the_frame_length_is_allowed_as_in_scipy():
    rng = np.random.default_rng(8)
    raw, scale, offset = alpha_frame(rng, "int16", 501, pulses=1)
    assert_matches(raw, scale, offset, 300.0, 501)
    assert np.isnan(kernel(raw[:500], scale, offset, savgol_window=501))
    assert np.isnan(kernel(raw[:0], scale, offset, savgol_window=501))


def test_infinite_threshold_takes_every_sample_or_none():
    rng = np.random.default_rng(9)
    raw, scale, offset = alpha_frame(rng, "int16", 3000, pulses=1)
    v = raw.astype(np.float64) * scale + offset
    assert kernel(raw, scale, offset, alpha_threshold_bs=np.inf) == pytest.approx(
        reference(raw, scale, offset, v.max() + 1.0, 501), rel=1e-6)
    assert kernel(raw, scale, offset, alpha_threshold_bs=-np.inf) == pytest.approx(
        reference(raw, scale, offset, v.min() - 1.0, 501), rel=1e-6)


def test_kernel_broadcasts_over_frames_and_per_frame_parameters():
    rng = np.random.default_rng(10)
    frames = [alpha_frame(rng, "int16", 2000, pulses=1) for _ in range(6)]
    raw = np.stack([f[0] for f in frames]).reshape(2, 3, 2000)
    scale, offset = frames[0][1], frames[0][2]
    windows = np.array([[5.0], [501.0]])  # one window per "set"
    got = frame_alpha_energy(raw, scale, offset, 0.0, 2e-4, 300.0, windows, 1.058)
    assert got.shape == (2, 3) and got.dtype == np.float64
    for s in range(2):
        for f in range(3):
            np.testing.assert_allclose(
                got[s, f], reference(raw[s, f], scale, offset, 300.0, int(windows[s, 0])),
                rtol=1e-6)
    strided = frame_alpha_energy(raw[:, :, ::2], scale, offset, 0.0, 2e-4, 300.0, 501.0,
                                 1.058)
    np.testing.assert_allclose(strided[1, 2], reference(raw[1, 2, ::2], scale, offset),
                               rtol=1e-6)


def test_no_dither_results_are_reproducible():
    rng = np.random.default_rng(12)
    raw, scale, offset = alpha_frame(rng, "int16", 5000, pulses=1)
    assert kernel(raw, scale, offset) == kernel(raw.copy(), scale, offset)
