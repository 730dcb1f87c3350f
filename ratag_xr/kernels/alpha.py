"""Alpha energy of one frame of the alpha (silicon PIN) channel (ALGORITHMS.md §12).

One guvectorized kernel, :func:`frame_alpha_energy`: baseline, cubic Savitzky–Golay
smoothing exactly as ``scipy.signal.savgol_filter(v, w, 3)`` (``mode="interp"``), maximum,
divided by the SCA factor.  The frame is read once, in blocks of samples that stay in the
L1 cache while the baseline sum, the smoothing and the maximum use them.

Savitzky–Golay from running sums instead of a ``w``-tap filter.  For a window of
``w = 2m + 1`` samples centred on sample ``i`` let ``M_j(i) = Σ_{k=-m..m} k^j y[i+k]``.
The odd powers of a symmetric window drop out of the centre value, so the cubic and the
quadratic least-squares fits agree there, and the 2×2 normal equations of ``(c0, c2)``
give the classic closed form

    SG(i) = N(i) / den,   N(i) = a·M_0(i) − 15·M_2(i) = Σ_k (a − 15k²)·y[i+k],
    a = 3(3m² + 3m − 1),   den = (2m − 1)(2m + 1)(2m + 3),

an integer numerator for integer codes.  Sliding the window by one sample
(``y_in = y[i+m]`` enters, ``y_out = y[i−1−m]`` leaves, every ``k`` drops by one):

    M_0(i) = M_0 + y_in − y_out
    M_2(i) = M_2 − 2·M_1 + M_0(i) + (m² − 1)·y_in − (m² + 2m)·y_out
    M_1(i) = M_1 − M_0(i) + m·(y_in + y_out) + y_in

(old ``M_1``, ``M_2`` on the right).  Float samples use exactly this, O(1) per sample;
the sums are taken afresh at the start of every block so that float rounding cannot
build up along the frame.

Integer codes slide the same three-dimensional state in another basis, the numerator and
its first and second differences, where the update needs additions only (sliding
``M_0, M_1, M_2`` costs five multiplications per sample in a serial loop; this form runs
about 1.8x faster).  Because the weights ``a − 15k²`` are one parabola on the window,
the third difference of ``N`` involves only the six samples at the window edges:

    N(i) − 3N(i−1) + 3N(i−2) − N(i−3) = s(i)
      = G0·(y[i+m] − y[i−m−3]) + G1·(y[i+m−1] − y[i−m−2]) + G2·(y[i+m−2] − y[i−m−1]),
    G0 = −3(2m − 1)(m − 1),  G1 = 3(2m − 1)(2m + 3),  G2 = −3(2m + 3)(m + 2).

``s`` is formed for a block in a vectorised loop; three running sums ``c1 += s``,
``c2 += c1``, ``c3 += c2`` then give ``c3 = N(i)``, ``c2 = N(i) − N(i−1)``,
``c1 = N(i) − 2N(i−1) + N(i−2)``, started from ``N`` at the centres m, m+1, m+2
(summed directly).  Every value is an exact integer, so nothing drifts.

Exactness (integer codes, |y| <= 2**15 for int16, 2**7 for int8) for
``w <= MAX_SAVGOL_WINDOW = 16383``, i.e. m <= 8191 < 2**13; every int64 value stays far
below 2**63 (bounds for int16; int8 is 2**8 smaller):

* |G0| < 6m², |G1| < 12(m + 1)², |G2| < 6(m + 2)², all < 2**30 (int32), and a
  difference of two codes is < 2**16, so |s| < 2**16·24(m + 2)² < 2**47;
* |a − 15k²| <= a < 9(m + 1)² < 2**29.2 on the window, so
  |N| <= (2m + 1)·9(m + 1)²·2**15 < 2**14·2**29.2·2**15 = 2**58.2;
* hence |c3| < 2**58.2, |c2| <= 2·max|N| < 2**59.2, |c1| <= 4·max|N| < 2**60.2, and every
  partial sum of an update (a value of the same kind plus |s| < 2**47) stays < 2**61;
* the direct sums of a window (and the two slides that start the running sums):
  |M_0| < 2**29, |M_1| <= m(m + 1)·2**15 < 2**41, |M_2| <= m(m + 1)(2m + 1)/3·2**15
  < 2**53.4, the slide terms |(m² + 2m)·y| < 2**41, |a·M_0| < 2**58.2, |15·M_2| < 2**57.3;
* the baseline sum: int32 partial sums over <= BLOCK = 2**11 codes (< 2**26), int64 total.

Interp ends: scipy fits a cubic to the first (last) ``w`` samples and evaluates it at the
first (last) ``m`` positions.  In the centred coordinate ``k`` of that window the normal
equations split into an even pair ``(c0, c2)`` from ``M_0, M_2`` and an odd pair
``(c1, c3)`` from ``M_1, M_3``, with the symmetric sums ``S_j = Σ k^j`` in closed form:

    c0 = (S4·M0 − S2·M2) / De,   c2 = (S0·M2 − S2·M0) / De,   De = S0·S4 − S2²
    c1 = (S6·M1 − S4·M3) / Do,   c3 = (S2·M3 − S4·M1) / Do,   Do = S2·S6 − S4²

(``De = S2(2m − 1)(2m + 1)(2m + 3)/15``, ``Do = S2²·9(m − 1)(m + 2)(2m − 1)(2m + 3)/525``
without cancellation), then ``p(k) = c0 + c1·k + c2·k² + c3·k³`` at ``k = −m..−1`` (first
end) and ``1..m`` (last end).  ``M_3`` is summed in float64 (it exceeds int64 for the
largest windows and feeds a float solve anyway).

The baseline pass is fused into the blocks: each block also sums the samples that enter
it and lie below ``alpha_threshold_bs``.  For integer codes that test is turned into an
integer code range once, exactly equal to ``raw·scale + offset < alpha_threshold_bs``
evaluated in float64 (the expression is monotonic in the code).
"""

