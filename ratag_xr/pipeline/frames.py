"""Per-frame work over the store's nodes, combined into run-level (set, frame) datasets."""

from __future__ import annotations

from fnmatch import fnmatchcase

import numpy as np
import xarray as xr

from ratag_xr.driver import CHANNEL_VARS, frame_records
from ratag_xr.features import Feature, arguments, select
from ratag_xr.pipeline.context import persist_with_progress
from ratag_xr.store import alpha_nodes, natural_sorted, run_nodes, store_state

FRAME_IDENTITY = ("file", "frame_in_file", "trigger_time", "valid")


def set_order(store, run_cfg=None) -> list[str]:
    """The store's PMT sets chosen by the ``run`` section's ``sets``/``exclude`` patterns
    (all without ``run_cfg``), in lexicographic order of their names (the run's frame
    order is per set).  The store may hold more: choosing sets needs no re-ingest."""
    return _chosen(sorted(store_state(store)["sets"]), run_cfg)


def monitor_order(store, run_cfg=None) -> list[str]:
    """The store's alpha monitor sets (``Ch4_noSCA``, ``Ch4_SCA_<x>``: alpha channel only,
    ALGORITHMS.md §11) chosen by the same patterns as :func:`set_order`, in name order."""
    return _chosen(sorted(store_state(store)["monitors"]), run_cfg)


def _chosen(names: list[str], run_cfg) -> list[str]:
    if run_cfg is None:
        return names
    if run_cfg.sets is not None:
        names = [n for n in names if any(fnmatchcase(n, p) for p in run_cfg.sets)]
    return [n for n in names if not any(fnmatchcase(n, p) for p in run_cfg.exclude)]


def node_args(ds: xr.Dataset, args: dict) -> dict:
    """Kernel inputs of ``args`` (feature -> name -> value) restricted to the sets of node
    ``ds``: per-set DataArrays are selected by the node's set names."""
    def pick(value):
        if isinstance(value, xr.DataArray) and "set" in value.dims:
            return value.sel(set=ds.set.values)
        return value
    return {f: {k: pick(v) for k, v in a.items()} for f, a in args.items()}


def analysis_nodes(store, nfiles: int | None = None, sets=None) -> dict[str, xr.Dataset]:
    """The store's nodes (raw codes), with ``valid`` limited to each set's first ``nfiles``
    files (in natural order, ALGORITHMS.md §2) when given (test mode on a store that
    holds more)."""
    return _test_mode(_only(run_nodes(store, raw=True), sets), nfiles)


def monitor_nodes(store, nfiles: int | None = None, sets=None) -> dict[str, xr.Dataset]:
    """The store's alpha monitor nodes (raw codes, ``alpha_waveform`` only) with their
    ``sets`` (default: every monitor set), ``valid`` limited as in :func:`analysis_nodes`."""
    nodes = {name: ds for name, ds in alpha_nodes(store, raw=True).items()
             if "waveform" not in ds.data_vars}
    chosen = monitor_order(store) if sets is None else sets
    return _test_mode(_only(nodes, chosen), nfiles)


def _only(nodes: dict[str, xr.Dataset], sets) -> dict[str, xr.Dataset]:
    """The nodes restricted to ``sets`` (None: all); nodes without one are left out."""
    if sets is None:
        return nodes
    nodes = {name: ds.isel(set=np.flatnonzero(np.isin(ds.set.values, list(sets))))
             for name, ds in nodes.items()}
    return {name: ds for name, ds in nodes.items() if ds.sizes["set"]}


def _test_mode(nodes: dict[str, xr.Dataset], nfiles: int | None) -> dict[str, xr.Dataset]:
    """``valid`` limited to each set's first ``nfiles`` files (natural order)."""
    if nfiles is None:
        return nodes
    out = {}
    for name, ds in nodes.items():
        keep = np.zeros(ds.valid.shape, dtype=bool)
        for i in range(ds.sizes["set"]):
            files = ds.file.values[i]
            first = natural_sorted({f for f in files if f})[:nfiles]
            keep[i] = np.isin(files, first)
        out[name] = ds.assign_coords(valid=ds.valid & keep)
    return out


