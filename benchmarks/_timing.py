"""What the benchmark scripts share: the best of repeated wall-clock timings."""

from __future__ import annotations

import time

import numpy as np


def best_time(fn, repeats: int) -> float:
    """Best wall-clock seconds of ``repeats`` calls of ``fn``."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