from __future__ import annotations

import numpy as np
from numba import guvectorize, njit, types
from numba.extending import overload

from ratag_xr.kernels.numeric import as_count, is_finite

#: Largest Savitzky–Golay window (samples): int64 sums stay exact up to it (see above).
MAX_SAVGOL_WINDOW = 16383
#: Polynomial order of the smoothing (ALGORITHMS.md §12).
SAVGOL_ORDER = 3
#: Fewer samples than this below the threshold: the baseline is a median instead.
MIN_BELOW_THRESHOLD = 10
#: The median baseline is taken over the first this many samples.
N_MEDIAN_SAMPLES = 200
BLOCK = 2048  # window centres per block
_CODE_LIMIT = 2.0**20  # beyond any int8/int16 code: "all codes" / "no code" as a bound

_SIGNATURES = [
    f"void({dtype}[:], {'float64, ' * 7}float64[:])"
    for dtype in ("int8", "int16", "float32", "float64")
]
_LAYOUT = "(n)" + ",()" * 7 + "->()"


def _is_integer(raw) -> bool:
    return isinstance(raw.dtype, types.Integer)


def exact(raw):
    """True (a compile-time constant) for integer codes: the running sums are exact."""
    raise NotImplementedError  # compiled through the overload below


@overload(exact, jit_options={"cache": True})
def _exact(raw):
    if _is_integer(raw):
        return lambda raw: True
    return lambda raw: False


def acc(raw, x):
    """``x`` in the accumulator type of ``raw``: int64 for codes, float64 for floats."""
    raise NotImplementedError


@overload(acc, jit_options={"cache": True})
def _acc(raw, x):
    if _is_integer(raw):
        return lambda raw, x: np.int64(x)
    return lambda raw, x: np.float64(x)


def below_sum(src, lo, hi, scale, offset, threshold):
    """Sum and number of the samples of ``src`` below the baseline threshold.

    Codes: ``lo <= code <= hi`` (the code range of :func:`code_range`); floats:
    ``x * scale + offset < threshold`` (mV) directly.
    """
    raise NotImplementedError


