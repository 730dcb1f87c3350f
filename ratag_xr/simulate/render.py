"""Render frames to raw oscilloscope codes: baseline + noise − pulses, rounded and clipped.

Numerics only (numpy/numba).  The kernel works in codes and samples; the caller converts
mV and µs once (:func:`render_block`).
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: Gaussian pulses are stamped over ±PULSE_HALF_WIDTH σ (the rest is < 4e-6 of the peak).
PULSE_HALF_WIDTH = 5.0


@numba.njit(nogil=True, cache=True)
def _render(scratch, base, noise_sigma, offsets, centre, amp, sigma, lo, hi, out):
    """Fill ``out`` (k, n) with codes from unit-normal ``scratch`` (k, n) (overwritten).

    base (k,) DC level, noise_sigma: codes; offsets (k + 1,): pulse ranges per frame;
    centre, sigma (m,): samples; amp (m,): codes, subtracted (pulses go down).
    Rounding is half-up; values outside [lo, hi] are clipped as the digitiser does.
    """
    k, n = scratch.shape
    for i in range(k):
        row = scratch[i]
        b = base[i]
        for j in range(n):
            row[j] = b + noise_sigma * row[j]
        for p in range(offsets[i], offsets[i + 1]):
            c, a, s = centre[p], amp[p], sigma[p]
            j0 = max(int(math.ceil(c - PULSE_HALF_WIDTH * s)), 0)
            j1 = min(int(math.floor(c + PULSE_HALF_WIDTH * s)), n - 1)
            inv = 1.0 / s
            for j in range(j0, j1 + 1):
                x = (j - c) * inv
                row[j] -= a * math.exp(-0.5 * x * x)
        for j in range(n):
            v = math.floor(row[j] + 0.5)
            out[i, j] = min(max(v, lo), hi)


def render_block(scratch, base_codes, noise_codes, offsets, centre, amp_codes, sigma, dtype):
    """Codes of a block of frames; see :func:`_render` for the arguments (``scratch`` is
    consumed).  Returns a new (k, n) array of ``dtype``."""
    info = np.iinfo(dtype)
    out = np.empty(scratch.shape, dtype=dtype)
    _render(
        scratch,
        np.ascontiguousarray(base_codes, dtype=np.float64),
        float(noise_codes),
        np.ascontiguousarray(offsets, dtype=np.int64),
        np.ascontiguousarray(centre, dtype=np.float64),
        np.ascontiguousarray(amp_codes, dtype=np.float64),
        np.ascontiguousarray(sigma, dtype=np.float64),
        float(info.min),
        float(info.max),
        out,
    )
    return out
