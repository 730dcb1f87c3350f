"""Per-set statistics of per-frame values reduced from per-block partial results.

The stages after ``frames`` read its stored per-frame part lazily (``StageContext.open``):
a (set, frame) variable is a Dask array of its stored blocks
(:data:`~ratag_xr.pipeline.results.FRAME_BLOCK` frames each).
A histogram is the sum of its blocks' histograms (fixed edges: each value falls in the
same bin whichever block holds it), a count the sum of the blocks' counts, a maximum the
maximum of the blocks' maxima; so each statistic is one pass over the stored blocks,
each block read, reduced to a few numbers and dropped.  The values of every frame are
never held at once.  Arrays already in memory (a stage given its inputs directly) are
reduced as one block, with the same functions.

The blocks are reduced in this process by Dask's threaded scheduler: a stored part is
~10^-4 of the raw data (~100 bytes per frame of 190 000 samples), read at disk speed;
sending its blocks to the cluster would cost more than reducing them.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import xarray as xr

#: (low, high, nbins) of one set's histogram
Range = tuple[float, float, int]


def _blocks(values: xr.DataArray, keep: xr.DataArray) -> tuple[da.Array, da.Array]:
    """``values`` and the bool mask ``keep`` (same sets, same order) as (set, frame) Dask
    arrays, whole along ``set``, in the same blocks along ``frame``."""
    values, keep = xr.align(values, keep.astype(bool), join="exact")
    out = []
    for arr in (values, keep):
        data = arr.transpose("set", "frame").data
        if not isinstance(data, da.Array):
            data = da.from_array(np.asarray(data), chunks=(-1, -1))
        out.append(data.rechunk({0: -1}))
    v, k = out
    return v, (k if k.chunks == v.chunks else k.rechunk(v.chunks))


def reduce_blocks(*lazy):
    """Dask arrays (or xarray objects) computed by the threaded scheduler, in one pass
    over the blocks they share; numpy values pass through."""
    return dask.compute(*lazy, scheduler="threads")


def _block_histograms(values, keep, ranges, width):
    out = np.zeros((values.shape[0], 1, width), dtype=np.int64)
    for i, (lo, hi, nb) in enumerate(ranges):
        v = values[i][keep[i]]
        out[i, 0, :nb] = np.histogram(v[np.isfinite(v)], bins=nb, range=(lo, hi))[0]
    return out


def set_histograms(values: xr.DataArray, keep: xr.DataArray, ranges: list[Range],
                   lazy: bool = False):
    """Per set (in ``values``' set order), the histogram of its kept finite values over
    its (low, high, nbins): an int64 (set, bin) array, ``max(nbins)`` wide, sets with
    fewer bins padded with zeros.  The sum of one histogram per block of frames: equal,
    bin for bin, to :func:`numpy.histogram` of all the set's values.  ``lazy``: the Dask
    array, for computing with other reductions in one pass."""
    v, k = _blocks(values, keep)
    ranges = [(float(lo), float(hi), int(nb)) for lo, hi, nb in ranges]
    width = max((nb for _, _, nb in ranges), default=0)
    parts = da.map_blocks(_block_histograms, v, k, ranges=ranges, width=width, new_axis=2,
                          chunks=(v.chunks[0], (1,) * v.numblocks[1], (width,)),
                          dtype=np.int64, meta=np.empty((0, 0, 0), np.int64))
    total = parts.sum(axis=1, dtype=np.int64)
    return total if lazy else reduce_blocks(total)[0]


def set_maxima(values: xr.DataArray, keep: xr.DataArray, lazy: bool = False):
    """Per set, the largest kept finite value (-inf for a set without one), from the
    blocks' maxima."""
    v, k = _blocks(values, keep)
    if v.shape[1] == 0:  # no frames: no maximum to reduce
        best = da.full(v.shape[0], -np.inf, chunks=-1)
    else:
        best = da.where(k & da.isfinite(v), v, -np.inf).max(axis=1)
    return best if lazy else reduce_blocks(best)[0]


def combined_histogram(values: xr.DataArray, keep: xr.DataArray, rng: Range,
                       lazy: bool = False):
    """The histogram of the kept finite values of every set together over one (low,
    high, nbins): the sum of the per-set histograms (``lazy``: as a Dask array)."""
    if not values.sizes["set"]:
        return np.zeros(int(rng[2]), dtype=np.int64)
    counts = set_histograms(values, keep, [rng] * values.sizes["set"], lazy=True).sum(axis=0)
    return counts if lazy else reduce_blocks(counts)[0]
