"""Pass 2 over a frame: the ion S2 area in a per-set time window (ALGORITHMS.md §5).

The window comes from a per-set reduction of pass 1 (the S2 window statistics), hence a
second pass.  The pedestal is recomputed here from its ``n_pedestal`` samples: that is
about 1 % of the samples the window integral reads, and it keeps the pedestal an exact
integer sum of codes instead of a rounded mV value carried over from pass 1.
"""

from __future__ import annotations

import numpy as np
from numba import guvectorize, njit

from ratag_xr.kernels.conditioning import (
    clipped_trapezoid,
    first_index,
    pedestal_codes,
)
from ratag_xr.kernels.numeric import MAX_MA_WINDOW, as_count, has_nan, is_finite

_SIGNATURES = [
    f"void({dtype}[:], {'float64, ' * 9}float64[:])"
    for dtype in ("int8", "int16", "float32", "float64")
]
_LAYOUT = "(n)" + ",()" * 9 + "->()"


@guvectorize(_SIGNATURES, _LAYOUT, nopython=True, cache=True)
def frame_pass2(raw, scale, offset, t0, dt, n_pedestal, ma_window, bs_threshold,
                s2_window_start, s2_window_end, s2_area):
    """Ion S2 area of one frame (mV·µs).

    The samples with ``s2_window_start <= t <= s2_window_end`` (µs) are cut first,
    pedestal-subtracted, smoothed on their own (moving average of ``ma_window`` samples,
    zero-padded at the window edges), clipped below ``bs_threshold`` (mV) and integrated
    with the trapezoid rule and the sample spacing ``dt`` (µs).  NaN if the window holds
    no sample, a parameter is NaN/invalid or the frame has NaN samples.  ``offset`` (mV)
    cancels in the pedestal subtraction and is accepted for a uniform kernel signature.
    """
    s2_area[0] = np.nan
    n = raw.shape[0]
    n_ped = as_count(n_pedestal, np.inf)
    w = as_count(ma_window, MAX_MA_WINDOW)
    if n == 0 or n_ped < 0 or w < 0 or scale == 0 or bs_threshold != bs_threshold:
        return
    if not (is_finite(scale) and is_finite(t0) and is_finite(dt)) or not dt > 0:
        return
    a = first_index(t0, dt, n, s2_window_start, True)
    b = first_index(t0, dt, n, s2_window_end, False) - 1
    if s2_window_start != s2_window_start or s2_window_end != s2_window_end or a > b:
        return
    frame = np.ascontiguousarray(raw)  # contiguous view: vectorised scans (see pass1)
    if has_nan(frame):
        return
    ped = pedestal_codes(frame, n_ped)
    sgn = 1 if scale > 0 else -1
    hl, hr = w // 2, (w - 1) // 2
    clip_w = bs_threshold * w / abs(scale)
    area = clipped_trapezoid(frame, a, b, a, b, hl, hr, sgn, ped, clip_w)
    s2_area[0] = area * scale / w * dt + 0.0  # + 0.0: no negative zero


@njit(nogil=True, cache=True)
def frames_pass2(*args):
    """:func:`frame_pass2` over a block of frames, the GIL released (``Feature.frames``)."""
    frame_pass2(*args)
