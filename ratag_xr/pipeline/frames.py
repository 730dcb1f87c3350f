"""Per-frame work over the store's nodes, combined into run-level (set, frame) datasets."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ratag_xr.driver import frame_records
from ratag_xr.pipeline.context import persist_with_progress
from ratag_xr.store import natural_sorted, run_nodes, store_state

FRAME_IDENTITY = ("file", "frame_in_file", "valid")


def set_order(store) -> list[str]:
    """Sets in lexicographic order of their names (the run's frame order is per set)."""
    return sorted(store_state(store)["sets"])


def node_params(ds: xr.Dataset, per_set: xr.Dataset, names) -> dict:
    """Per-set parameters of ``per_set`` restricted to the sets of node ``ds``."""
    return {name: per_set[name].sel(set=ds.set.values) for name in names}


def analysis_nodes(store, nfiles: int | None = None) -> dict[str, xr.Dataset]:
    """The store's nodes (raw codes), with ``valid`` limited to each set's first ``nfiles``
    files (in natural order, ALGORITHMS.md §2) when given (test mode on a store that
    holds more)."""
    nodes = run_nodes(store, raw=True)
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


def _node_records(nodes: dict[str, xr.Dataset], features: str, params: dict,
                  per_set: xr.Dataset | None, per_set_names) -> list[tuple]:
    out = []
    for ds in nodes.values():
        node_par = dict(params)
        if per_set is not None:
            node_par.update(node_params(ds, per_set, per_set_names))
        out.append((ds, frame_records(ds.waveform, node_par, features=features)))
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


def _labeled(ds: xr.Dataset, records, data=None) -> xr.Dataset:
    out = records.to_dataset(data)
    return out.assign_coords({k: ds[k] for k in FRAME_IDENTITY})


def map_features(nodes: dict[str, xr.Dataset], features: str, params: dict,
                 per_set: xr.Dataset | None = None, per_set_names=()) -> xr.Dataset:
    """Run the registered features of ``features`` (a pass name or feature names) over
    every node, lazily.

    ``nodes`` come from :func:`analysis_nodes`; ``params`` holds run-wide scalars;
    ``per_set_names`` are taken per set from ``per_set``.  The result has dims (set, frame),
    sets in name order, with the frames' identity coordinates; nodes with fewer frame slots
    are padded (``valid`` False).
    """
    parts = [_labeled(ds, rec) for ds, rec in _node_records(nodes, features, params,
                                                            per_set, per_set_names)]
    return _combine(parts)


def compute_pass(nodes: dict[str, xr.Dataset], features: str, params: dict, client, *,
                 per_set: xr.Dataset | None = None, per_set_names=(), label: str = "",
                 progress: bool = True) -> xr.Dataset:
    """:func:`map_features`, computed on ``client``: one task per waveform chunk, a
    progress bar of the chunks (stderr), and the per-frame records gathered into one
    labeled in-memory (set, frame) dataset (a few numbers per frame: ~10^-5 of the raw
    data)."""
    nodes_records = _node_records(nodes, features, params, per_set, per_set_names)
    lazy = [rec.data for _, rec in nodes_records]
    lazy = persist_with_progress(client, lazy, label, progress)
    computed = client.compute(lazy, sync=True)
    return _combine([_labeled(ds, rec, data) for (ds, rec), data in
                     zip(nodes_records, computed, strict=True)])
def _fill_values(parts: list[xr.Dataset]) -> dict:
    """Padding values when nodes of different frame counts are combined."""
    fills = {"file": "", "frame_in_file": -1, "valid": False}
    for ds in parts:
        for name, var in ds.data_vars.items():
            fills.setdefault(name, -1 if np.issubdtype(var.dtype, np.integer) else np.nan)
    return fills
