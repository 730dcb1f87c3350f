"""Open a waveform store lazily as labeled xarray objects."""

from __future__ import annotations

import os
from pathlib import Path

import dask
import numpy as np
import xarray as xr
import zarr

from ratag_xr.errors import StoreError
from ratag_xr.store import layout as L
from ratag_xr.store.chunks import direct_waveform, read_frames
from ratag_xr.store.schema import PRESENT, SCALE_ATTRS

WAVEFORMS = tuple(SCALE_ATTRS)  # ("waveform", "alpha_waveform")


def store_state(store: str | Path) -> dict:
    """The store's own bookkeeping (run id, parameters, set -> node map; ``monitors``:
    alpha monitor set -> node map)."""
    store = Path(store)
    if not (store / "zarr.json").exists():
        raise StoreError(f"{store}: not a ratag_xr waveform store (run `ratag-xr ingest` first)")
    state = zarr.open_group(store=str(store), mode="r").attrs.get(L.ATTRS_KEY)
    if not state or not (state.get("sets") or state.get("monitors")):
        raise StoreError(f"{store}: the store holds no sets yet")
    if state.get("format") != L.FORMAT_VERSION:
        raise StoreError(f"{store}: store format {state.get('format')} is not "
                         f"{L.FORMAT_VERSION}: rebuild it (ratag-xr ingest --rebuild)")
    state = dict(state)
    state.setdefault("monitors", {})
    return state


#: Trees opened in this process, by (store, raw), with the identity of what they were
#: opened from (:func:`_identity`): the stages of one command open the same store often.
_OPENED: dict[tuple[str, bool], tuple[tuple, xr.DataTree]] = {}


def _identity(store: Path) -> tuple:
    """Every metadata and coordinate file of the store and its manifest (path, inode,
    modification time, size): what an opened tree holds in memory.  Waveform chunks are
    not in it: they are read when computed (their Dask names carry the manifest's)."""
    out = []
    for folder, dirs, files in os.walk(store):
        rel = os.path.relpath(folder, store)
        if os.path.basename(rel) in WAVEFORMS:
            dirs[:] = []  # a waveform array: its zarr.json only
        for name in files:
            st = os.stat(os.path.join(folder, name))
            out.append((rel, name, st.st_ino, st.st_mtime_ns, st.st_size))
    try:
        st = L.manifest_path(store).stat()
        out.append(("manifest", st.st_ino, st.st_mtime_ns, st.st_size))
    except FileNotFoundError:
        pass
    return tuple(sorted(out))


def open_run(store: str | Path, *, raw: bool = False) -> xr.DataTree:
    """The run as a DataTree: one child per time axis.

    A PMT node has ``waveform(set, frame, time)`` and, for two-channel sets,
    ``alpha_waveform(set, frame, alpha_time)``, both chunked alike along ``frame``; an alpha
    monitor node has only ``alpha_waveform``.  Waveforms decode lazily (Dask): the PMT to
    positive-going mV, the alpha channel to V, each frame with its own file's scale
    (``code_scale``/``code_offset``, ``alpha_code_scale``/``alpha_code_offset``).  Frames
    without data are NaN: padding (``valid == False``) where scales differ, and alpha frames
    whose twin is missing or disagrees (``alpha_valid == False``).  ``raw=True`` keeps the
    integer codes; their attributes name the scale coordinates (``scale_coord``,
    ``offset_coord``) and, where every frame shares one scale, also hold it as
    ``scale_factor``/``add_offset`` (what the kernels take).  Frame identity: ``file``,
    ``twin_key``, ``frame_in_file``; root attributes hold the run id.

    A tree opened before in this process is copied while the store's metadata,
    coordinates and manifest are the same on disk (:func:`_identity`).
    """
    key = (str(Path(store).resolve()), bool(raw))
    identity = _identity(Path(store))
    hit = _OPENED.get(key)
    if hit is not None and hit[0] == identity:
        return hit[1].copy(deep=True)
    tree = _open_run(store, raw)
    _OPENED[key] = (identity, tree)
    return tree.copy(deep=True)


