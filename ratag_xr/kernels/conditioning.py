"""Signal-conditioning building blocks of the per-frame kernels (ALGORITHMS.md §2).

Everything here works on one frame of raw codes, in sample indices and code units; the
kernels convert thresholds to code units once and results to mV / µs once.

Conventions (part of the analysis definition, see ALGORITHMS.md §2):

* time of sample ``i``: ``t0 + i * dt`` (µs), evaluated exactly as numpy evaluates
  ``t0 + numpy.arange(n) * dt``, so kernels and numpy select the same samples;
* a time window edge is compared with a tolerance of ``1e-6 * dt``: ``t >= edge - tol``
  and ``t <= edge + tol`` for inclusive edges, ``t > edge + tol`` for strict ones;
* pedestal: mean of the first ``n_pedestal`` codes; the pedestal-subtracted signal is
  ``v[i] = (raw[i] - pedestal) * scale`` (mV; ``scale`` carries the polarity sign);
* moving average over a *domain* ``[a, b]`` of samples (the whole frame, or a time window
  cut first): centred box of ``w`` samples, ``hl = w // 2`` samples to the left and
  ``hr = (w - 1) // 2`` to the right (numpy.convolve ``mode="same"``, also for even ``w``);
  samples outside the domain count as 0 (zero padding).

A moving-average value is handled as the box sum ``S`` of raw codes plus the number ``k``
of in-domain samples in the box: ``MA = (S - k * pedestal) * scale / w``, so a threshold
on ``MA`` is a threshold on ``S`` computed once.  Boxes inside the domain come from
running (prefix) sums over blocks of ``BLOCK`` outputs, exact int32 for codes, and are
tested in vectorisable loops; the few boxes that the domain edges cut are summed
one by one.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ratag_xr.kernels.numeric import acc_zero, block_buffer, block_value, sum_limit

BLOCK = 2048  # box outputs per block of prefix sums
#: Window edges are compared with this tolerance, in sample spacings (ALGORITHMS.md §2).
EDGE_TOLERANCE = 1e-6
SUM_BLOCK = 16384  # samples per int32 partial sum: 16384 * 2**15 < 2**31


@njit(nogil=True, cache=True)
def pedestal_codes(raw, n_pedestal):
    """Mean of the first ``n_pedestal`` codes (all of them if the frame is shorter)."""
    m = min(n_pedestal, raw.shape[0])
    s = acc_zero(raw)
    for i in range(m):
        s += raw[i]
    return s / m


@njit(nogil=True, cache=True)
def first_index(t0, dt, n, limit, inclusive):
    """Smallest ``i`` in [0, n] with ``t0 + i*dt > limit`` (``>=`` if inclusive); n if none.

    The edge has the tolerance of ALGORITHMS.md §2: ``EDGE_TOLERANCE * dt``.  A sample
    whose time equals ``limit`` up to that tolerance counts as equal: inside an inclusive
    edge, outside a strict one.  (A window edge computed from sample times, a median of
    them say, equals a sample time only up to rounding.)

    ``dt`` must be > 0, so sample times increase and the answer is a boundary; it is
    located from an estimate and then fixed with the exact numpy expression.
    """
    if limit != limit:
        return n
    tol = EDGE_TOLERANCE * dt
    edge = limit - tol if inclusive else limit + tol
    x = (edge - t0) / dt
    if x <= 0.0:
        i = 0
    elif x >= n:
        i = n
    else:
        i = np.int64(x)
    if inclusive:
        while i > 0 and t0 + (i - 1) * dt >= edge:
            i -= 1
        while i < n and not t0 + i * dt >= edge:
            i += 1
    else:
        while i > 0 and t0 + (i - 1) * dt > edge:
            i -= 1
        while i < n and not t0 + i * dt > edge:
            i += 1
    return i


@njit(nogil=True, cache=True)
def rule(threshold, clip):
    """Moving-average level and strictness equivalent to "clipped value > threshold".

    With clip = "values below ``clip`` set to 0" and ``threshold >= 0``, a clipped value
    exceeds ``threshold`` exactly when the unclipped value is ``> threshold`` (if
    ``threshold >= clip``) or ``>= clip`` (otherwise).  Returns (level_mV, strict).
    """
    if threshold >= clip:
        return threshold, True
    return clip, False


@njit(nogil=True, cache=True)
def box_limit(raw, level_w, k, ped, sgn, strict):
    """Limit L such that ``sgn * S > L`` <=> the box average passes the level.

    ``level_w`` is the level in code units times ``w`` (``level * w / |scale|``); ``k`` is
    the number of in-domain samples of the box; ``ped`` the pedestal in codes.
    """
    limit = level_w + sgn * k * ped
    if not strict:
        # x >= L  <=>  x > (the float just below L), for every float x
        limit = np.nextafter(limit, -np.inf)
    return sum_limit(raw, limit)


@njit(nogil=True, cache=True)
def partition(lo, hi, a, b, hl, hr):
    """Split outputs [lo, hi] of domain [a, b] into (l1, i0, i1, r0).

    [lo, l1]: boxes cut by the domain start; [i0, i1]: boxes inside the domain;
    [r0, hi]: boxes cut by the domain end only.  Empty ranges have end < start.
    """
    return (min(hi, a + hl - 1), max(lo, a + hl), min(hi, b - hr),
            max(lo, a + hl, b - hr + 1))


# ---------------------------------------------------------------- boxes cut by the edges


@njit(nogil=True, cache=True)
def box_sum(raw, i, a, b, hl, hr):
    """Box sum of codes around ``i`` within the domain [a, b], and its sample count."""
    lo = max(i - hl, a)
    hi = min(i + hr, b)
    s = acc_zero(raw)
    for j in range(lo, hi + 1):
        s += raw[j]
    return s, hi - lo + 1


@njit(nogil=True, cache=True)
def edge_boxes(raw, e0, e1, a, b, hl, hr):
    """Box sums (float64, exact for codes) and counts of outputs e0..e1 of domain [a, b]."""
    m = max(0, e1 - e0 + 1)
    sums = np.empty(m, np.float64)
    counts = np.empty(m, np.int64)
    if m == 0:
        return sums, counts
    s, _ = box_sum(raw, e0, a, b, hl, hr)
    for idx in range(m):
        i = e0 + idx
        if idx > 0:  # slide the box by one sample, staying inside the domain
            if i + hr <= b:
                s += raw[i + hr]
            if i - 1 - hl >= a:
                s -= raw[i - 1 - hl]
        sums[idx] = s
        counts[idx] = min(i + hr, b) - max(i - hl, a) + 1
    return sums, counts


@njit(nogil=True, cache=True)
def edge_first(raw, e0, e1, a, b, hl, hr, sgn, ped, level_w, strict, backwards):
    """First (or last, if ``backwards``) output in [e0, e1] whose box passes; -1 if none."""
    sums, counts = edge_boxes(raw, e0, e1, a, b, hl, hr)
    m = sums.shape[0]
    for step in range(m):
        idx = m - 1 - step if backwards else step
        if sgn * sums[idx] > box_limit(raw, level_w, counts[idx], ped, sgn, strict):
            return e0 + idx
    return -1


# ---------------------------------------------------------------- boxes inside the domain


# Hot loops index slices from 0: numba wraps negative indices, and an index such as
# ``base + k`` that LLVM cannot prove non-negative keeps that check in the loop and
# stops vectorisation.


@njit(nogil=True, cache=True)
def fill_prefix(raw, base, count, prefix):
    """prefix[k] = sum of raw[base : base + k] for k = 0 .. count (block type)."""
    src = raw[base:base + count]
    out = prefix[1:count + 1]
    acc = block_value(raw, 0)
    prefix[0] = acc
    for k in range(count):
        acc = acc + block_value(raw, src[k])
        out[k] = acc


@njit(nogil=True, cache=True)
def count_passing(prefix, cnt, w, sgn, limit):
    """Number of boxes ``prefix[j + w] - prefix[j]``, j < cnt, with ``sgn * box > limit``."""
    hi, lo = prefix[w:w + cnt], prefix[:cnt]
    c = 0
    if sgn > 0:
        for j in range(cnt):
            c += hi[j] - lo[j] > limit
    else:
        neg = -limit
        for j in range(cnt):
            c += hi[j] - lo[j] < neg
    return c


@njit(nogil=True, cache=True)
def kept_sum(raw, prefix, cnt, w, sgn, limit):
    """Sum and number of the boxes (j < cnt) with ``sgn * box > limit``."""
    hi, lo = prefix[w:w + cnt], prefix[:cnt]
    kept = acc_zero(raw)
    c = 0
    if sgn > 0:
        for j in range(cnt):
            x = hi[j] - lo[j]
            if x > limit:
                kept += x
                c += 1
    else:
        neg = -limit
        for j in range(cnt):
            x = hi[j] - lo[j]
            if x < neg:
                kept += x
                c += 1
    return kept, c


@njit(nogil=True, cache=True)
def interior_first(raw, i0, i1, hl, w, sgn, limit, backwards):
    """First (or last) output in [i0, i1] (boxes inside the domain) passing; -1 if none."""
    prefix = block_buffer(raw, BLOCK + w)
    n_blocks = (i1 - i0 + BLOCK) // BLOCK
    for step in range(n_blocks):
        block = n_blocks - 1 - step if backwards else step
        start = i0 + block * BLOCK
        cnt = min(BLOCK, i1 + 1 - start)
        fill_prefix(raw, start - hl, cnt + w - 1, prefix)
        if count_passing(prefix, cnt, w, sgn, limit) == 0:
            continue
        for k in range(cnt):
            j = cnt - 1 - k if backwards else k
            if sgn * (prefix[j + w] - prefix[j]) > limit:
                return start + j
    return -1


# ---------------------------------------------------------------- searches and sums


@njit(nogil=True, cache=True)
def first_above(raw, a, b, lo, hi, hl, hr, sgn, ped, level_w, strict):
    """First output in [lo, hi] whose moving average over domain [a, b] passes; -1."""
    l1, i0, i1, r0 = partition(lo, hi, a, b, hl, hr)
    found = edge_first(raw, lo, l1, a, b, hl, hr, sgn, ped, level_w, strict, False)
    if found < 0 and i0 <= i1:
        limit = box_limit(raw, level_w, hl + hr + 1, ped, sgn, strict)
        found = interior_first(raw, i0, i1, hl, hl + hr + 1, sgn, limit, False)
    if found < 0:
        found = edge_first(raw, r0, hi, a, b, hl, hr, sgn, ped, level_w, strict, False)
    return found


@njit(nogil=True, cache=True)
def last_above(raw, a, b, lo, hi, hl, hr, sgn, ped, level_w, strict):
    """Last output in [lo, hi] whose moving average over domain [a, b] passes; -1."""
    l1, i0, i1, r0 = partition(lo, hi, a, b, hl, hr)
    found = edge_first(raw, r0, hi, a, b, hl, hr, sgn, ped, level_w, strict, True)
    if found < 0 and i0 <= i1:
        limit = box_limit(raw, level_w, hl + hr + 1, ped, sgn, strict)
        found = interior_first(raw, i0, i1, hl, hl + hr + 1, sgn, limit, True)
    if found < 0:
        found = edge_first(raw, lo, l1, a, b, hl, hr, sgn, ped, level_w, strict, True)
    return found


@njit(nogil=True, cache=True)
def clipped_value(raw, i, a, b, hl, hr, sgn, ped, clip_w):
    """Box excess ``S - k*ped`` (codes × w) at ``i`` if the average is >= clip, else 0."""
    s, k = box_sum(raw, i, a, b, hl, hr)
    if sgn * s > box_limit(raw, clip_w, k, ped, sgn, False):
        return s - k * ped
    return 0.0


@njit(nogil=True, cache=True)
def clipped_sum(raw, a, b, lo, hi, hl, hr, sgn, ped, clip_w):
    """Sum over outputs [lo, hi] of the clipped box excess (codes × w), domain [a, b].

    Inside the domain, kept boxes are summed exactly (integers for codes) with their
    count, and the pedestal is subtracted once per block.
    """
    w = hl + hr + 1
    l1, i0, i1, r0 = partition(lo, hi, a, b, hl, hr)
    total = 0.0
    for e0, e1 in ((lo, l1), (r0, hi)):
        sums, counts = edge_boxes(raw, e0, e1, a, b, hl, hr)
        for idx in range(sums.shape[0]):
            if sgn * sums[idx] > box_limit(raw, clip_w, counts[idx], ped, sgn, False):
                total += sums[idx] - counts[idx] * ped
    if i0 <= i1:
        limit = box_limit(raw, clip_w, w, ped, sgn, False)
        prefix = block_buffer(raw, BLOCK + w)
        for start in range(i0, i1 + 1, BLOCK):
            cnt = min(BLOCK, i1 + 1 - start)
            fill_prefix(raw, start - hl, cnt + w - 1, prefix)
            kept, count = kept_sum(raw, prefix, cnt, w, sgn, limit)
            total += kept - count * w * ped
    return total


@njit(nogil=True, cache=True)
def clipped_trapezoid(raw, a, b, lo, hi, hl, hr, sgn, ped, clip_w):
    """Trapezoid sum (codes × w, unit spacing) of the clipped average over domain [a, b].

    Only [lo, hi] is scanned: the caller guarantees the clipped average is 0 outside it.
    """
    inner = clipped_sum(raw, a, b, lo, hi, hl, hr, sgn, ped, clip_w)
    ends = clipped_value(raw, a, a, b, hl, hr, sgn, ped, clip_w)
    ends += clipped_value(raw, b, a, b, hl, hr, sgn, ped, clip_w)
    return inner - 0.5 * ends


@njit(nogil=True, cache=True)
def masked_sum(raw, start, end, sgn, limit):
    """Sum and number of the codes in [start, end) with ``sgn * code > limit``."""
    src = raw[start:end]
    s = block_value(raw, 0)
    c = 0
    if sgn > 0:
        for i in range(src.shape[0]):
            x = block_value(raw, src[i])
            if x > limit:
                s += x
                c += 1
    else:
        neg = -limit
        for i in range(src.shape[0]):
            x = block_value(raw, src[i])
            if x < neg:
                s += x
                c += 1
    return s, c


@njit(nogil=True, cache=True)
def sum_above(raw, lo, hi, sgn, ped, level_codes, stop):
    """Sum of ``raw[i] - ped`` (codes) over lo <= i < hi where ``sgn*(raw[i]-ped) > level``.

    Stops early, in blocks, once ``sgn * sum > stop`` (valid because every term has the
    sign of ``sgn`` when ``level_codes >= 0``).
    """
    limit = sum_limit(raw, level_codes + sgn * ped)
    total = 0.0
    for start in range(lo, hi, SUM_BLOCK):
        s, c = masked_sum(raw, start, min(start + SUM_BLOCK, hi), sgn, limit)
        total += s - c * ped
        if sgn * total > stop:
            break
    return total


@njit(nogil=True, cache=True)
def gap_reach(t0, dt, cur, gap):
    """Smallest ``p`` in [0, cur] with ``(t0 + cur*dt) - (t0 + p*dt) <= gap`` (µs).

    The difference is evaluated exactly as numpy evaluates ``numpy.diff`` of sample times
    ``t0 + numpy.arange(n) * dt``; it does not increase with ``p``, so the answer is a
    boundary, located from an estimate and then fixed.
    """
    tc = t0 + cur * dt
    x = cur - gap / dt
    p = 0 if x <= 0.0 else (cur if x >= cur else np.int64(x))
    while p > 0 and tc - (t0 + (p - 1) * dt) <= gap:
        p -= 1
    while p < cur and not tc - (t0 + p * dt) <= gap:
        p += 1
    return p


@njit(nogil=True, cache=True)
def start_after_gap(raw, a, b, first, last, hl, hr, sgn, ped, level_w, strict, t0, dt,
                    gap):
    """The first passing output after the last gap of more than ``gap`` µs between
    consecutive passing outputs in [first, last] (both passing); ``first`` if none.

    Walks back from ``last``: from a passing output ``cur``, every passing output closer
    than the gap lies in [reach, cur - 1]; if there is none, the gap before ``cur`` is
    longer and ``cur`` is the answer.  Otherwise the earliest of them comes next (the gaps
    between it and ``cur`` are all shorter, being inside the reach).  Each step scans
    forward from the reach and stops at its first passing output, so the walk reads about
    one gap beyond the answer and the passing stretch after it once.
    """
    cur = last
    while cur > first:
        lo = max(first, gap_reach(t0, dt, cur, gap))
        prev = first_above(raw, a, b, lo, cur - 1, hl, hr, sgn, ped, level_w, strict) \
            if lo <= cur - 1 else -1
        if prev < 0:
            return cur
        cur = prev
    return first