def first_frames(nodes: dict[str, xr.Dataset], n: int | None) -> dict[str, xr.Dataset]:
    """``nodes`` with ``valid`` limited to each set's first ``n`` valid frames in frame
    order (all of them for None), and without the slots after the last of them."""
    if n is None:
        return nodes
    out = {}
    for name, ds in nodes.items():
        valid = np.asarray(ds.valid.values, dtype=bool)
        keep = valid & (np.cumsum(valid, axis=1) <= n)
        used = np.flatnonzero(keep.any(axis=0))
        stop = int(used[-1]) + 1 if used.size else 0
        chunk = int(ds.attrs.get("frames_per_chunk", 1))
        stop = min(valid.shape[1], -(-stop // chunk) * chunk)  # whole chunks: one read each
        ds = ds.assign_coords(valid=(ds.valid.dims, keep))
        out[name] = ds.isel(frame=slice(0, max(stop, 1)))
    return out


def node_features(ds: xr.Dataset, features: list[Feature]) -> list[Feature]:
    """The ``features`` whose channel node ``ds`` has (a PMT-only node runs no alpha
    feature, an alpha monitor node no PMT feature)."""
    return [f for f in features if CHANNEL_VARS[f.channel][0] in ds.data_vars]


def _node_records(nodes: dict[str, xr.Dataset], features: list[Feature], args: dict
                  ) -> list[tuple]:
    """Per node: (node, its records or None when it can run none of ``features``,
    ``features``)."""
    out = []
    for ds in nodes.values():
        runnable = [f.name for f in node_features(ds, features)]
        records = frame_records(ds, node_args(ds, args), runnable) if runnable else None
        out.append((ds, records, features))
    return out


def _combine(parts: list[xr.Dataset]) -> xr.Dataset:
    """Nodes side by side along ``set``, sets in name order; nodes with fewer frame slots
    are padded (``valid`` False)."""
    if len(parts) == 1:
        combined = parts[0]
    else:
        combined = xr.concat(parts, dim="set", join="outer", combine_attrs="override",
                             fill_value=_fill_values(parts))
    names = combined.set.values
    if list(names) == sorted(names):  # reordering a lazy array adds a task per chunk
        return combined
    return combined.sortby("set")


def _labeled(ds: xr.Dataset, records, features: list[Feature], data=None) -> xr.Dataset:
    """The node's records labeled; the outputs of features it could not run (its channel
    is absent) are there too, at their fill value (NaN), so every node has every output."""
    dims = ("set", "frame")
    out = xr.Dataset(coords={d: ds[d] for d in dims}) if records is None else \
        records.to_dataset(data)
    shape = tuple(out.sizes[d] for d in dims)
    for feature in features:
        for o in feature.outputs:
            if o.name not in out:
                out[o.name] = xr.Variable(dims, np.full(shape, o.fill_value, o.dtype),
                                          {"units": o.units, "long_name": o.long_name,
                                           **o.attrs})
    return out.assign_coords({k: ds[k] for k in FRAME_IDENTITY})


def map_features(nodes: dict[str, xr.Dataset], features, config, per_set=None
                 ) -> xr.Dataset:
    """Run the registered ``features`` (a pass name, a feature name or names) over every
    node, lazily, with their inputs from ``config`` and the per-set dataset ``per_set``.

    ``nodes`` come from :func:`analysis_nodes`.  The result has dims (set, frame), sets in
    name order, with the frames' identity coordinates; nodes with fewer frame slots are
    padded (``valid`` False).
    """
    selected = select(features)
    records = _node_records(nodes, selected, arguments(selected, config, per_set))
    return _combine([_labeled(ds, rec, feats) for ds, rec, feats in records])


def compute_pass(nodes: dict[str, xr.Dataset], features, config, client, *,
                 per_set: xr.Dataset | None = None, label: str = "",
                 progress: bool = True) -> xr.Dataset:
    """:func:`map_features`, computed on ``client``: one task per waveform chunk, a
    progress bar of the chunks (stderr), and the per-frame records gathered into one
    labeled in-memory (set, frame) dataset (a few numbers per frame: ~10^-5 of the raw
    data)."""
    selected = select(features)
    nodes_records = _node_records(nodes, selected, arguments(selected, config, per_set))
    lazy = [rec.data for _, rec, _ in nodes_records if rec is not None]
    computed = iter(client.compute(persist_with_progress(client, lazy, label, progress),
                                   sync=True) if lazy else [])
    return _combine([_labeled(ds, rec, feats, None if rec is None else next(computed))
                     for ds, rec, feats in nodes_records])


def _fill_values(parts: list[xr.Dataset]) -> dict:
    """Padding values when nodes of different frame counts are combined."""
    fills = {"file": "", "frame_in_file": -1, "valid": False, "twin_key": "",
             "alpha_file": "", "alpha_valid": False,
             "trigger_time": np.datetime64("NaT", "ns")}
    for ds in parts:
        for name, var in ds.data_vars.items():
            fills.setdefault(name, -1 if np.issubdtype(var.dtype, np.integer) else np.nan)
    return fills
