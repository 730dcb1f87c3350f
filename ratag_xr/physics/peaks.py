"""Peak finding on a 1-D signal: :func:`find_peaks` with a minimum height and distance.

The same peaks, in the same order, as :func:`scipy.signal.find_peaks` with ``height`` and
``distance`` (its algorithm, step for step: local maxima with flat tops at their middle
sample, then the height condition, then the highest peaks first, each removing the lower
ones closer than ``distance``).  Written here because ``scipy.signal`` takes most of a
second to import, which a small run would pay for one S1 estimate.
"""

from __future__ import annotations

import math

import numpy as np


def local_maxima(x: np.ndarray) -> np.ndarray:
    """Indices of the local maxima of ``x``: samples (or flat runs of equal samples,
    then their middle sample, rounded down) higher than both neighbours; the first and
    last sample are never maxima."""
    x = np.asarray(x)
    n = x.size
    if n < 3:
        return np.zeros(0, dtype=np.intp)
    # runs of equal samples: [start, end] inclusive
    change = np.flatnonzero(x[1:] != x[:-1]) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change - 1, [n - 1]))
    inner = (starts >= 1) & (ends <= n - 2)
    starts, ends = starts[inner], ends[inner]
    top = x[starts]
    peak = (x[starts - 1] < top) & (x[ends + 1] < top)
    return ((starts[peak] + ends[peak]) // 2).astype(np.intp)


def _by_distance(peaks: np.ndarray, priority: np.ndarray, distance: float) -> np.ndarray:
    """Which peaks to keep: from the highest priority down, each kept peak removes the
    not yet removed peaks closer than ``distance`` samples."""
    keep = np.ones(peaks.size, dtype=bool)
    distance_ = math.ceil(distance)
    order = np.argsort(priority)
    for i in range(peaks.size - 1, -1, -1):
        j = order[i]
        if not keep[j]:
            continue
        k = j - 1
        while k >= 0 and peaks[j] - peaks[k] < distance_:
            keep[k] = False
            k -= 1
        k = j + 1
        while k < peaks.size and peaks[k] - peaks[j] < distance_:
            keep[k] = False
            k += 1
    return keep


def find_peaks(x, *, height: float | None = None,
               distance: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(peaks, peak_heights)``: the indices of the local maxima of ``x`` at least
    ``height`` high and at least ``distance`` samples apart (see the module doc)."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"find_peaks takes a 1-D signal, got shape {x.shape}")
    if distance is not None and distance < 1:
        raise ValueError(f"distance must be >= 1 sample, got {distance}")
    peaks = local_maxima(x)
    heights = x[peaks]
    if height is not None:
        keep = height <= heights
        peaks, heights = peaks[keep], heights[keep]
    if distance is not None and peaks.size > 1:
        keep = _by_distance(peaks, heights, distance)
        peaks, heights = peaks[keep], heights[keep]
    return peaks, heights