def _open_run(store, raw: bool) -> xr.DataTree:
    state = store_state(store)
    tree = xr.open_datatree(str(store), engine="zarr", consolidated=False, chunks={},
                            mask_and_scale={name: False for name in WAVEFORMS})
    nodes = {f"/{name}": _channels(_load_coords(child.to_dataset()), raw, store, name)
             for name, child in tree.children.items()}
    root = xr.Dataset(attrs={"run_id": state["run_id"], "run_dir": state.get("run_dir", ""),
                             "store": str(Path(store))})
    return xr.DataTree.from_dict({"/": root, **nodes})


def _load_coords(ds: xr.Dataset) -> xr.Dataset:
    """Coordinates are small labels: hold them in memory (strings as Python str), keep
    only waveforms lazy."""
    names = list(ds.coords)
    # one read of them all, here (not as tasks of whatever cluster is the default)
    loaded = dask.compute(*[ds[name] for name in names], scheduler="synchronous")
    coords = {name: var.astype(object) if var.dtype.kind == "T" else var
              for name, var in zip(names, loaded, strict=True)}
    return ds.assign_coords(coords)


def common_scaling(ds: xr.Dataset, name: str) -> tuple[float, float] | None:
    """(scale, offset) shared by every frame of waveform ``name`` that holds data, or None
    when they differ (or when frames of a valid slot lack this channel's data)."""
    present = np.asarray(ds[PRESENT[name]].values, dtype=bool)
    if not present.any() or (np.asarray(ds.valid.values, dtype=bool) & ~present).any():
        return None
    attrs = SCALE_ATTRS[name]
    scale = np.asarray(ds[attrs["scale_coord"]].values)[present]
    offset = np.asarray(ds[attrs["offset_coord"]].values)[present]
    if np.all(scale == scale[0]) and np.all(offset == offset[0]):
        return float(scale[0]), float(offset[0])
    return None


def _channels(ds: xr.Dataset, raw: bool, store, node: str) -> xr.Dataset:
    """Waveform variables as raw codes (with their scaling attributes) or decoded; each
    Dask block read straight from its chunk file (:mod:`ratag_xr.store.chunks`)."""
    for name in WAVEFORMS:
        if name not in ds.data_vars:
            continue
        var = ds[name]
        var = xr.Variable(var.dims, direct_waveform(store, f"{node}/{name}", var.data),
                          var.attrs, var.encoding)
        attrs = {k: v for k, v in var.attrs.items() if k not in ("scale_factor", "add_offset")}
        attrs.update(SCALE_ATTRS[name])
        common = common_scaling(ds, name)
        if raw:
            if common is not None:
                attrs.update(scale_factor=common[0], add_offset=common[1])
            ds[name] = xr.Variable(var.dims, var.data, attrs, var.encoding)
            continue
        data = var.data.astype(np.float64)
        if common is not None:
            data = data * common[0] + common[1]
        else:
            present = np.asarray(ds[PRESENT[name]].values, dtype=bool)
            names = SCALE_ATTRS[name]
            import dask.array as da  # here: read_set_frames (a figure's) needs no Dask

            chunks = (*data.chunks[:2], (1,))
            scale = np.where(present, ds[names["scale_coord"]].values, np.nan)[..., None]
            offset = np.where(present, ds[names["offset_coord"]].values, np.nan)[..., None]
            data = data * da.from_array(scale, chunks=chunks) + da.from_array(offset,
                                                                                chunks=chunks)
        for key in SCALE_ATTRS[name]:
            attrs.pop(key)
        ds[name] = xr.Variable(var.dims, data, attrs, var.encoding)
    return ds


def _node_of(state: dict, store, set_name: str) -> str:
    for table in ("sets", "monitors"):
        if set_name in state[table]:
            return state[table][set_name]["node"]
    raise StoreError(f"{store}: no set {set_name!r}; sets: {sorted(state['sets'])}"
                     + (f", alpha monitor sets: {sorted(state['monitors'])}"
                        if state["monitors"] else ""))


