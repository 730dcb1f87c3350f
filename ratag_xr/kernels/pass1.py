"""Pass 1 over a frame: pedestal, S2 window crossings (§4, §15 clean timing) and X-ray
classification (§7, §15 checks).

One guvectorized kernel, :func:`frame_pass1`, so a frame is read once for all of them.
It touches only the samples each step needs: the pedestal samples, the S2 search
forwards from its first candidate to the first crossing and backwards from the end to
the last crossing (with clean timing also back from the last crossing to the start after
the last gap), the unsmoothed samples after the X-ray S2 start (and, with the §15 S1
check, before t_s1), and the X-ray window.
"""

from __future__ import annotations

import numpy as np
from numba import guvectorize, njit

from ratag_xr.kernels.conditioning import (
    EDGE_TOLERANCE,
    clipped_trapezoid,
    first_above,
    first_index,
    last_above,
    pedestal_codes,
    rule,
    start_after_gap,
    sum_above,
)
from ratag_xr.kernels.numeric import MAX_MA_WINDOW, as_count, has_nan, is_finite
from ratag_xr.vocabulary import XrayOutcome

# X-ray outcome codes (ALGORITHMS.md §7) as plain ints, which numba compiles in as
# constants; NOT_CLASSIFIABLE when the frame cannot be classified (NaN samples, NaN or
# invalid parameters, or an X-ray window holding no sample).
XRAY_NOT_CLASSIFIABLE = int(XrayOutcome.NOT_CLASSIFIABLE)
XRAY_ACCEPTED = int(XrayOutcome.ACCEPTED)
XRAY_EXCESSIVE_S2 = int(XrayOutcome.EXCESSIVE_S2)
XRAY_NO_SIGNAL = int(XrayOutcome.NO_SIGNAL)
XRAY_INSUFFICIENT_SEPARATION = int(XrayOutcome.INSUFFICIENT_SEPARATION)
XRAY_EXCESSIVE_S1 = int(XrayOutcome.EXCESSIVE_S1)
XRAY_BELOW_MIN_AREA = int(XrayOutcome.BELOW_MIN_AREA)
#: The ``s2_timing`` choices; the kernel takes each as its index (0.0, 1.0).
S2_TIMINGS = ("reference", "clean")
S2_TIMING_REFERENCE, S2_TIMING_CLEAN = (float(S2_TIMINGS.index(c)) for c in S2_TIMINGS)

_SCALARS = "float64, " * 19
_SIGNATURES = [
    f"void({dtype}[:], {_SCALARS}float64[:], float64[:], float64[:], float64[:], "
    "int8[:], float64[:])"
    for dtype in ("int8", "int16", "float32", "float64")
]
_LAYOUT = "(n)" + ",()" * 19 + "->(),(),(),(),(),()"


@njit(nogil=True, cache=True)
def s2_crossings(raw, t0, dt, ped, sgn, w, level_w, strict, t_min, max_gap):
    """First and last sample index after ``t_min`` whose clipped average passes; -1s.

    With a finite ``max_gap`` (µs, §15 clean timing) the first is the first passing sample
    after the last gap of more than ``max_gap`` between passing samples (the gap compared
    with the §2 tolerance of 1e-6 dt: a gap equal to it up to rounding is not longer).
    """
    n = raw.shape[0]
    hl, hr = w // 2, (w - 1) // 2
    lo = first_index(t0, dt, n, t_min, False)
    first = first_above(raw, 0, n - 1, lo, n - 1, hl, hr, sgn, ped, level_w, strict)
    if first < 0:
        return -1, -1
    last = last_above(raw, 0, n - 1, first, n - 1, hl, hr, sgn, ped, level_w, strict)
    if max_gap != np.inf:
        first = start_after_gap(raw, 0, n - 1, first, last, hl, hr, sgn, ped, level_w,
                                strict, t0, dt, max_gap + EDGE_TOLERANCE * dt)
    return first, last


