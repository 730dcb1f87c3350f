"""Numeric primitives of the kernels that depend on the input type, and parameter checks.

Integer codes and float samples take different arithmetic: codes are summed exactly in
integers (int32 inside a block of samples, int64 across blocks), floats in float64.  The
``overload``-based helpers below pick the type when numba compiles a kernel for one input
dtype, so the kernels are written once for int8, int16, float32 and float64 input.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload

# Box sums of int16 codes over a block of samples are int32: (block + w) * 2**15 < 2**31.
MAX_MA_WINDOW = 32768
_INT32_MAX = 2.0**31 - 1
_INT_LIMIT = 2.0**62


def _integer(raw) -> bool:
    return isinstance(raw.dtype, types.Integer)


def acc_zero(raw):
    """0 in the exact accumulator type of ``raw``: int64 for codes, float64 for floats."""
    raise NotImplementedError  # compiled through the overload below


@overload(acc_zero, jit_options={"cache": True})
def _acc_zero(raw):
    if _integer(raw):
        return lambda raw: np.int64(0)
    return lambda raw: np.float64(0.0)


def block_value(raw, x):
    """``x`` (a sample of ``raw``) in the block type: int32 for codes, float64 for floats."""
    raise NotImplementedError


@overload(block_value, jit_options={"cache": True})
def _block_value(raw, x):
    if _integer(raw):
        return lambda raw, x: np.int32(x)
    return lambda raw, x: np.float64(x)


def block_buffer(raw, size):
    """An uninitialised block-type array of ``size`` (prefix sums of a block of samples)."""
    raise NotImplementedError


@overload(block_buffer, jit_options={"cache": True})
def _block_buffer(raw, size):
    if _integer(raw):
        return lambda raw, size: np.empty(size, np.int32)
    return lambda raw, size: np.empty(size, np.float64)


def sum_limit(raw, limit):
    """``limit`` as the threshold of a strict ``x > limit`` test on block-type values.

    For codes, ``x > limit`` equals ``x > floor(limit)`` for every integer ``x``: return
    that as int32 (clamped; block values never reach the clamp), so hot loops compare
    integers.  For floats return ``limit`` unchanged.
    """
    raise NotImplementedError


@overload(sum_limit, jit_options={"cache": True})
def _sum_limit(raw, limit):
    if _integer(raw):

        def impl(raw, limit):
            f = np.floor(limit)
            return np.int32(min(max(f, -_INT32_MAX), _INT32_MAX))

        return impl
    return lambda raw, limit: np.float64(limit)


# Parameters are checked for NaN with quiet comparisons (==, !=) before any ordered one:
# an ordered comparison with NaN (or a NaN/inf -> int conversion) raises the
# floating-point "invalid" flag, which numpy reports as a RuntimeWarning after the gufunc.


@njit(nogil=True, cache=True)
def is_finite(x):
    """True unless ``x`` is NaN or infinite (without raising floating-point flags)."""
    return x == x and x != np.inf and x != -np.inf


@njit(nogil=True, cache=True)
def as_count(x, largest):
    """``x`` as an integer count in [1, largest], or -1 if NaN, out of range or fractional."""
    # LLVM may evaluate comparisons and conversions speculatively: make y finite first
    y = x if x == x else 0.0
    y = min(max(y, 0.0), _INT_LIMIT)
    if y < 1.0 or y > largest or y != np.floor(y) or y != x:
        return -1
    return np.int64(y)


@njit(nogil=True, cache=True)
def has_nan(raw):
    """True if any sample is NaN (always False for integer codes; compiled away)."""
    for i in range(raw.shape[0]):
        if raw[i] != raw[i]:
            return True
    return False
