"""Open a waveform store lazily as labeled xarray objects."""

from __future__ import annotations

from pathlib import Path

import dask
import xarray as xr
import zarr

from ratag_xr.errors import StoreError
from ratag_xr.store import layout as L


def store_state(store: str | Path) -> dict:
    """The store's own bookkeeping (run id, parameters, set -> node map)."""
    store = Path(store)
    if not (store / "zarr.json").exists():
        raise StoreError(f"{store}: not a ratag_xr waveform store (run `ratag-xr ingest` first)")
    state = zarr.open_group(store=str(store), mode="r").attrs.get(L.ATTRS_KEY)
    if not state or not state.get("sets"):
        raise StoreError(f"{store}: the store holds no sets yet")
    return dict(state)


def open_run(store: str | Path, *, raw: bool = False) -> xr.DataTree:
    """The run as a DataTree: one child per time axis, each with ``waveform(set, frame, time)``.

    Waveforms decode lazily (Dask) to positive-going mV; ``raw=True`` keeps the integer
    codes with ``scale_factor``/``add_offset`` in their attributes (what the kernels take).
    Padding frames have ``valid == False``.  Root attributes hold the run id and parameters.
    """
    state = store_state(store)
    mask = {"waveform": False} if raw else None
    tree = xr.open_datatree(str(store), engine="zarr", consolidated=False, chunks={},
                            mask_and_scale=mask)
    nodes = {f"/{name}": _load_coords(child.to_dataset())
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


def open_set(store: str | Path, set_name: str, *, raw: bool = False) -> xr.Dataset:
    """One set's node dataset restricted to that set and its valid frames."""
    state = store_state(store)
    if set_name not in state["sets"]:
        raise StoreError(f"{store}: no set {set_name!r}; sets: {sorted(state['sets'])}")
    node = state["sets"][set_name]["node"]
    ds = open_run(store, raw=raw)[node].to_dataset()
    ds = ds.sel(set=set_name)
    return ds.isel(frame=ds.valid.values)


def run_nodes(store: str | Path, *, raw: bool = False) -> dict[str, xr.Dataset]:
    """Each node's Dataset by node name (the unit the per-frame driver maps over)."""
    tree = open_run(store, raw=raw)
    return {name: child.to_dataset() for name, child in tree.children.items()}