@overload(below_sum, jit_options={"cache": True})
def _below_sum(src, lo, hi, scale, offset, threshold):
    if _is_integer(src):

        def impl(src, lo, hi, scale, offset, threshold):
            # int32 partial sums over BLOCK samples (BLOCK * 2**15 < 2**31) vectorise wider
            lo32 = np.int32(max(lo, -(2**31)))
            hi32 = np.int32(min(hi, 2**31 - 1))
            s = np.int64(0)
            c = 0
            for b in range(0, src.shape[0], BLOCK):
                part = src[b:b + BLOCK]
                s32 = np.int32(0)
                c32 = np.int32(0)
                for j in range(part.shape[0]):
                    x = np.int32(part[j])
                    keep = np.int32((x >= lo32) & (x <= hi32))
                    s32 += x * keep
                    c32 += keep
                s += s32
                c += c32
            return s, c

        return impl

    def impl(src, lo, hi, scale, offset, threshold):
        s = 0.0
        c = 0
        for j in range(src.shape[0]):
            x = np.float64(src[j])
            keep = x * scale + offset < threshold
            s += x * keep
            c += keep
        return s, c

    return impl


@njit(nogil=True, cache=True)
def _below(code, scale, offset, threshold):
    return np.float64(code) * scale + offset < threshold


@njit(nogil=True, cache=True)
def code_range(scale, offset, threshold):
    """Integer codes ``[lo, hi]`` with ``code * scale + offset < threshold`` (float64).

    ``code * scale + offset`` is monotonic in ``code`` (rounding is monotonic), so the
    codes below the threshold form one half-line: found from an estimate, then moved to
    the exact boundary by evaluating the same float expression.  ``scale`` != 0.
    """
    c = (threshold - offset) / scale
    c = min(max(c, -_CODE_LIMIT), _CODE_LIMIT) if c == c else 0.0
    k = np.int64(np.floor(c))
    if scale > 0:  # codes <= k
        while k < _CODE_LIMIT and _below(k + 1, scale, offset, threshold):
            k += 1
        while k > -_CODE_LIMIT and not _below(k, scale, offset, threshold):
            k -= 1
        return np.int64(-_CODE_LIMIT), k
    while k > -_CODE_LIMIT and _below(k - 1, scale, offset, threshold):  # codes >= k
        k -= 1
    while k < _CODE_LIMIT and not _below(k, scale, offset, threshold):
        k += 1
    return k, np.int64(_CODE_LIMIT)


@njit(nogil=True, cache=True)
def window_moments(frame, c, m):
    """``M_0, M_1, M_2`` (accumulator type) and ``M_3`` (float64) of the window at ``c``."""
    m0 = acc(frame, 0)
    m1 = acc(frame, 0)
    m2 = acc(frame, 0)
    m3 = 0.0
    src = frame[c - m:c + m + 1]
    for j in range(2 * m + 1):
        k = j - m
        y = acc(frame, src[j])
        m0 += y
        m1 += k * y
        m2 += k * k * y
        m3 += np.float64(k * k) * np.float64(k) * np.float64(y)
    return m0, m1, m2, m3


@njit(nogil=True, cache=True)
def end_extremes(m0, m1, m2, m3, m, first):
    """Max and min of the cubic fitted to one end window, at the ``m`` interp positions.

    ``first``: positions ``k = −m..−1`` (start of the frame), else ``k = 1..m``.
    """
    mf = np.float64(m)
    q = mf * (mf + 1.0) * (2.0 * mf + 1.0)
    s0 = 2.0 * mf + 1.0
    s2 = q / 3.0
    s4 = q * (3.0 * mf * mf + 3.0 * mf - 1.0) / 15.0
    s6 = q * (3.0 * mf**4 + 6.0 * mf**3 - 3.0 * mf + 1.0) / 21.0
    de = s2 * (2.0 * mf - 1.0) * (2.0 * mf + 1.0) * (2.0 * mf + 3.0) / 15.0
    do = q * q * (mf - 1.0) * (mf + 2.0) * (2.0 * mf - 1.0) * (2.0 * mf + 3.0) / 525.0
    f0, f1, f2 = np.float64(m0), np.float64(m1), np.float64(m2)
    c0 = (s4 * f0 - s2 * f2) / de
    c2 = (s0 * f2 - s2 * f0) / de
    c1 = (s6 * f1 - s4 * m3) / do
    c3 = (s2 * m3 - s4 * f1) / do
    hi = -np.inf
    lo = np.inf
    sign = -1.0 if first else 1.0
    for j in range(1, m + 1):
        k = sign * j
        p = c0 + k * (c1 + k * (c2 + k * c3))
        hi = max(hi, p)
        lo = min(lo, p)
    return hi, lo


