"""Stage ``frames``: every per-frame feature of every frame, in one pass (ALGORITHMS.md §4,
§5, §7 and the features added since).

The per-set inputs come from ``prepare`` (S1 time, drift time) and from the integration
window of each set, decided here (§5: the S2 window statistics, or the fallback
window).  One Dask task per waveform chunk reads the chunk (both channels where there
are two) and runs every pass-1 and pass-2 kernel on it; the few numbers per frame come
back as the labeled (set, frame) results every later stage reads.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ratag_xr.features import select
from ratag_xr.params import Param, at_least
from ratag_xr.pipeline.frames import compute_pass
from ratag_xr.pipeline.read_once import read_once_pass
from ratag_xr.stages import Stage, StageResult, register
from ratag_xr.vocabulary import describe

WINDOWS = ("s2_window_start", "s2_window_end", "s2_window_estimated")

PARAMS = (
    Param("integrate.use_estimated_s2_windows", True, bool, "", "integrate in "
          "[t_s2_start_mean, t_s2_end_mean] (false: the fallback window)"),
    Param("integrate.ts2_tol", -2.7, float, "µs",
          "fallback window start = t_s1 + time_drift + ts2_tol"),
    Param("integrate.width_s2", 1.1, float, "µs", "fallback window width",
          checks=(at_least(0),)),
    Param("integrate.n_sigma_start", 0.0, float, "", "widened window (§15): it starts "
          "this many S2 start spreads before t_s2_start_mean (the group uses 1.0)",
          checks=(at_least(0),)),
    Param("integrate.n_sigma_end", 0.0, float, "", "widened window (§15): it ends this "
          "many S2 end spreads after t_s2_end_mean (the group uses 0.5)",
          checks=(at_least(0),)),
)


def integration_windows(prep: xr.Dataset, cfg) -> xr.Dataset:
    """Per-set window [start, end] in µs: the S2 statistics, widened by
    ``n_sigma_start``/``n_sigma_end`` of their spreads (§15), else the §5 fallback
    (``cfg``: the ``integrate`` section)."""
    fallback_start = prep.t_s1 + prep.time_drift + cfg.ts2_tol
    fallback_end = fallback_start + cfg.width_s2
    if cfg.use_estimated_s2_windows:
        estimated = np.isfinite(prep.t_s2_start_mean) & np.isfinite(prep.t_s2_end_mean)
    else:
        estimated = xr.zeros_like(prep.t_s1, dtype=bool)
    start, end = prep.t_s2_start_mean, prep.t_s2_end_mean
    if cfg.n_sigma_start:  # (a 0 leaves the window exactly as §5 has it)
        start = start - cfg.n_sigma_start * prep.t_s2_start_std
    if cfg.n_sigma_end:
        end = end + cfg.n_sigma_end * prep.t_s2_end_std
    start = xr.where(estimated, start, fallback_start)
    end = xr.where(estimated, end, fallback_end)
    ds = xr.Dataset({"s2_window_start": start, "s2_window_end": end,
                     "s2_window_estimated": estimated})
    ds = ds.drop_vars([c for c in ds.coords if c != "set"])
    return describe(ds, list(WINDOWS))


def pending_files(ctx) -> list:
    """Raw files planned but not yet in the store (the read-once path): ingest plans them
    and leaves them to this stage, which reads each once."""
    from ratag_xr.stages.prepare import estimate_frames
    from ratag_xr.store import ingest

    first = estimate_frames(ctx.run.config)
    if first is None:
        return []
    plan = ingest(ctx.run.run_dir, ctx.run.store, config=ctx.run.config,
                  nfiles=ctx.run.nfiles, client=ctx.client_factory, progress=False,
                  copy_frames=first, accept=ctx.run.accept)
    return [t for t in plan.pending if t.set_name in set(ctx.sets)]


def _processed(frames: xr.Dataset) -> set[tuple[str, str]]:
    """(set, file) of every valid frame."""
    valid = np.asarray(frames.valid.values, dtype=bool)
    sets = np.broadcast_to(np.asarray(frames.set.values, dtype=object)[:, None], valid.shape)
    files = np.asarray(frames.file.values, dtype=object)
    return set(zip(sets[valid].tolist(), files[valid].tolist(), strict=True))


def _covers(previous: xr.Dataset, nodes: dict) -> bool:
    """The stored frames hold every frame now in the store (so only the pending files
    remain to be added)."""
    now = set()
    for ds in nodes.values():
        now |= _processed(ds[["valid", "file"]])
    return _processed(previous) == now


def compute(ctx) -> StageResult:
    prep = ctx.load("prepare", "sets")
    windows = integration_windows(prep, ctx.config.integrate)
    features = select("pass1") + select("pass2")
    per_set = prep.merge(windows)
    pending = pending_files(ctx)
    nodes = ctx.nodes()
    previous = ctx.previous("frames") if pending else None
    if previous is not None and not _covers(previous, nodes):
        previous = None  # files reached the store by other ways: start over
    if pending:
        frames = read_once_pass(ctx.run.store, nodes, pending, features, ctx.config.full,
                                per_set, ctx.client, reopen=ctx.nodes, progress=ctx.progress,
                                label="frames: reading each raw file once",
                                previous=previous)
    else:
        frames = compute_pass(ctx.nodes(), [f.name for f in features], ctx.config.full,
                              ctx.client, per_set=per_set,
                              label="frames: one pass over every frame",
                              progress=ctx.progress)
    windows.attrs.update(run_id=ctx.run_id)
    return StageResult(sets=windows, frames=frames)


STAGE = register(Stage(
    name="frames",
    version=2,
    reads=("stage:prepare", "waveforms", "features:pass1", "features:pass2",
           "config:run.run_id", "config:prepare.s1_frames", "config:prepare.s2_window_frames"),
    params=PARAMS,
    provides={"sets": WINDOWS, "frames": ("features:pass1", "features:pass2")},
    compute=compute,
    incremental=True,
    doc="the integration window of each set (widened as §15 allows); one pass over every "
        "frame runs every per-frame feature (S2 window crossings, X-ray outcome, ion S2 "
        "area, ...) (§4, §5, §7, §15)",
))