def open_set(store: str | Path, set_name: str, *, raw: bool = False) -> xr.Dataset:
    """One set's node dataset restricted to that set and its valid frames (a PMT set or an
    alpha monitor set).  Raw codes get ``scale_factor``/``add_offset`` when the set's frames
    share one scale (even where the node's other sets differ)."""
    state = store_state(store)
    node = _node_of(state, store, set_name)
    ds = open_run(store, raw=raw)[node].to_dataset()
    ds = ds.sel(set=set_name)
    ds = ds.isel(frame=ds.valid.values)
    if raw:
        for name in WAVEFORMS:
            common = common_scaling(ds, name) if name in ds.data_vars else None
            if common is not None:
                ds[name].attrs.update(scale_factor=common[0], add_offset=common[1])
    return ds


def _set_row(store, set_name: str) -> tuple[zarr.Group, int]:
    """The node group holding ``set_name`` and the set's row in it."""
    state = store_state(store)
    group = zarr.open_group(store=str(store), path=_node_of(state, store, set_name), mode="r")
    names = np.asarray(group["set"][:], dtype=object)
    return group, int(np.flatnonzero(names == set_name)[0])


def set_frame_count(store: str | Path, set_name: str) -> int:
    """Valid frames of a set (``open_set(store, set_name).sizes["frame"]``), read directly."""
    group, row = _set_row(store, set_name)
    return int(group["n_frames"][row])


def read_set_frames(store: str | Path, set_name: str, positions) -> xr.Dataset:
    """The PMT frames at ``positions`` (indices along ``open_set(store, set_name).frame``,
    the set's valid frames in frame order) read now, straight from Zarr without Dask: the
    ``waveform`` in mV (each frame with its own file's scale) with ``time``, ``file``,
    ``frame_in_file`` and ``frame`` (slot) coordinates, equal to what
    ``open_set(...).isel(frame=positions)`` decodes.  For a few frames (a figure's): only
    the chunks holding them are read."""
    group, row = _set_row(store, set_name)
    slots = np.flatnonzero(np.asarray(group["valid"][row, :], dtype=bool))
    slots = slots[np.asarray(positions, dtype=np.int64)]
    if "waveform" not in group:
        raise StoreError(f"{store}: set {set_name!r} has no PMT waveform")
    waveform = group["waveform"]
    codes = read_frames(store, f"{group.path}/waveform", row, slots)  # only their chunks
    scale = np.asarray(group["code_scale"].get_orthogonal_selection((row, slots)))
    offset = np.asarray(group["code_offset"].get_orthogonal_selection((row, slots)))
    mv = codes.astype(np.float64) * scale[:, None] + offset[:, None]
    attrs = {k: v for k, v in waveform.attrs.items()
             if k not in ("scale_factor", "add_offset", "scale_coord", "offset_coord",
                          "_ARRAY_DIMENSIONS", "_FillValue", "coordinates")}
    time = group["time"]
    coords = {
        "time": ("time", time[:], {k: v for k, v in time.attrs.items()
                                   if not k.startswith("_")}),
        "frame": ("frame", slots),
        "file": ("frame", np.asarray(group["file"].get_orthogonal_selection((row, slots)),
                                     dtype=object)),
        "frame_in_file": ("frame", group["frame_in_file"].get_orthogonal_selection(
            (row, slots))),
    }
    return xr.Dataset({"waveform": (("frame", "time"), mv, attrs)}, coords=coords)


def run_nodes(store: str | Path, *, raw: bool = False) -> dict[str, xr.Dataset]:
    """Each PMT node's Dataset by node name (the unit the per-frame driver maps over); a
    two-channel node holds ``alpha_waveform`` beside ``waveform``."""
    tree = open_run(store, raw=raw)
    return {name: child.to_dataset() for name, child in tree.children.items()
            if "waveform" in child.data_vars}


def alpha_nodes(store: str | Path, *, raw: bool = False) -> dict[str, xr.Dataset]:
    """Each node holding ``alpha_waveform`` (two-channel PMT nodes and monitor nodes)."""
    tree = open_run(store, raw=raw)
    return {name: child.to_dataset() for name, child in tree.children.items()
            if "alpha_waveform" in child.data_vars}
