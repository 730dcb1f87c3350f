"""Per-set S2 window statistics from per-frame S2 start/end/duration (ALGORITHMS.md §4).

Input: the per-frame ``s2_start``, ``s2_end`` and ``s2_duration`` (µs; NaN for frames
without a crossing).  Output: a centre and a spread for each, every statistic standing on
its own: too few values for one of them fails that one alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ratag_xr.errors import ConfigError

#: Scale factor turning a median absolute deviation into a Gaussian sigma.
MAD_TO_SIGMA = 1.4826

ALL_METHODS = ("percentile", "mad", "std")


@dataclass(frozen=True)
class CentreSpread:
    """Centre and spread of one per-frame quantity (µs) over the values used (``n``)."""

    mean: float
    std: float
    n: int
    success: bool
    reason: str

    def to_dict(self) -> dict:
        """Plain-Python dict (JSON-ready)."""
        return asdict(self)


@dataclass(frozen=True)
class S2WindowStats:
    """S2 start, end and duration statistics of a set (µs).

    ``mean``/``std`` of each are the method's centre and spread (for ``percentile``:
    median and (p84 − p16)/2), named as the stored variables are.
    """

    method: str
    start: CentreSpread
    end: CentreSpread
    duration: CentreSpread

    @property
    def window_success(self) -> bool:
        """Start and end are both known: the ion S2 integration window exists (§5)."""
        return self.start.success and self.end.success

    @property
    def success(self) -> bool:
        """All three statistics succeeded."""
        return self.window_success and self.duration.success

    @property
    def t_s2_start_mean(self) -> float:
        return self.start.mean

    @property
    def t_s2_start_std(self) -> float:
        return self.start.std

    @property
    def t_s2_end_mean(self) -> float:
        return self.end.mean

    @property
    def t_s2_end_std(self) -> float:
        return self.end.std

    @property
    def s2_duration_mean(self) -> float:
        return self.duration.mean

    @property
    def s2_duration_std(self) -> float:
        return self.duration.std

    def to_dict(self) -> dict:
        """Flat dict: ``t_s2_start_mean``, ``t_s2_start_std``, ``t_s2_start_n``,
        ``t_s2_start_success``, ``t_s2_start_reason`` and likewise for ``t_s2_end`` and
        ``s2_duration``, plus ``method``."""
        out: dict = {"method": self.method}
        for prefix, stat in (
            ("t_s2_start", self.start),
            ("t_s2_end", self.end),
            ("s2_duration", self.duration),
        ):
            for key, value in stat.to_dict().items():
                out[f"{prefix}_{key}"] = value
        return out


def centre_spread(values, method: str = "percentile"):
    """(centre, spread) of a 1-D array of finite values.

    - ``percentile``: median, (p84 − p16)/2 (numpy's default linear interpolation);
    - ``mad``: median, 1.4826 × median(|x − median|);
    - ``std``: mean, standard deviation with ddof=0 (numpy's default, as the reference).
    """
    x = np.asarray(values, dtype=float)
    if method == "percentile":
        p16, p50, p84 = np.percentile(x, [16.0, 50.0, 84.0])
        return float(p50), float((p84 - p16) / 2.0)
    if method == "mad":
        med = float(np.median(x))
        return med, MAD_TO_SIGMA * float(np.median(np.abs(x - med)))
    if method == "std":
        return float(np.mean(x)), float(np.std(x))
    raise ConfigError(f"unknown S2 window method {method!r}; choose one of {ALL_METHODS}")


def _stat(values, method: str, min_values: int, what: str) -> CentreSpread:
    if values.size < min_values:
        return CentreSpread(
            mean=float("nan"), std=float("nan"), n=int(values.size), success=False,
            reason=f"only {values.size} {what}, need >= {min_values}",
        )  # fmt: skip
    centre, spread = centre_spread(values, method)
    return CentreSpread(mean=centre, std=spread, n=int(values.size), success=True, reason="")


def s2_window_stats(
    s2_start,
    s2_end,
    s2_duration,
    *,
    method: str = "percentile",
    duration_cuts=(5.0, 25.0),
    min_values: int = 10,
) -> S2WindowStats:
    """Centre and spread of S2 start, end and duration over the frames of a set (µs).

    Start and end use every finite value.  The duration uses only finite durations with
    ``duration_cuts[0] <= d <= duration_cuts[1]`` (both ends included, like the time
    windows of §2).  Each statistic needs ``min_values`` values, else it alone fails
    (NaN values, ``success=False`` and a reason).  See :func:`centre_spread` for methods.
    """
    if method not in ALL_METHODS:
        raise ConfigError(f"unknown S2 window method {method!r}; choose one of {ALL_METHODS}")
    lo, hi = (float(c) for c in duration_cuts)
    if not lo < hi:
        raise ConfigError(f"s2_duration_cuts must have low < high, got {tuple(duration_cuts)}")
    if int(min_values) < 1:
        raise ConfigError(f"min_values must be >= 1, got {min_values}")

    def finite(a):
        a = np.asarray(a, dtype=float).ravel()
        return a[np.isfinite(a)]

    start, end, dur = finite(s2_start), finite(s2_end), finite(s2_duration)
    dur = dur[(dur >= lo) & (dur <= hi)]
    return S2WindowStats(
        method=method,
        start=_stat(start, method, min_values, "finite S2 starts"),
        end=_stat(end, method, min_values, "finite S2 ends"),
        duration=_stat(dur, method, min_values, f"S2 durations inside [{lo:g}, {hi:g}] us"),
    )
