"""Stage ``classify`` (ALGORITHMS.md §7): X-ray outcome counts per set.

The per-frame outcome is a feature, computed in the ``frames`` stage's pass over the frames
(one read for the S2 window, the X-ray search and the ion S2 area); this stage counts the outcomes
of each set, one variable per :class:`~ratag_xr.vocabulary.XrayOutcome`.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ratag_xr.pipeline.partials import reduce_blocks
from ratag_xr.stages import Stage, StageResult, register
from ratag_xr.vocabulary import XrayOutcome, describe

COUNTS = ("n_xray_events", "n_xray_rejected", *(o.count_name for o in XrayOutcome))


def xray_counts(frames: xr.Dataset) -> xr.Dataset:
    """Outcome counts per set from per-frame ``xray_code`` (valid frames only; ``frames``
    may be lazy: the counts are sums of per-block counts)."""
    valid = frames.valid
    ds = xr.Dataset({o.count_name: ((frames.xray_code == int(o)) & valid).sum("frame")
                     for o in XrayOutcome})
    ds["n_xray_events"] = valid.sum("frame")
    ds["n_xray_rejected"] = ds.n_xray_events - ds[XrayOutcome.ACCEPTED.count_name]
    ds = reduce_blocks(ds.map(lambda v: v.astype(np.int64)))[0]
    ds = ds.drop_vars([c for c in ds.coords if c != "set"])
    return describe(ds, list(COUNTS))


def compute(ctx) -> StageResult:
    sets = xray_counts(ctx.open("frames", "frames"))
    sets.attrs.update(run_id=ctx.run_id)
    return StageResult(sets=sets)


STAGE = register(Stage(
    name="classify",
    version=3,
    reads=("stage:frames", "config:run.run_id"),
    provides={"sets": COUNTS},
    compute=compute,
    doc="X-ray outcome counts per set (the per-frame outcomes are pass-1 features) (§7)",
))