@njit(nogil=True, cache=True)
def slide(frame, c, m, m0, m1, m2):
    """Moments ``M_0, M_1, M_2`` of the window at ``c + 1`` from those at ``c``."""
    y_in = acc(frame, frame[c + 1 + m])
    y_out = acc(frame, frame[c - m])
    m0n = m0 + y_in - y_out
    m2n = m2 - 2 * m1 + m0n + (m * m - 1) * y_in - (m * m + 2 * m) * y_out
    m1n = m1 - m0n + m * (y_in + y_out) + y_in
    return m0n, m1n, m2n


@njit(nogil=True, cache=True)
def third_differences(y_in, y_out, s, cnt, g0, g1, g2):
    """``s[j]`` = third difference of the numerator at block centre ``j`` (codes)."""
    for j in range(cnt):
        d0 = np.int64(np.int32(y_in[j + 2]) - np.int32(y_out[j]))
        d1 = np.int64(np.int32(y_in[j + 1]) - np.int32(y_out[j + 1]))
        d2 = np.int64(np.int32(y_in[j]) - np.int32(y_out[j + 2]))
        s[j] = g0 * d0 + g1 * d1 + g2 * d2


@njit(nogil=True, cache=True)
def interior_codes(frame, m, m0, m1, m2, lo_code, hi_code):
    """Integer codes: extremes of the interior numerators, baseline sum and count (int64).

    ``m0, m1, m2``: the moments of the first window.  Triple running sum of the third
    differences (module docstring): ``c3`` is the numerator of the current centre,
    ``c2`` and ``c1`` its first and second differences.
    """
    n = frame.shape[0]
    a = np.int64(3 * (3 * m * m + 3 * m - 1))
    n_direct = min(3, n - 2 * m)  # centres m .. m + n_direct - 1 from the moments
    nums = np.empty(3, np.int64)
    nums[0] = a * m0 - 15 * m2
    for c in range(m, m + n_direct - 1):
        m0, m1, m2 = slide(frame, c, m, m0, m1, m2)
        nums[c - m + 1] = a * m0 - 15 * m2
    top = nums[:n_direct].max()
    bottom = nums[:n_direct].min()
    b_sum, b_cnt = below_sum(frame[:min(n, 2 * m + 3)], lo_code, hi_code, 0.0, 0.0, 0.0)
    if n_direct == 3:
        first = m + 3
        c3 = nums[2]
        c2 = nums[2] - nums[1]
        c1 = c2 - (nums[1] - nums[0])
        g0 = np.int64(np.int32(-3 * (2 * m - 1) * (m - 1)))
        g1 = np.int64(np.int32(3 * (2 * m - 1) * (2 * m + 3)))
        g2 = np.int64(np.int32(-3 * (2 * m + 3) * (m + 2)))
        s = np.empty(BLOCK, np.int64)
        r = np.empty(BLOCK, np.int64)
        for start in range(first, n - m, BLOCK):  # centres start .. start + cnt - 1
            cnt = min(BLOCK, n - m - start)
            y_in = frame[start + m - 2:start + m + cnt]  # y[c + m - 2 .. c + m]
            y_out = frame[start - m - 3:start - m - 1 + cnt]  # y[c - m - 3 .. c - m - 1]
            bs, bc = below_sum(y_in[2:], lo_code, hi_code, 0.0, 0.0, 0.0)
            b_sum += bs
            b_cnt += bc
            third_differences(y_in, y_out, s, cnt, g0, g1, g2)
            for j in range(cnt):
                c1 += s[j]
                c2 += c1
                c3 += c2
                r[j] = c3
            for j in range(cnt):
                top = max(top, r[j])
                bottom = min(bottom, r[j])
    return top, bottom, b_sum, b_cnt