@njit(nogil=True, cache=True)
def excess_above(raw, lo, hi, scale, ped, bs_threshold, max_area):
    """Sum (mV) of the unsmoothed samples lo <= i < hi above ``bs_threshold`` (mV), summed
    until it passes ``max_area`` (mV)."""
    sgn = 1 if scale > 0 else -1
    stop = max_area / abs(scale) if bs_threshold >= 0 else np.inf
    return sum_above(raw, lo, hi, sgn, ped, bs_threshold / abs(scale), stop) * scale


@njit(nogil=True, cache=True)
def classify_xray(raw, t0, dt, ped, scale, w, t_s1, s2_start, bs_threshold, max_area_s1,
                  max_area_s2, min_s2_sep, min_s1_sep, min_xray_area):
    """X-ray outcome code and area (mV·µs, NaN unless accepted) of one frame (§7, §15)."""
    n = raw.shape[0]
    sgn = 1 if scale > 0 else -1
    # §15 (infinite max_area_s1: off): unsmoothed samples above bs_threshold before t_s1
    if max_area_s1 != np.inf:
        hi = first_index(t0, dt, n, t_s1, True)
        if excess_above(raw, 0, hi, scale, ped, bs_threshold, max_area_s1) > max_area_s1:
            return XRAY_EXCESSIVE_S1, np.nan
    # 1. unsmoothed samples above bs_threshold from the X-ray S2 start on
    lo = first_index(t0, dt, n, s2_start, True)
    if excess_above(raw, lo, n, scale, ped, bs_threshold, max_area_s2) > max_area_s2:
        return XRAY_EXCESSIVE_S2, np.nan
    # 2. window [t_s1, s2_start], smoothed on its own, clipped below bs_threshold
    a = first_index(t0, dt, n, t_s1, True)
    b = first_index(t0, dt, n, s2_start, False) - 1
    if a > b:
        return XRAY_NOT_CLASSIFIABLE, np.nan
    hl, hr = w // 2, (w - 1) // 2
    level, strict = rule(0.0, bs_threshold)
    level_w = level * w / abs(scale)
    first = first_above(raw, a, b, a, b, hl, hr, sgn, ped, level_w, strict)
    if first < 0:
        return XRAY_NO_SIGNAL, np.nan
    last = last_above(raw, a, b, first, b, hl, hr, sgn, ped, level_w, strict)
    # 3. separation from S1 and from the S2 start
    t_first = t0 + first * dt
    t_last = t0 + last * dt
    if not (s2_start - t_last > min_s2_sep and t_first - t_s1 > min_s1_sep):
        return XRAY_INSUFFICIENT_SEPARATION, np.nan
    # 4. trapezoid of the clipped window; with bs_threshold > 0 it is 0 outside [first, last]
    clip_w = bs_threshold * w / abs(scale)
    lo_sum, hi_sum = (first, last) if bs_threshold > 0 else (a, b)
    area = clipped_trapezoid(raw, a, b, lo_sum, hi_sum, hl, hr, sgn, ped, clip_w)
    area = area * scale / w * dt + 0.0  # + 0.0: no negative zero
    # §15 (min_xray_area 0: off, a clipped integral is never negative)
    if area < min_xray_area:
        return XRAY_BELOW_MIN_AREA, np.nan
    return XRAY_ACCEPTED, area


