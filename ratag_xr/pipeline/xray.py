"""X-ray event classification per set (ALGORITHMS.md §7).

The per-frame outcome is computed in the preparation's pass over the frames (the
kernel is fused); this stage counts outcomes per set and stores them.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ratag_xr.cluster import managed_client
from ratag_xr.kernels.pass1 import XRAY_CODE_MEANINGS
from ratag_xr.pipeline.context import lineage, open_analysis
from ratag_xr.pipeline.prepare import prepare_run
from ratag_xr.pipeline.results import load_stage, save_stage, stored_lineage

COUNT_NAMES = {
    "accepted": "n_xray_accepted",
    "excessive_s2_signal_above_baseline": "n_xray_excessive_s2",
    "no_signal_above_baseline": "n_xray_no_signal",
    "insufficient_separation": "n_xray_insufficient_separation",
    "not_classifiable": "n_xray_not_classifiable",
}
READABLE_REASONS = {
    "accepted": "accepted",
    "excessive_s2_signal_above_baseline": "excessive S2 signal above baseline",
    "no_signal_above_baseline": "no signal above baseline",
    "insufficient_separation": "insufficient separation",
    "not_classifiable": "not classifiable",
}


def xray_counts(frames: xr.Dataset) -> xr.Dataset:
    """Outcome counts per set from per-frame ``xray_code`` (valid frames only)."""
    valid = frames.valid
    counts = {}
    for code, meaning in XRAY_CODE_MEANINGS.items():
        counts[COUNT_NAMES[meaning]] = ((frames.xray_code == code) & valid).sum("frame")
    ds = xr.Dataset(counts)
    ds["n_xray_events"] = valid.sum("frame")
    ds["n_xray_rejected"] = ds.n_xray_events - ds.n_xray_accepted
    for name in ds.data_vars:
        ds[name] = ds[name].astype(np.int64)
        label = name.removeprefix("n_xray_").replace("_", " ")
        ds[name].attrs = {"units": "1", "long_name": f"X-ray outcomes: {label}"}
    return ds.drop_vars([c for c in ds.coords if c != "set"])


def run_xray_classification(run, *, out=None, config=None, client=None,
                            force: bool = False) -> xr.Dataset:
    """Per-set X-ray outcome counts (runs or reuses :func:`prepare_run`)."""
    run = open_analysis(run, out=out, config=config, client=client, force=force)
    with managed_client(run.client) as cl:
        run.client = cl
        prepare_run(run)
        lin = lineage(run, "xray", (), upstream={"prepare": stored_lineage(run.results, "prepare")})
        if run.reuse("xray", lin):
            return load_stage(run.results, "xray", "sets")
        frames = load_stage(run.results, "prepare", "frames")
        sets = xray_counts(frames)
        sets.attrs.update(run_id=run.run_id)
        save_stage(run.results, "xray", lin, client=cl, sets=sets)
        run.computed.add("xray")
    return sets