@njit(nogil=True, cache=True)
def interior_floats(frame, m, m0, m1, m2, scale, offset, threshold):
    """Float samples: extremes of the interior numerators, baseline sum and count.

    ``m0, m1, m2``: the moments of the first window.  The three moments are slid along each
    block (module docstring) and summed afresh at the start of every block after the
    first, so float rounding does not build up along the frame.
    """
    n = frame.shape[0]
    a = np.float64(3 * (3 * m * m + 3 * m - 1))
    k_in = np.float64(m * m - 1)
    k_out = np.float64(m * m + 2 * m)
    mm = np.float64(m)
    top = a * m0 - 15.0 * m2
    bottom = top
    b_sum, b_cnt = below_sum(frame[:2 * m + 1], 0, 0, scale, offset, threshold)
    for start in range(m + 1, n - m, BLOCK):  # centres start .. start + cnt - 1
        cnt = min(BLOCK, n - m - start)
        if start > m + 1:
            m0, m1, m2, _ = window_moments(frame, start - 1, m)
        y_in = frame[start + m:start + m + cnt]
        y_out = frame[start - 1 - m:start - 1 - m + cnt]
        bs, bc = below_sum(y_in, 0, 0, scale, offset, threshold)
        b_sum += bs
        b_cnt += bc
        for j in range(cnt):
            yi = np.float64(y_in[j])
            yo = np.float64(y_out[j])
            m0n = m0 + (yi - yo)
            m2 = m2 - 2.0 * m1 + m0n + (k_in * yi - k_out * yo)
            m1 = m1 - m0n + (mm * (yi + yo) + yi)
            m0 = m0n
            num = a * m0 - 15.0 * m2
            top = max(top, num)
            bottom = min(bottom, num)
    return top, bottom, b_sum, b_cnt


def interior_extremes(frame, m, m0, m1, m2, lo_code, hi_code, scale, offset, threshold):
    """Largest and smallest interior numerator, baseline sum and count of a frame."""
    raise NotImplementedError


@overload(interior_extremes, jit_options={"cache": True})
def _interior_extremes(frame, m, m0, m1, m2, lo_code, hi_code, scale, offset, threshold):
    if _is_integer(frame):

        def codes(frame, m, m0, m1, m2, lo_code, hi_code, scale, offset, threshold):
            return interior_codes(frame, m, m0, m1, m2, lo_code, hi_code)

        return codes

    def floats(frame, m, m0, m1, m2, lo_code, hi_code, scale, offset, threshold):
        return interior_floats(frame, m, m0, m1, m2, scale, offset, threshold)

    return floats


@njit(nogil=True, cache=True)
def savgol_extremes(frame, w, lo_code, hi_code, scale, offset, threshold):
    """Extremes of the cubic Savitzky–Golay filter (codes) and the baseline sums.

    Returns ``(max, min, below_sum, below_count)``: the largest and smallest value of
    ``savgol_filter(frame, w, 3)`` (mode "interp", in code units) and the sum (codes) and
    number of the samples below the baseline threshold.  ``3 < w <= len(frame)``, odd.
    """
    n = frame.shape[0]
    m = w // 2
    den = np.float64((2 * m - 1) * (2 * m + 1) * (2 * m + 3))
    m0, m1, m2, m3 = window_moments(frame, m, m)
    hi, lo = end_extremes(m0, m1, m2, m3, m, True)
    top, bottom, b_sum, b_cnt = interior_extremes(frame, m, m0, m1, m2, lo_code, hi_code,
                                                  scale, offset, threshold)
    m0, m1, m2, m3 = window_moments(frame, n - 1 - m, m)
    hi_end, lo_end = end_extremes(m0, m1, m2, m3, m, False)
    hi = max(hi, hi_end, np.float64(top) / den)
    lo = min(lo, lo_end, np.float64(bottom) / den)
    return hi, lo, np.float64(b_sum), b_cnt


