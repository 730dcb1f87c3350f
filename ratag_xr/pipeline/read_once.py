"""Read every raw byte once: one task per raw file ingests it and computes its features.

With ``prepare.s1_frames`` and ``prepare.s2_window_frames`` set, ingest copies only the
files that hold each set's first frames (enough for both estimates) and plans the rest.
Once ``prepare`` has fixed the per-set inputs, the ``frames`` stage runs
:func:`file_features` for each planned file: the task reads the file front to back
(:class:`ratag_xr.store.ingest.RawFile`), writes each block of frames into the store and
runs the kernels of that file's channel on the same block in memory, then returns the
per-frame records with the file's facts.  The driver records the file as ingested
(coordinates, then the ``ok`` manifest event) as each task finishes, so an interrupted
run resumes with the files that were done.  The frames already in the store get their
features from one read of the store, as in the two-pass path; both give the same
numbers (the kernels see the same codes, scaling and time axis).
"""

from __future__ import annotations

import sys

import numpy as np
import xarray as xr

from ratag_xr.cluster import os_errors_returned
from ratag_xr.driver import ChannelKernels, FrameRecords, KernelRef, frame_records, run_kernels
from ratag_xr.features import Feature, arguments
from ratag_xr.pipeline.frames import _combine, _labeled, node_args, node_features
from ratag_xr.store.direct_io import use_direct
from ratag_xr.store.ingest import (
    FileTask,
    IngestSummary,
    RawFile,
    copy_file,
    file_writes,
    finished_files,
    waveform_writer,
    write_block,
)
from ratag_xr.store.layout import manifest_path
from ratag_xr.store.manifest import Manifest

CHANNEL_OF_ROLE = {"pmt": "pmt", "alpha": "alpha"}


def file_features(task: FileTask, store: str, chunk: int, kernels: tuple, outputs: tuple,
                  fill: tuple, values: list, record: np.dtype, direct: bool = False
                  ) -> tuple[dict, np.ndarray]:
    """Dask task: copy one raw file into its slots and compute its frames' features from
    the same reads; returns (the file's facts, one record per frame).  ``kernels``,
    ``outputs``, ``fill`` and ``values`` are those of the features of the file's channel
    (``values``: per kernel its inputs for the file's set, scalars); ``direct``: the
    chunk files are written past the page cache, in the background, while the kernels
    run (:mod:`ratag_xr.store.direct_io`)."""
    writer = waveform_writer(store, task)
    out = np.empty(task.n_frames, dtype=record)
    names = [n for group in outputs for n in group]
    for name, value in zip(names, fill, strict=True):
        out[name] = value
    with RawFile(task) as raw:
        channel = ChannelKernels(kernels, outputs, fill, raw.scale, raw.offset, raw.t0, raw.dt)
        with file_writes(direct) as writes:
            for start, codes in raw.blocks(chunk):
                write_block(writer, task, start, codes, chunk, writes)
                part = run_kernels(codes, ([None], [values], [None]), channels=(channel,),
                                   record=record)
                for name in names:
                    out[name][start:start + codes.shape[0]] = part[name]
        return raw.facts(), out


def _scalar(value, set_name: str) -> float:
    if isinstance(value, xr.DataArray):
        return float(value.sel(set=set_name).values)
    return float(value)


def _done_slots(ds: xr.Dataset) -> int:
    """Slots of a node up to the last valid frame (the frames already in the store)."""
    valid = np.asarray(ds.valid.values)
    any_valid = np.flatnonzero(valid.any(axis=0))
    return int(any_valid[-1]) + 1 if any_valid.size else 0