@guvectorize(_SIGNATURES, _LAYOUT, nopython=True, cache=True)
def frame_pass1(raw, scale, offset, t0, dt, n_pedestal, ma_window, threshold_s2, s2_clip,
                s2_timing, s2_max_gap, t_s1, time_drift, ts2_tol, bs_threshold, max_area_s1,
                max_area_s2, min_s2_sep, min_s1_sep, min_xray_area,
                pedestal, s2_start, s2_end, s2_duration, xray_code, xray_area):
    """Pedestal, S2 window crossings and X-ray outcome of one frame.

    Inputs: ``raw`` codes along time; ``scale`` mV per code (sign makes pulses positive),
    ``offset`` mV; ``t0``, ``dt`` µs (sample i is at ``t0 + i*dt``); ``n_pedestal``,
    ``ma_window`` sample counts; ``threshold_s2``, ``s2_clip`` mV (§4); ``s2_timing``
    0 (reference, §4) or 1 (clean, §15: the start is the first crossing after the last
    gap of more than ``s2_max_gap`` µs between crossings); ``t_s1``, ``time_drift``,
    ``ts2_tol`` µs; ``bs_threshold`` mV; ``max_area_s1`` (§15, inf: no check) and
    ``max_area_s2`` mV (sums of samples, §7); ``min_s2_sep``, ``min_s1_sep`` µs;
    ``min_xray_area`` mV·µs (§15: a smaller accepted area is rejected).

    Outputs (filled in place): ``pedestal`` mV; ``s2_start``, ``s2_end``, ``s2_duration``
    µs (NaN without a crossing or with end <= start); ``xray_code`` (a
    :class:`~ratag_xr.vocabulary.XrayOutcome`); ``xray_area`` mV·µs (NaN unless
    accepted).  NaN samples and invalid parameters (NaN, ``n_pedestal`` not an integer
    >= 1, ``ma_window`` not an integer in [1, 32768], ``dt <= 0``, ``scale == 0``,
    ``threshold_s2 < 0``) make the outputs that need them NaN (code -1), never an
    exception.
    """
    pedestal[0] = np.nan
    s2_start[0] = np.nan
    s2_end[0] = np.nan
    s2_duration[0] = np.nan
    xray_code[0] = XRAY_NOT_CLASSIFIABLE
    xray_area[0] = np.nan
    n = raw.shape[0]
    n_ped = as_count(n_pedestal, np.inf)
    w = as_count(ma_window, MAX_MA_WINDOW)
    if n == 0 or n_ped < 0 or w < 0 or scale == 0:
        return
    if not (is_finite(scale) and is_finite(offset) and is_finite(t0) and is_finite(dt)):
        return
    if not dt > 0:
        return
    # gufunc arguments have "any" layout; a contiguous view (copied only if the frame is
    # strided) lets LLVM vectorise the scans
    frame = np.ascontiguousarray(raw)
    if has_nan(frame):
        return
    ped = pedestal_codes(frame, n_ped)
    pedestal[0] = ped * scale + offset
    sgn = 1 if scale > 0 else -1

    t_min = t_s1 + 0.75 * time_drift
    # a NaN gap made -1 first: no ordered comparison with NaN (see kernels.numeric)
    max_gap = s2_max_gap if s2_max_gap == s2_max_gap else -1.0
    if s2_timing == S2_TIMING_REFERENCE:
        max_gap = np.inf
    timing_ok = s2_timing == S2_TIMING_REFERENCE or (s2_timing == S2_TIMING_CLEAN
                                                     and max_gap >= 0)
    if threshold_s2 == threshold_s2 and s2_clip == s2_clip and t_min == t_min \
            and threshold_s2 >= 0 and timing_ok:
        level, strict = rule(threshold_s2, s2_clip)
        first, last = s2_crossings(frame, t0, dt, ped, sgn, w, level * w / abs(scale),
                                   strict, t_min, max_gap)
        if first >= 0 and last > first:
            s2_start[0] = t0 + first * dt
            s2_end[0] = t0 + last * dt
            s2_duration[0] = s2_end[0] - s2_start[0]

    x_start = t_s1 + time_drift + ts2_tol
    params_ok = (x_start == x_start and bs_threshold == bs_threshold
                 and max_area_s1 == max_area_s1 and max_area_s2 == max_area_s2
                 and min_s2_sep == min_s2_sep and min_s1_sep == min_s1_sep
                 and min_xray_area == min_xray_area)
    if params_ok:
        code, area = classify_xray(frame, t0, dt, ped, scale, w, t_s1, x_start, bs_threshold,
                                   max_area_s1, max_area_s2, min_s2_sep, min_s1_sep,
                                   min_xray_area)
        xray_code[0] = code
        xray_area[0] = area


@njit(nogil=True, cache=True)
def frames_pass1(*args):
    """:func:`frame_pass1` over a block of frames, the GIL released (``Feature.frames``)."""
    frame_pass1(*args)