@njit(nogil=True, cache=True)
def has_nonfinite(frame):
    """True if a sample is NaN or infinite (always False for integer codes)."""
    if exact(frame):
        return False
    bad = False
    for i in range(frame.shape[0]):
        x = np.float64(frame[i])
        bad |= (x != x) | (x == np.inf) | (x == -np.inf)  # quiet: no "invalid" flag
    return bad


@njit(nogil=True, cache=True)
def median_baseline(frame, scale, offset):
    """Median (mV) of the first :data:`N_MEDIAN_SAMPLES` samples."""
    k = min(N_MEDIAN_SAMPLES, frame.shape[0])
    v = np.empty(k, np.float64)
    for i in range(k):
        v[i] = np.float64(frame[i]) * scale + offset
    return np.median(v)


@guvectorize(_SIGNATURES, _LAYOUT, nopython=True, cache=True)
def frame_alpha_energy(raw, scale, offset, t0, dt, alpha_threshold_bs, savgol_window,
                       sca_factor, alpha_energy_sca):
    """Alpha energy of one frame in SCA-scale MeV (ALGORITHMS.md §12).

    Inputs: ``raw`` codes (or floats) along time; ``scale`` mV per code and ``offset`` mV
    (the alpha channel keeps its own polarity: ``v = raw·scale + offset``, no sign flip);
    ``t0``, ``dt`` µs (the uniform kernel contract; not used by the numbers, but a
    non-finite ``t0``/``dt`` or ``dt <= 0`` marks a broken frame); ``alpha_threshold_bs``
    mV (300 = the reference's 0.3 V); ``savgol_window`` samples (odd, 5 <= w <= 16383, at
    most the frame length; 501); ``sca_factor`` (> 0; 1.058).

    Output ``alpha_energy_sca`` = max over the frame of
    ``savgol_filter(v/1000 − baseline, savgol_window, 3)`` (V, scipy's default "interp"
    ends included) / ``sca_factor``, where the baseline (V) is the mean of the samples
    with ``v < alpha_threshold_bs`` if there are at least 10, else the median of the first
    200 samples.  No dither.  NaN (never an exception) for a frame with NaN or infinite
    samples, a NaN parameter, ``scale`` 0 or not finite, a non-finite ``offset``, or a
    window that is not an odd integer in [5, min(16383, frame length)] (where scipy
    raises, or int64 sums would stop being exact).
    """
    alpha_energy_sca[0] = np.nan
    n = raw.shape[0]
    w = as_count(savgol_window, MAX_SAVGOL_WINDOW)
    if w <= SAVGOL_ORDER or w % 2 == 0 or w > n:
        return
    if not (is_finite(scale) and is_finite(offset) and is_finite(t0) and is_finite(dt)):
        return
    if scale == 0 or not dt > 0:
        return
    if alpha_threshold_bs != alpha_threshold_bs or not is_finite(sca_factor):
        return
    if not sca_factor > 0:
        return
    # gufunc arguments have "any" layout; a contiguous view lets LLVM vectorise the scans
    frame = np.ascontiguousarray(raw)
    if has_nonfinite(frame):
        return
    lo_code, hi_code = code_range(scale, offset, alpha_threshold_bs)
    hi, lo, b_sum, b_cnt = savgol_extremes(frame, w, lo_code, hi_code, scale, offset,
                                           alpha_threshold_bs)
    if b_cnt >= MIN_BELOW_THRESHOLD:
        baseline = np.float64(b_sum) / b_cnt * scale + offset
    else:
        baseline = median_baseline(frame, scale, offset)
    peak = hi * scale + offset if scale > 0 else lo * scale + offset  # mV
    alpha_energy_sca[0] = (peak - baseline) / 1000.0 / sca_factor


@njit(nogil=True, cache=True)
def frames_alpha_energy(*args):
    """:func:`frame_alpha_energy` over a block of frames, the GIL released (``Feature.frames``)."""
    frame_alpha_energy(*args)
