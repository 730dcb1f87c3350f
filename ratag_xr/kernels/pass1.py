"""Pass 1 over a frame: pedestal, S2 window crossings (§4) and X-ray classification (§7).

One guvectorized kernel, :func:`frame_pass1`, so a frame is read once for all of them.
It touches only the samples each step needs: the pedestal samples, the S2 search
forwards from its first candidate to the first crossing and backwards from the end to
the last crossing, the unsmoothed samples after the X-ray S2 start, and the X-ray window.
"""

from __future__ import annotations

import numpy as np
from numba import guvectorize, njit

from ratag_xr.kernels.conditioning import (
    clipped_trapezoid,
    first_above,
    first_index,
    last_above,
    pedestal_codes,
    rule,
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

_SCALARS = "float64, " * 15
_SIGNATURES = [
    f"void({dtype}[:], {_SCALARS}float64[:], float64[:], float64[:], float64[:], "
    "int8[:], float64[:])"
    for dtype in ("int8", "int16", "float32", "float64")
]
_LAYOUT = "(n)" + ",()" * 15 + "->(),(),(),(),(),()"


@njit(nogil=True, cache=True)
def s2_crossings(raw, t0, dt, ped, sgn, w, level_w, strict, t_min):
    """First and last sample index after ``t_min`` whose clipped average passes; -1s."""
    n = raw.shape[0]
    hl, hr = w // 2, (w - 1) // 2
    lo = first_index(t0, dt, n, t_min, False)
    first = first_above(raw, 0, n - 1, lo, n - 1, hl, hr, sgn, ped, level_w, strict)
    if first < 0:
        return -1, -1
    last = last_above(raw, 0, n - 1, first, n - 1, hl, hr, sgn, ped, level_w, strict)
    return first, last


@njit(nogil=True, cache=True)
def classify_xray(raw, t0, dt, ped, scale, w, t_s1, s2_start, bs_threshold, max_area_s2,
                  min_s2_sep, min_s1_sep):
    """X-ray outcome code and area (mV·µs, NaN unless accepted) of one frame (§7)."""
    n = raw.shape[0]
    sgn = 1 if scale > 0 else -1
    # 1. unsmoothed samples above bs_threshold from the X-ray S2 start on
    lo = first_index(t0, dt, n, s2_start, True)
    stop = max_area_s2 / abs(scale) if bs_threshold >= 0 else np.inf
    excess = sum_above(raw, lo, sgn, ped, bs_threshold / abs(scale), stop)
    if excess * scale > max_area_s2:
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
    return XRAY_ACCEPTED, area * scale / w * dt + 0.0  # + 0.0: no negative zero


@guvectorize(_SIGNATURES, _LAYOUT, nopython=True, cache=True)
def frame_pass1(raw, scale, offset, t0, dt, n_pedestal, ma_window, threshold_s2, s2_clip,
                t_s1, time_drift, ts2_tol, bs_threshold, max_area_s2, min_s2_sep, min_s1_sep,
                pedestal, s2_start, s2_end, s2_duration, xray_code, xray_area):
    """Pedestal, S2 window crossings and X-ray outcome of one frame.

    Inputs: ``raw`` codes along time; ``scale`` mV per code (sign makes pulses positive),
    ``offset`` mV; ``t0``, ``dt`` µs (sample i is at ``t0 + i*dt``); ``n_pedestal``,
    ``ma_window`` sample counts; ``threshold_s2``, ``s2_clip`` mV (§4); ``t_s1``,
    ``time_drift``, ``ts2_tol`` µs; ``bs_threshold`` mV; ``max_area_s2`` mV (a sum of
    samples, §7); ``min_s2_sep``, ``min_s1_sep`` µs.

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
    if threshold_s2 == threshold_s2 and s2_clip == s2_clip and t_min == t_min \
            and threshold_s2 >= 0:
        level, strict = rule(threshold_s2, s2_clip)
        first, last = s2_crossings(frame, t0, dt, ped, sgn, w, level * w / abs(scale),
                                   strict, t_min)
        if first >= 0 and last > first:
            s2_start[0] = t0 + first * dt
            s2_end[0] = t0 + last * dt
            s2_duration[0] = s2_end[0] - s2_start[0]

    x_start = t_s1 + time_drift + ts2_tol
    params_ok = (x_start == x_start and bs_threshold == bs_threshold
                 and max_area_s2 == max_area_s2 and min_s2_sep == min_s2_sep
                 and min_s1_sep == min_s1_sep)
    if params_ok:
        code, area = classify_xray(frame, t0, dt, ped, scale, w, t_s1, x_start, bs_threshold,
                                   max_area_s2, min_s2_sep, min_s1_sep)
        xray_code[0] = code
        xray_area[0] = area
