"""Variables of a store node: creation, growth and coordinate writes.

The node is created once by xarray (so every variable carries the metadata xarray
reads back: dimension names, units, CF encodings) with its waveform left unwritten;
growth and coordinate writes then go through zarr directly, from the driver only.
"""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
import zarr

from ratag_xr.physics.transport import drift_field, el_field
from ratag_xr.store.layout import AxisKey

_COORD_CHUNK = 65536  # frames per chunk of the small per-frame coordinate arrays
_NAT = np.iinfo(np.int64).min
TRIGGER_ENCODING = {"units": "nanoseconds since 1970-01-01", "dtype": "int64",
                    "_FillValue": _NAT}

PER_SET = {
    "gate": ("V", "gate voltage", np.float64, np.nan),
    "anode": ("V", "anode voltage", np.float64, np.nan),
    "drift_field": ("V/cm", "drift field", np.float64, np.nan),
    "EL_field": ("V/cm", "electroluminescence field", np.float64, np.nan),
    "sampling_rate": ("GS/s", "sampling rate", np.float64, np.nan),
    "n_frames": ("1", "number of frames ingested", np.int64, 0),
}
PER_FRAME = {
    "file": ("1", "raw file name", object, ""),
    "frame_in_file": ("1", "frame index within its raw file", np.int32, -1),
    "valid": ("1", "frame slot holds an ingested frame (false: padding)", bool, False),
}


def create_node(store: Path, node: str, key: AxisKey, n_sets: int, n_slots: int, chunk: int,
                codec, sign: float) -> None:
    """Write the metadata of a new node holding ``n_sets`` sets of ``n_slots`` frame slots."""
    shape = (n_sets, n_slots, key.n_samples)
    waveform = da.zeros(shape, dtype=key.dtype, chunks=(1, chunk, key.n_samples))
    mv = 1000.0 * sign
    ds = xr.Dataset(
        {"waveform": (("set", "frame", "time"), waveform, {
            "units": "mV", "long_name": "PMT signal, positive-going",
            "scale_factor": key.y_scale * mv, "add_offset": key.y_offset * mv})},
        coords={
            "set": ("set", np.full(n_sets, "", dtype=object), {"long_name": "set name",
                                                               "units": "1"}),
            "frame": ("frame", np.arange(n_slots), {"long_name": "frame slot in the set",
                                                    "units": "1"}),
            "time": ("time", key.time_us(), {
                "units": "µs", "long_name": "time relative to the trigger",
                "sample_spacing": key.dt_us, "first_sample": key.t0_us}),
            "trigger_time": (("set", "frame"), np.full((n_sets, n_slots), _NAT).view(
                "datetime64[ns]"), {"long_name": "trigger time stamp (GMT)"}),
        },
        attrs={"axis": key.to_dict(), "frames_per_chunk": chunk},
    )
    for name, (units, long_name, dtype, fill) in PER_SET.items():
        ds.coords[name] = ("set", np.full(n_sets, fill, dtype=dtype),
                           {"units": units, "long_name": long_name})
    for name, (units, long_name, dtype, fill) in PER_FRAME.items():
        ds.coords[name] = (("set", "frame"), np.full((n_sets, n_slots), fill, dtype=dtype),
                           {"units": units, "long_name": long_name})
    coord_chunks = {"chunks": (1, min(_COORD_CHUNK, max(1, n_slots)))}
    encoding = {"waveform": {"compressors": [codec], "chunks": (1, chunk, key.n_samples)},
                "trigger_time": {**TRIGGER_ENCODING, **coord_chunks},
                "set": {"chunks": (1024,)}, "frame": {"chunks": (_COORD_CHUNK,)}}
    encoding.update({k: {"chunks": (1024,)} for k in PER_SET})
    encoding.update({k: dict(coord_chunks) for k in PER_FRAME})
    ds.to_zarr(str(store), group=node, mode="w-", compute=False, zarr_format=3,
               consolidated=False, encoding=encoding)
    zarr.open_group(store=str(store), path=node, mode="r+").attrs["complete"] = True


def grow_node(store: Path, node: str, n_sets: int, n_slots: int) -> None:
    """Resize every (set, ...) and (..., frame) array of a node, filling the new entries.

    Zarr fills resized regions with the array's fill value, which is not the fill the
    coordinates use (-1, NaT, ""), so new regions are written explicitly.
    """
    group = zarr.open_group(store=str(store), path=node, mode="r+")
    old_sets, old_frames = group["set"].shape[0], group["frame"].shape[0]
    fills = {name: spec[3] for name, spec in {**PER_SET, **PER_FRAME}.items()}
    fills.update(trigger_time=_NAT, set="")
    for name, arr in group.arrays():
        dims = arr.metadata.dimension_names
        new = tuple(n_sets if d == "set" else max(n_slots, s) if d == "frame" else s
                    for d, s in zip(dims, arr.shape, strict=True))
        if new == arr.shape:
            continue
        arr.resize(new)
        if name not in fills:
            continue  # waveform: unwritten chunks are never read as frames (valid is False)
        for axis, dim in enumerate(dims):
            start = old_sets if dim == "set" else old_frames if dim == "frame" else None
            if start is not None and new[axis] > start:
                region = tuple(slice(start, None) if a == axis else slice(None)
                               for a in range(len(dims)))
                shape = tuple(len(range(*r.indices(n))) for r, n in zip(region, new, strict=True))
                arr[region] = np.full(shape, fills[name], dtype=arr.dtype if name != "file"
                                      else object)
    if n_slots > old_frames:
        group["frame"][old_frames:n_slots] = np.arange(old_frames, n_slots)


def write_set_coords(store: Path, node: str, sets: list, key: AxisKey, params):
    """Per-set coordinates of ``sets`` = [(name, placement info)]: voltages and fields
    (``params``: the run config's ``run`` section, for the gaps)."""
    group = zarr.open_group(store=str(store), path=node, mode="r+")
    for name, info in sets:
        i = info["index"]
        group["set"][i] = name
        group["gate"][i] = info["gate"]
        group["anode"][i] = info["anode"]
        group["drift_field"][i] = float(drift_field(info["gate"], params.drift_gap))
        group["EL_field"][i] = float(el_field(info["anode"], info["gate"], params.el_gap))
        group["sampling_rate"][i] = 1e-9 / key.x_spacing


def write_file_coords(store: Path, task, trigger_ns: np.ndarray) -> None:
    """Per-frame coordinates of one written file; ``valid`` last, so it never lies."""
    group = zarr.open_group(store=str(store), path=task.node, mode="r+")
    i, a, b = task.set_index, task.slot0, task.slot0 + task.n_frames
    group["file"][i, a:b] = np.full(task.n_frames, task.path.name, dtype=object)
    group["frame_in_file"][i, a:b] = np.arange(task.n_frames, dtype=np.int32)
    group["trigger_time"][i, a:b] = np.asarray(trigger_ns, dtype=np.int64)
    group["valid"][i, a:b] = True
    group["n_frames"][i] = int(np.count_nonzero(group["valid"][i, :]))