def read_once_pass(store, nodes: dict[str, xr.Dataset], pending: list[FileTask],
                   features: list[Feature], config, per_set: xr.Dataset, client, *,
                   reopen, progress: bool = True, label: str = "",
                   previous: xr.Dataset | None = None) -> xr.Dataset:
    """Per-frame records of ``features`` for every frame: from the store for the frames
    already there, from one read of each raw file for the ``pending`` ones (ingesting
    them on the way).  ``reopen()`` gives the nodes again once the pending files are in
    the store (their coordinates written).  ``previous``: the records of every frame
    already in the store, computed before (live mode: only the new files are read)."""
    args = arguments(features, config, per_set)
    # 1. the frames already in the store (the estimate files): one read of the store
    stored, attrs = {}, {}
    for name, ds in nodes.items():
        n = _done_slots(ds)
        if previous is not None:
            attrs[name] = dict(previous.attrs)
            if n:
                part = previous.sel(set=ds.set.values).isel(frame=slice(0, n))
                stored[name] = part
            continue
        if n:
            part = ds.isel(frame=slice(0, n))
            runnable = [f.name for f in node_features(part, features)]
            if not runnable:  # a node of a channel no feature reads
                continue
            records = frame_records(part, node_args(part, args), runnable)
            stored[name], attrs[name] = records.data, records.attrs
    lazy = {k: v for k, v in stored.items() if not isinstance(v, xr.Dataset)}
    if lazy:
        stored.update(zip(lazy, client.compute(list(lazy.values()), sync=True), strict=True))
    # 2. every other file: read once, ingested and analysed in one task
    state_chunks = {n: int(ds.attrs.get("frames_per_chunk", 1)) for n, ds in nodes.items()}
    record = np.dtype([(o.name, o.dtype) for f in features for o in f.outputs])
    by_channel = {}
    for channel in ("pmt", "alpha"):
        feats = [f for f in features if f.channel == channel]
        by_channel[channel] = (tuple(KernelRef.wrap(f.kernel, f.frames) for f in feats),
                               tuple(f.output_names for f in feats),
                               tuple(o.fill_value for f in feats for o in f.outputs), feats)
    direct = use_direct(config.ingest.direct_io, read_once=True)
    futures = {}
    for task in pending:
        kernels, outputs, fill, feats = by_channel[CHANNEL_OF_ROLE[task.role]]
        chunk = state_chunks[task.node]
        key = f"read-once-{task.set_name}-{task.path.name}"
        if not feats:  # a channel no feature reads (alpha twins of a PMT-only analysis)
            fut = client.submit(os_errors_returned, copy_file, task, str(store), chunk,
                                direct, pure=False, key=key)
        else:
            values = [[_scalar(args[f.name][a], task.set_name) for a in f.arg_names]
                      for f in feats]
            fut = client.submit(os_errors_returned, file_features, task, str(store), chunk,
                                kernels, outputs, fill, values, record, direct, pure=False,
                                key=key)
        futures[fut] = task
    manifest = Manifest.load(manifest_path(store))
    summary = IngestSummary(store=store)
    results: dict[tuple, np.ndarray] = {}
    for task, records, ok in finished_files(client, futures, store, manifest, summary, _say,
                                            desc=label or "read once", progress=progress,
                                            leave=False):
        if ok and records is not None:
            results[(task.node, task.set_index, task.slot0, task.role)] = records
    # 3. one labeled dataset: store records first, file records in their slots
    fresh = reopen()
    parts = []
    for name, ds in fresh.items():
        data = np.empty(ds.valid.shape, dtype=record)
        for f in features:
            for o in f.outputs:
                data[o.name] = o.fill_value
        if isinstance(stored.get(name), xr.Dataset):  # computed before (live mode)
            part = stored[name]
            n = part.sizes["frame"]
            for f in features:
                for o in f.output_names:
                    data[o][:, :n] = part[o].values
        elif name in stored:  # the records of the features the node could run
            n = stored[name].shape[1]
            for field in stored[name].dtype.names:
                data[field][:, :n] = stored[name][field]
        for (node, i, slot0, role), records in results.items():
            if node != name:
                continue
            feats = by_channel[CHANNEL_OF_ROLE[role]][3]
            for f in feats:
                for o in f.output_names:
                    data[o][i, slot0:slot0 + records.shape[0]] = records[o]
        valid = np.asarray(ds.valid.values)
        for f in features:  # frames that are not valid (padding, bad files): the fill
            mask = ~valid
            if f.channel == "alpha" and "alpha_valid" in ds.coords:
                mask = mask | ~np.asarray(ds.alpha_valid.values)
            for o in f.outputs:
                data[o.name][mask] = o.fill_value
        coords = {k: v.variable for k, v in ds.coords.items()
                  if set(v.dims) <= {"set", "frame"}}
        parts.append(_labeled(ds, FrameRecords(data, ("set", "frame"), coords, features,
                                               attrs.get(name, {})), features))
    return _combine(parts)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
