"""The per-frame kernels against plain-numpy versions of ALGORITHMS.md §2, §4, §5, §7 and
the §15 options (clean S2 timing, the excessive-S1 and minimum-area X-ray checks).

The references below are written from the text, not from the kernels: numpy.convolve for
the moving average, boolean masks on the time array for windows, numpy.trapezoid for
areas, and the window cut before smoothing.  Random frames are realistic (baseline,
noise, S1, ion S2 and X-ray-like pulses) so that every branch is exercised.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratag_xr.kernels import frame_pass1, frame_pass2
from ratag_xr.vocabulary import XrayOutcome

PASS1_PARAMS = ("n_pedestal", "ma_window", "threshold_s2", "s2_clip", "s2_timing",
                "s2_max_gap", "t_s1", "time_drift", "ts2_tol", "bs_threshold", "max_area_s1",
                "max_area_s2", "min_s2_sep", "min_s1_sep", "min_xray_area")
#: The §15 options at their defaults (off): the kernel inputs the features pass for them.
OPTIONS_OFF = {"s2_timing": 0.0, "s2_max_gap": 1.0, "max_area_s1": np.inf,
               "min_xray_area": 0.0}
PASS1_OUTPUTS = ("pedestal", "s2_start", "s2_end", "s2_duration", "xray_code", "xray_area")
PASS2_PARAMS = ("n_pedestal", "ma_window", "bs_threshold", "s2_window_start",
                "s2_window_end")
NAN_OUTPUTS = {"pedestal": np.nan, "s2_start": np.nan, "s2_end": np.nan,
               "s2_duration": np.nan, "xray_code": -1, "xray_area": np.nan}
CODE_RANGE = {"int8": (-128, 127), "int16": (-32768, 32767)}
EDGE_TOLERANCE = 1e-6  # ALGORITHMS.md §2: window edges compared to 1e-6 x dt


# ---------------------------------------------------------------- plain-numpy reference


def moving_average(x, w):
    """§2: numpy.convolve(x, ones(w)/w, mode="same"), zero-padded at both ends.

    For an input shorter than ``w`` numpy's "same" returns ``w`` values; the definition
    says "same length as its input", so take the same centred box out of "full".
    """
    kernel = np.ones(w) / w
    if len(x) >= w:
        return np.convolve(x, kernel, mode="same")
    start = (w - 1) // 2
    return np.convolve(x, kernel, mode="full")[start:start + len(x)]


def clip(x, threshold):
    """§2: values below the threshold set to 0."""
    x = x.copy()
    x[x < threshold] = 0.0
    return x


def valid_count(x):
    return np.isfinite(x) and x >= 1 and x == int(x)


def signal(raw, scale, n_pedestal):
    """Pedestal (codes) and pedestal-subtracted signal in mV."""
    x = raw.astype(np.float64)
    ped = x[:int(n_pedestal)].mean()
    return ped, (x - ped) * scale


def reference_pass1(raw, scale, offset, t0, dt, p):
    """§2 pedestal, §4 per-frame S2 window, §7 X-ray classification."""
    out = dict(NAN_OUTPUTS)
    x = raw.astype(np.float64)
    ok = (valid_count(p["n_pedestal"]) and valid_count(p["ma_window"]) and dt > 0
          and np.isfinite(scale) and scale != 0 and np.isfinite(offset) and len(raw) > 0)
    if not ok or np.isnan(x).any():
        return out
    w = int(p["ma_window"])
    t = t0 + np.arange(len(raw)) * dt
    tol = EDGE_TOLERANCE * dt  # §2: window edges equal to a sample time up to rounding
    ped, v = signal(raw, scale, p["n_pedestal"])
    out["pedestal"] = ped * scale + offset

    # §4: smooth the whole frame, clip, first/last sample above threshold after the limit
    clean = p["s2_timing"] == 1.0
    timing_ok = p["s2_timing"] == 0.0 or (clean and p["s2_max_gap"] >= 0)
    if p["threshold_s2"] >= 0 and not np.isnan(p["s2_clip"]) and timing_ok:
        smooth = clip(moving_average(v, w), p["s2_clip"])
        above = np.flatnonzero((t > p["t_s1"] + 0.75 * p["time_drift"] + tol)
                               & (smooth > p["threshold_s2"]))
        if above.size and clean:
            # §15: the first sample above threshold after the last gap (between samples
            # above threshold) longer than s2_max_gap, compared with the §2 tolerance
            gaps = np.flatnonzero(np.diff(t[above]) > p["s2_max_gap"] + tol)
            above = above[gaps[-1] + 1:] if gaps.size else above
        if above.size and t[above[-1]] > t[above[0]]:
            out["s2_start"], out["s2_end"] = t[above[0]], t[above[-1]]
            out["s2_duration"] = t[above[-1]] - t[above[0]]

    # §7
    x_start = p["t_s1"] + p["time_drift"] + p["ts2_tol"]
    names = ("bs_threshold", "max_area_s1", "max_area_s2", "min_s2_sep", "min_s1_sep",
             "min_xray_area")
    if np.isnan(x_start) or any(np.isnan(p[k]) for k in names):
        return out
    bs = p["bs_threshold"]
    # §15, before §7.1: the samples above bs_threshold before S1
    if v[(t < p["t_s1"] - tol) & (v > bs)].sum() > p["max_area_s1"]:
        out["xray_code"] = 4
        return out
    if v[(t >= x_start - tol) & (v > bs)].sum() > p["max_area_s2"]:
        out["xray_code"] = 1
        return out
    window = (t >= p["t_s1"] - tol) & (t <= x_start + tol)
    if not window.any():
        return out  # nothing to classify: -1
    smooth = clip(moving_average(v[window], w), bs)
    above = np.flatnonzero(smooth > 0)
    if not above.size:
        out["xray_code"] = 2
        return out
    t_window = t[window]
    t_first, t_last = t_window[above[0]], t_window[above[-1]]
    if not (x_start - t_last > p["min_s2_sep"] and t_first - p["t_s1"] > p["min_s1_sep"]):
        out["xray_code"] = 3
        return out
    area = np.trapezoid(smooth, dx=dt)
    if area < p["min_xray_area"]:  # §15, after §7.4
        out["xray_code"] = 5
        return out
    out["xray_code"] = 0
    out["xray_area"] = area
    return out


def reference_pass2(raw, scale, offset, t0, dt, p):
    """§5: cut the window, pedestal-subtract, smooth the window, clip, trapezoid."""
    x = raw.astype(np.float64)
    ok = (valid_count(p["n_pedestal"]) and valid_count(p["ma_window"]) and dt > 0
          and np.isfinite(scale) and scale != 0 and not np.isnan(p["bs_threshold"]))
    if not ok or len(raw) == 0 or np.isnan(x).any():
        return np.nan
    t = t0 + np.arange(len(raw)) * dt
    tol = EDGE_TOLERANCE * dt
    window = (t >= p["s2_window_start"] - tol) & (t <= p["s2_window_end"] + tol)
    if not window.any():
        return np.nan
    _, v = signal(raw, scale, p["n_pedestal"])
    smooth = clip(moving_average(v[window], int(p["ma_window"])), p["bs_threshold"])
    return np.trapezoid(smooth, dx=dt)


# ---------------------------------------------------------------- realistic random frames


def realistic_frame(rng, dtype, n=None, dt=None, noise=None):
    """A frame with baseline, noise, S1, ion S2 and maybe an X-ray, plus its parameters.

    Returns (raw, scale, offset, t0, dt, params) with params for both passes; parameter
    values are drawn around the ALGORITHMS.md defaults and the pulses around the windows
    they define, so that every outcome occurs.
    """
    dtype = np.dtype(dtype)
    n = int(rng.integers(200, 1500)) if n is None else n
    dt = rng.uniform(0.02, 0.06) if dt is None else dt
    t0 = rng.uniform(-3.0, -0.5)
    t = t0 + np.arange(n) * dt
    t_s1 = rng.uniform(t0, 0.5)
    time_drift = rng.uniform(3.0, 14.0)
    ts2_tol = rng.uniform(-4.0, 0.0)
    sign = -1.0 if rng.random() < 0.8 else 1.0
    if dtype.kind == "i":
        scale = sign * (rng.uniform(0.05, 0.3) if dtype.itemsize == 1
                        else rng.uniform(0.001, 0.02))
    else:
        scale = sign * rng.uniform(0.01, 2.0)
    noise = rng.uniform(0.02, 0.3) if noise is None else noise
    mv = rng.normal(0.0, noise, n)  # mV
    mv += rng.uniform(0.0, 8.0) * np.exp(-0.5 * ((t - t_s1) / rng.uniform(0.02, 0.3)) ** 2)
    s2_start = t_s1 + time_drift + rng.normal(0.0, 0.5)
    s2_width = rng.uniform(0.5, 8.0)
    in_s2 = (t >= s2_start) & (t <= s2_start + s2_width)
    mv[in_s2] += rng.uniform(0.0, 4.0) * (1 + 0.3 * rng.standard_normal(in_s2.sum()))
    for _ in range(rng.integers(0, 3)):  # X-ray-like pulses in the drift region
        tx = rng.uniform(t_s1 - 0.5, t_s1 + time_drift + ts2_tol + 0.5)
        mv += rng.uniform(0.5, 6.0) * np.exp(-0.5 * ((t - tx) / rng.uniform(0.05, 0.5)) ** 2)
    codes = rng.uniform(-0.3, 0.3) * 100 + mv / scale
    if dtype.kind == "i":
        lo, hi = CODE_RANGE[dtype.name]
        codes = np.clip(np.round(codes), lo, hi)
    raw = codes.astype(dtype)
    window_start = s2_start + rng.uniform(-2.0, 1.0)
    params = {
        "n_pedestal": float(rng.integers(1, 300)),
        "ma_window": float(rng.integers(1, 16)),
        "threshold_s2": rng.choice([0.4, rng.uniform(0.05, 1.5)]),
        "s2_clip": rng.choice([0.02, rng.uniform(0.0, 1.0)]),
        "t_s1": t_s1,
        "time_drift": time_drift,
        "ts2_tol": ts2_tol,
        "bs_threshold": rng.choice([0.8, rng.uniform(0.1, 1.5)]),
        "max_area_s2": rng.choice([1e5, rng.uniform(5.0, 300.0)]),
        "min_s2_sep": rng.uniform(0.0, 2.0),
        "min_s1_sep": rng.uniform(0.0, 2.0),
        "s2_window_start": window_start,
        "s2_window_end": window_start + rng.uniform(-0.1, 12.0),
    }
    offset = rng.uniform(-5.0, 5.0)
    # the §15 options, each on in about half of the frames
    params.update(
        s2_timing=float(rng.integers(0, 2)),
        s2_max_gap=rng.choice([1.0, rng.uniform(0.05, 3.0)]),
        max_area_s1=rng.choice([np.inf, rng.uniform(0.0, 60.0)]),
        min_xray_area=rng.choice([0.0, rng.uniform(0.0, 3.0)]),
    )
    return raw, scale, offset, t0, dt, params


def run_pass1(raw, scale, offset, t0, dt, p):
    values = frame_pass1(raw, scale, offset, t0, dt, *(p[k] for k in PASS1_PARAMS))
    return dict(zip(PASS1_OUTPUTS, values, strict=True))


def run_pass2(raw, scale, offset, t0, dt, p):
    return frame_pass2(raw, scale, offset, t0, dt, *(p[k] for k in PASS2_PARAMS))


def assert_pass1_equal(got, expected):
    assert int(got["xray_code"]) == expected["xray_code"], (got, expected)
    for name in ("s2_start", "s2_end", "s2_duration"):  # sample times: bit-identical
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    for name in ("pedestal", "xray_area"):
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-9, atol=1e-12,
                                   err_msg=name)


def assert_pass2_equal(got, expected):
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def check_frame(raw, scale, offset, t0, dt, p):
    got = run_pass1(raw, scale, offset, t0, dt, p)
    expected = reference_pass1(raw, scale, offset, t0, dt, p)
    assert_pass1_equal(got, expected)
    assert_pass2_equal(run_pass2(raw, scale, offset, t0, dt, p),
                       reference_pass2(raw, scale, offset, t0, dt, p))
    return expected


# ---------------------------------------------------------------- tests


def test_reference_moving_average_is_numpy_same_and_centred():
    x = np.arange(1.0, 8.0)
    # w = 4: box [i-2, i+1]; w = 3: [i-1, i+1]; both zero-padded
    np.testing.assert_allclose(moving_average(x, 4)[:3], [(1 + 2) / 4, 6 / 4, 10 / 4])
    np.testing.assert_allclose(moving_average(x, 3)[-1], (6 + 7) / 3)
    np.testing.assert_allclose(moving_average(x[:2], 5), [(1 + 2) / 5, (1 + 2) / 5])


def test_random_frames_match_and_reach_every_outcome():
    rng = np.random.default_rng(20240611)
    codes, crossings, cleaned = [], [], 0
    for i in range(360):
        dtype = ("int8", "int16", "float32", "float64")[i % 4]
        raw, scale, offset, t0, dt, p = realistic_frame(rng, dtype)
        expected = check_frame(raw, scale, offset, t0, dt, p)
        codes.append(expected["xray_code"])
        crossings.append(np.isfinite(expected["s2_start"]))
        if p["s2_timing"] == 1.0:  # clean timing moved the start past a gap
            reference = reference_pass1(raw, scale, offset, t0, dt, p | {"s2_timing": 0.0})
            cleaned += bool(expected["s2_start"] != reference["s2_start"])
    counts = {int(c): codes.count(c) for c in XrayOutcome}
    assert all(counts[int(c)] > 5 for c in XrayOutcome if c >= 0), counts
    assert 20 < sum(crossings) < len(crossings) - 20
    assert cleaned > 10


@pytest.mark.parametrize("dtype", ["int8", "int16", "float32", "float64"])
def test_long_frames_cross_block_boundaries(dtype):
    """Frames of 5 GS/s length: scans and sums span many blocks of the kernels."""
    rng = np.random.default_rng(7)
    codes, starts = [], []
    for n in (5000, 40000, 190000):
        for _ in range(4):
            raw, scale, offset, t0, dt, p = realistic_frame(rng, dtype, n=n, dt=36.0 / n,
                                                            noise=rng.uniform(0.02, 0.1))
            expected = check_frame(raw, scale, offset, t0, dt, p)
            codes.append(expected["xray_code"])
            starts.append((expected["s2_start"] - t0) / dt)
    assert len(set(codes)) >= 2, codes
    assert np.nanmax(starts) > 20000  # found after many blocks of samples


def test_ma_window_above_the_limit_is_invalid():
    rng = np.random.default_rng(8)
    raw, scale, offset, t0, dt, p = realistic_frame(rng, "int16", n=300)
    got = run_pass1(raw, scale, offset, t0, dt, p | {"ma_window": 32769.0})
    assert np.isnan(got["s2_start"]) and got["xray_code"] == -1
    assert np.isnan(run_pass2(raw, scale, offset, t0, dt, p | {"ma_window": 32769.0}))
    whole = p | {"ma_window": 32768.0, "s2_window_start": -1e3, "s2_window_end": 1e3}
    assert not np.isnan(run_pass2(raw, scale, offset, t0, dt, whole))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from(["int8", "int16", "float32", "float64"]),
       ma_window=st.integers(1, 15))
def test_hypothesis_frames_match(seed, dtype, ma_window):
    rng = np.random.default_rng(seed)
    raw, scale, offset, t0, dt, p = realistic_frame(rng, dtype)
    p["ma_window"] = float(ma_window)
    check_frame(raw, scale, offset, t0, dt, p)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from(["int8", "int16", "float64"]),
       n=st.integers(1, 40),
       ma_window=st.integers(1, 15),
       start=st.floats(-2.0, 2.0),
       width=st.floats(-0.2, 2.0))
def test_hypothesis_short_frames_and_edge_windows(seed, dtype, n, ma_window, start, width):
    """Frames shorter than the box, windows over or outside the frame edges."""
    rng = np.random.default_rng(seed)
    raw, scale, offset, _, _, p = realistic_frame(rng, dtype, n=n)
    t0, dt = -0.5, 1.0 / 16  # frame covers [-0.5, -0.5 + (n - 1) / 16]
    p.update(ma_window=float(ma_window), t_s1=start, time_drift=width + 2.7,
             ts2_tol=-2.7, s2_window_start=start, s2_window_end=start + width,
             min_s1_sep=0.0, min_s2_sep=0.0, bs_threshold=rng.uniform(0.0, 0.5),
             n_pedestal=float(rng.integers(1, 60)))
    check_frame(raw, scale, offset, t0, dt, p)


@pytest.mark.parametrize("dtype", ["int8", "int16", "float32", "float64"])
def test_flat_frames_have_no_signal(dtype):
    rng = np.random.default_rng(1)
    _, scale, offset, t0, dt, p = realistic_frame(rng, dtype, n=500)
    for level in (0, 7):
        raw = np.full(500, level, dtype=dtype)
        expected = check_frame(raw, scale, offset, t0, dt, p)
        assert np.isnan(expected["s2_start"])
        assert expected["xray_code"] in (-1, 2)
        np.testing.assert_allclose(expected["pedestal"], level * scale + offset)


# A hand-made frame (t0 = 0, dt = 0.5 µs, scale 0.25 mV/code, zero pedestal, w = 1) with
# an X-ray pulse of 2 mV at t = 10..12 µs and an S2 of 1 mV at t = 20..24.5 µs.  Every
# number is exact in binary, so ties with thresholds and window edges are real ties: they
# check "above" is strict, clip keeps values equal to the threshold and windows include
# both ends.  Expected values are worked out by hand.
HAND = dict(n_pedestal=10.0, ma_window=1.0, threshold_s2=0.4, s2_clip=0.02, t_s1=1.0,
            time_drift=20.0, ts2_tol=-2.0, bs_threshold=0.5, max_area_s2=1e5,
            min_s2_sep=1.0, min_s1_sep=1.0, s2_window_start=20.0, s2_window_end=24.5,
            **OPTIONS_OFF)
NAN = np.nan
HAND_CASES = [  # overrides -> (s2_start, s2_end, xray_code, xray_area)
    ({}, (20.0, 24.5, 0, 5.0)),
    ({"threshold_s2": 1.0}, (NAN, NAN, 0, 5.0)),  # 1 mV is not above 1 mV
    ({"threshold_s2": 0.99}, (20.0, 24.5, 0, 5.0)),
    ({"s2_clip": 1.0}, (20.0, 24.5, 0, 5.0)),  # clip keeps a value equal to it
    ({"s2_clip": 1.01}, (NAN, NAN, 0, 5.0)),
    # t > t_s1 + 0.75 time_drift = 20 excludes t = 20; X-ray window [2, 24] meets the S2
    ({"t_s1": 2.0, "time_drift": 24.0}, (20.5, 24.5, 3, NAN)),
    ({"bs_threshold": 2.0}, (20.0, 24.5, 0, 5.0)),
    ({"bs_threshold": 2.01}, (20.0, 24.5, 2, NAN)),
    ({"max_area_s2": 10.0}, (20.0, 24.5, 0, 5.0)),  # 10 S2 samples of 1 mV: not above
    ({"max_area_s2": 9.99}, (20.0, 24.5, 1, NAN)),
    ({"ts2_tol": -1.0, "max_area_s2": 9.5}, (20.0, 24.5, 1, NAN)),  # t >= 20 counts t = 20
    ({"min_s2_sep": 7.0}, (20.0, 24.5, 3, NAN)),  # 19 - 12 = 7 is not > 7
    ({"min_s2_sep": 6.99}, (20.0, 24.5, 0, 5.0)),
    ({"min_s1_sep": 9.0}, (20.0, 24.5, 3, NAN)),  # 10 - 1 = 9 is not > 9
    # window [10, 19] starts on the pulse: its first sample is a half trapezoid edge
    ({"t_s1": 10.0, "time_drift": 11.0, "min_s1_sep": -0.25}, (20.0, 24.5, 0, 4.5)),
    ({"t_s1": 10.0, "time_drift": 11.0, "min_s1_sep": -0.25, "bs_threshold": 2.0},
     (20.0, 24.5, 0, 4.5)),
    # §15 clean timing: with t_s1 + 0.75 time_drift = 7 the X-ray pulse (10 .. 12) is the
    # reference S2 start; clean starts after the 8 µs gap 12 .. 20 (20 - 12 = 8 is not > 8)
    ({"time_drift": 8.0}, (10.0, 24.5, 2, NAN)),
    ({"time_drift": 8.0, "s2_timing": 1.0}, (20.0, 24.5, 2, NAN)),
    ({"time_drift": 8.0, "s2_timing": 1.0, "s2_max_gap": 8.0}, (10.0, 24.5, 2, NAN)),
    ({"time_drift": 8.0, "s2_timing": 1.0, "s2_max_gap": 7.99}, (20.0, 24.5, 2, NAN)),
    ({"s2_timing": 1.0, "s2_max_gap": 0.5}, (20.0, 24.5, 0, 5.0)),  # 0.5 spacing: no gap
    ({"s2_timing": 1.0, "s2_max_gap": 0.49}, (NAN, NAN, 0, 5.0)),  # start = end: NaN
    ({"s2_max_gap": 0.49}, (20.0, 24.5, 0, 5.0)),  # reference timing ignores the gap
    # §15 excessive S1: samples above bs_threshold at t < t_s1 (t = 12 is not < 12)
    ({"t_s1": 12.0, "max_area_s1": 8.0}, (NAN, NAN, 3, NAN)),
    ({"t_s1": 12.0, "max_area_s1": 7.99}, (NAN, NAN, 4, NAN)),
    ({"t_s1": 12.01, "max_area_s1": 9.99}, (NAN, NAN, 4, NAN)),
    ({"t_s1": 12.01, "max_area_s1": 10.0}, (NAN, NAN, 0, 5.0)),  # the S2 is the "X-ray"
    ({"max_area_s1": 0.0}, (20.0, 24.5, 0, 5.0)),  # nothing before S1: 0 is not > 0
    # §15 minimum area: an accepted area below it is rejected
    ({"min_xray_area": 5.0}, (20.0, 24.5, 0, 5.0)),
    ({"min_xray_area": 5.01}, (20.0, 24.5, 5, NAN)),
]
HAND_S2_AREAS = [  # (window start, window end, bs_threshold) -> s2_area
    ((20.0, 24.5, 0.5), 4.5), ((20.5, 24.5, 0.5), 4.0), ((20.0, 24.0, 0.5), 4.0),
    ((24.5, 24.5, 0.5), 0.0), ((26.0, 29.0, 0.5), 0.0),
    ((-5.0, 100.0, 0.5), 0.5 * (5 * 2.0 + 10 * 1.0)), ((20.0, 24.5, 1.0), 4.5),
    ((20.0, 24.5, 1.01), 0.0), ((-5.0, 100.0, 1.01), 0.5 * 5 * 2.0),
    ((30.0, 40.0, 0.5), NAN), ((24.0, 23.0, 0.5), NAN),  # after the last sample; empty
]


def hand_frame(dtype, sign):
    raw = np.zeros(60, dtype)
    raw[20:25] = sign * 8
    raw[40:50] = sign * 4
    return raw, sign * 0.25


@pytest.mark.parametrize("dtype", ["int8", "int16", "float32", "float64"])
@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize(("overrides", "expected"), HAND_CASES)
def test_hand_frame_ties(dtype, sign, overrides, expected):
    raw, scale = hand_frame(dtype, sign)
    got = run_pass1(raw, scale, 0.0, 0.0, 0.5, HAND | overrides)
    s2_start, s2_end, code, area = expected
    np.testing.assert_array_equal([got["s2_start"], got["s2_end"]], [s2_start, s2_end])
    assert got["xray_code"] == code
    np.testing.assert_allclose(got["xray_area"], area, rtol=1e-12)


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize(("window", "expected"), HAND_S2_AREAS)
def test_hand_frame_s2_area(sign, window, expected):
    raw, scale = hand_frame("int16", sign)
    p = HAND | dict(zip(("s2_window_start", "s2_window_end", "bs_threshold"), window,
                        strict=True))
    np.testing.assert_allclose(run_pass2(raw, scale, 0.0, 0.0, 0.5, p), expected, rtol=1e-12)


@pytest.mark.parametrize("sign", [1, -1])
def test_excessive_s2_sum_over_many_samples(sign):
    """The §7 sum runs over 90 000 samples: 900 spikes of 2.5 mV after the X-ray S2 start."""
    raw = np.zeros(100_000, np.int16)
    raw[10_000::100] = sign * 10  # t = 1000, 1010, ... µs with dt = 0.1 µs
    p = HAND | {"t_s1": 1.0, "time_drift": 998.0, "ts2_tol": -2.0}  # X-ray S2 start 997 µs
    total = 900 * 2.5
    for max_area, code in ((total - 1.0, 1), (total + 1.0, 2), (0.5 * total + 1.0, 1)):
        got = run_pass1(raw, sign * 0.25, 0.0, 0.0, 0.1, p | {"max_area_s2": max_area})
        assert got["xray_code"] == code, max_area


def test_nan_frames_give_nan_outputs():
    rng = np.random.default_rng(2)
    raw, scale, offset, t0, dt, p = realistic_frame(rng, "float64", n=400)
    raw[123] = np.nan
    got = run_pass1(raw, scale, offset, t0, dt, p)
    for name, value in NAN_OUTPUTS.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    assert np.isnan(run_pass2(raw, scale, offset, t0, dt, p))


@pytest.mark.parametrize("name", ["t_s1", "time_drift", "ts2_tol", "bs_threshold",
                                  "max_area_s2", "min_s2_sep", "min_s1_sep", "threshold_s2",
                                  "s2_clip", "n_pedestal", "ma_window", "s2_window_start",
                                  "s2_window_end", "s2_timing", "s2_max_gap", "max_area_s1",
                                  "min_xray_area"])
def test_nan_parameters(name):
    rng = np.random.default_rng(3)
    raw, scale, offset, t0, dt, p = realistic_frame(rng, "int16", n=600)
    p[name] = np.nan
    expected = check_frame(raw, scale, offset, t0, dt, p)
    if name in ("t_s1", "time_drift", "n_pedestal", "ma_window"):
        assert np.isnan(expected["s2_start"]) and expected["xray_code"] == -1


@pytest.mark.parametrize("value", [0.0, -3.0, 2.5])
def test_invalid_counts(value):
    rng = np.random.default_rng(4)
    raw, scale, offset, t0, dt, p = realistic_frame(rng, "int16", n=300)
    for name in ("n_pedestal", "ma_window"):
        got = run_pass1(raw, scale, offset, t0, dt, p | {name: value})
        assert np.isnan(got["pedestal"]) and got["xray_code"] == -1
        assert np.isnan(run_pass2(raw, scale, offset, t0, dt, p | {name: value}))


def test_pedestal_longer_than_frame_uses_the_whole_frame():
    rng = np.random.default_rng(5)
    raw, scale, offset, t0, dt, p = realistic_frame(rng, "int8", n=250)
    p["n_pedestal"] = 2000.0
    expected = check_frame(raw, scale, offset, t0, dt, p)
    np.testing.assert_allclose(expected["pedestal"], raw.mean() * scale + offset)


def test_kernels_broadcast_over_frames_and_sets():
    rng = np.random.default_rng(6)
    frames = [realistic_frame(rng, "int16", n=700) for _ in range(6)]
    raw = np.stack([f[0] for f in frames]).reshape(2, 3, 700)
    _, scale, offset, t0, dt, p = frames[0]
    t_s1 = np.array([[p["t_s1"]], [p["t_s1"] + 0.5]])  # one value per set
    values = frame_pass1(raw, scale, offset, t0, dt,
                         *(t_s1 if k == "t_s1" else p[k] for k in PASS1_PARAMS))
    assert values[0].shape == (2, 3) and values[4].dtype == np.int8
    for s in range(2):
        for f in range(3):
            expected = reference_pass1(raw[s, f], scale, offset, t0, dt,
                                       p | {"t_s1": t_s1[s, 0]})
            got = {k: v[s, f] for k, v in zip(PASS1_OUTPUTS, values, strict=True)}
            assert_pass1_equal(got, expected)


@pytest.mark.parametrize("dtype", ["int16", "float64"])
def test_window_edges_equal_to_a_sample_up_to_rounding(dtype):
    """§2: an edge within 1e-6 dt of a sample time is that sample's time (inclusive windows
    keep it); farther away it is not.  Without the tolerance, an edge computed as a median
    of sample times could drop the edge sample depending on how the time axis was built."""
    rng = np.random.default_rng(5)
    t0, dt, n = -3.0, 0.2e-3, 4000
    raw = rng.integers(40, 90, n).astype(dtype)
    p = {"n_pedestal": 200.0, "ma_window": 9.0, "bs_threshold": 0.0}
    t = t0 + np.arange(n) * dt
    i, j = 1500, 2500
    for shift, inside in ((0.4e-6, True), (-0.4e-6, True), (5e-6, False)):
        start = t[i] + shift * dt  # > t[i] by less than the tolerance: t[i] stays in
        end = t[j] - shift * dt
        got = run_pass2(raw, 0.05, 0.0, t0, dt, p | {"s2_window_start": start,
                                                      "s2_window_end": end})
        lo, hi = (i, j) if inside else (i + 1, j - 1)
        _, v = signal(raw, 0.05, 200)
        expected = np.trapezoid(clip(moving_average(v[lo:hi + 1], 9), 0.0), dx=dt)
        np.testing.assert_allclose(got, expected, rtol=1e-12)
        assert got == pytest.approx(reference_pass2(raw, 0.05, 0.0, t0, dt, p | {
            "s2_window_start": start, "s2_window_end": end}), rel=1e-12)


# ---------------------------------------------------------------- GIL-free block callers


def _block(frames: list, strided: bool) -> np.ndarray:
    """Frames stacked as 2 sets x N frames; ``strided``: a view into wider rows (as a raw
    file's records with pre-/post-charge samples are)."""
    raw = np.stack(frames).reshape(2, len(frames) // 2, -1)
    if not strided:
        return raw
    wide = np.zeros(raw.shape[:-1] + (raw.shape[-1] + 40,), dtype=raw.dtype)
    wide[..., 25:25 + raw.shape[-1]] = raw
    return wide[..., 25:25 + raw.shape[-1]]


@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("dtype", ["int8", "int16", "float32", "float64"])
def test_block_callers_give_the_gufuncs_outputs(dtype, strided):
    """Each built-in feature's ``frames`` (its kernel over a block, the GIL released)
    returns what its gufunc returns, bit for bit: per-frame scales, per-set inputs,
    scalar inputs, contiguous and strided blocks, and a block of no frame."""
    from ratag_xr.driver import KernelRef, call_kernel
    from ratag_xr.features import FEATURES
    from tests.test_alpha_kernel import alpha_frame

    rng = np.random.default_rng(11)
    pmt = [realistic_frame(rng, dtype, n=700, dt=0.04) for _ in range(8)]
    _, _, offset, t0, dt, p = pmt[0]
    scale = np.array([f[1] for f in pmt]).reshape(2, 4)  # one per frame (its file's)
    per_set = {"t_s1": np.array([[p["t_s1"]], [p["t_s1"] + 0.3]]),
               "s2_window_start": np.array([[p["s2_window_start"]], [p["s2_window_start"]
                                                                      - 1.0]])}
    alpha = [alpha_frame(rng, dtype, 3000) for _ in range(8)]
    cases = {
        "s2_window_xray": ([f[0] for f in pmt], [scale, offset, t0, dt, *(
            per_set.get(k, p[k]) for k in PASS1_PARAMS)]),
        "s2_area": ([f[0] for f in pmt], [scale, offset, t0, dt, *(
            per_set.get(k, p[k]) for k in PASS2_PARAMS)]),
        "alpha_energy": ([a[0] if isinstance(a, tuple) else a for a in alpha],
                         [np.abs(scale) * 50, 0.5, -3.0, 2e-4, 300.0, 501.0, 1.058]),
    }
    for name, (frames, inputs) in cases.items():
        feature = FEATURES[name]
        assert feature.frames is not None, name
        raw = _block(frames, strided)
        ref = KernelRef(feature.kernel, feature.frames)
        dtypes = [o.dtype for o in feature.outputs]
        got = call_kernel(ref, raw, inputs, dtypes)
        expected = feature.kernel(raw, *inputs)
        expected = expected if isinstance(expected, tuple) else (expected,)
        assert len(got) == len(expected) == len(feature.outputs)
        for o, g, e in zip(feature.outputs, got, expected, strict=True):
            assert g.shape == (2, 4) and g.dtype == e.dtype, (name, o.name)
            np.testing.assert_array_equal(g, e, err_msg=f"{name}.{o.name}")
        assert np.isfinite(got[-1]).any() or name == "s2_window_xray"  # real values
        empty = call_kernel(ref, raw[:, :0], [np.asarray(v)[..., :0] if np.ndim(v) else v
                                              for v in inputs], dtypes)
        assert all(e.shape == (2, 0) for e in empty)
