"""S1 time of a set from averaged frames (ALGORITHMS.md §3).

The caller averages a few chunks of frames (the reference: one FastFrame file per batch,
5 batches) and passes the chunk means; this module only needs those means, never the set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ratag_xr.errors import ConfigError
from ratag_xr.physics.peaks import find_peaks


@dataclass(frozen=True)
class S1Result:
    """S1 time estimate of a set.  ``t_s1`` and ``t_s1_std`` in µs.

    ``n_candidates``: batches that gave a peak; ``n_kept``: candidates left after the sigma
    cut.  On failure ``t_s1`` and ``t_s1_std`` are NaN and ``reason`` says why.
    """

    t_s1: float
    t_s1_std: float
    n_candidates: int
    n_kept: int
    success: bool
    reason: str

    def to_dict(self) -> dict:
        """Plain-Python dict (JSON-ready)."""
        return asdict(self)


def s1_candidates(mean_waveforms, time, *, min_height=0.001, min_distance=200):
    """Time (µs) of the highest peak before the trigger (t < 0) of each batch mean.

    Returns a float array with one entry per batch, NaN where the batch has a non-finite
    sample before the trigger or no peak of at least ``min_height`` mV.  Peaks are found as
    :func:`scipy.signal.find_peaks` finds them with ``height=min_height`` and
    ``distance=min_distance`` (samples; :func:`ratag_xr.physics.peaks.find_peaks`); PMT
    pulses must already be positive-going (polarity applied).
    """

    w = np.atleast_2d(np.asarray(mean_waveforms, dtype=float))
    t = np.asarray(time, dtype=float).ravel()
    if w.shape[1] != t.size:
        raise ConfigError(
            f"mean_waveforms has {w.shape[1]} samples per batch but time has {t.size}"
        )
    pre = t < 0
    t_pre = t[pre]
    out = np.full(w.shape[0], np.nan)
    for i, row in enumerate(w[:, pre]):
        if row.size == 0 or not np.all(np.isfinite(row)):
            continue
        peaks, heights = find_peaks(row, height=min_height, distance=min_distance)
        if peaks.size:
            out[i] = t_pre[peaks[np.argmax(heights)]]
    return out


def estimate_t_s1(
    mean_waveforms,
    time,
    *,
    min_height: float = 0.001,
    min_distance: int = 200,
    sigma_threshold: float = 1.0,
    n_hist_bins: int = 50,
) -> S1Result:
    """S1 time of a set from ``mean_waveforms`` (n_batches × n_samples, mV) on ``time`` (µs).

    1. per batch, the highest peak at t < 0 (:func:`s1_candidates`);
    2. keep candidates with ``|c − mean| <= sigma_threshold × std`` (std with ddof=0; all
       kept when the std is 0);
    3. ``t_s1`` = centre of the fullest bin of ``np.histogram(kept, bins=n_hist_bins)``
       (the first such bin on a tie); when all kept candidates are equal, that value
       exactly.  ``t_s1_std`` = std of the kept candidates (ddof=0).

    Batches with a non-finite sample before the trigger, or without a peak, give no
    candidate; no candidate at all is a failure (``success=False``), never an exception.
    """
    if sigma_threshold <= 0 or n_hist_bins < 1 or min_distance < 1:
        raise ConfigError(
            "need sigma_threshold > 0, n_hist_bins >= 1, min_distance >= 1; got "
            f"{sigma_threshold}, {n_hist_bins}, {min_distance}"
        )
    cand = s1_candidates(mean_waveforms, time, min_height=min_height, min_distance=min_distance)
    n_batches = cand.size
    cand = cand[np.isfinite(cand)]
    if cand.size == 0:
        return S1Result(
            t_s1=float("nan"), t_s1_std=float("nan"), n_candidates=0, n_kept=0, success=False,
            reason=f"no S1 peak (height >= {min_height} mV, t < 0) found among "
            f"{n_batches} chunk means",
        )  # fmt: skip

    spread = np.std(cand)
    # The relative tolerance keeps candidates exactly one std away despite rounding
    # (two candidates are always both exactly one std from their mean).
    limit = sigma_threshold * spread * (1.0 + 1e-9)
    kept = cand if spread == 0 else cand[np.abs(cand - cand.mean()) <= limit]
    if kept.size == 0:
        return S1Result(
            t_s1=float("nan"), t_s1_std=float("nan"), n_candidates=int(cand.size), n_kept=0,
            success=False, reason=f"none of {cand.size} S1 candidates lies within "
            f"{sigma_threshold} std of their mean",
        )  # fmt: skip
    if kept.min() == kept.max():
        # np.histogram would spread a single value over [v - 0.5, v + 0.5] and shift the mode.
        t_s1 = float(kept[0])
    else:
        counts, edges = np.histogram(kept, bins=n_hist_bins)
        k = int(np.argmax(counts))
        t_s1 = float(0.5 * (edges[k] + edges[k + 1]))
    return S1Result(
        t_s1=t_s1, t_s1_std=float(np.std(kept)), n_candidates=int(cand.size),
        n_kept=int(kept.size), success=True, reason="",
    )  # fmt: skip
