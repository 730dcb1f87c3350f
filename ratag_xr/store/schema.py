"""Variables of a store node: creation, growth and coordinate writes.

The node is created once by xarray (so every variable carries the metadata xarray
reads back: dimension names, units, CF encodings) with its waveform left unwritten;
growth and coordinate writes then go through zarr directly, from the driver only.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from ratag_xr.physics.transport import drift_field, el_field
from ratag_xr.store.layout import AxisKey
from ratag_xr.store.memory import encoded_group, write_files

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
    "twin_key": ("1", "twin key: raw file name without channel tag (§11 frame identity)",
                 object, ""),
    "frame_in_file": ("1", "frame index within its raw file", np.int32, -1),
    "valid": ("1", "frame slot holds an ingested frame (false: padding)", bool, False),
}
PMT_FRAME = {
    "code_scale": ("mV", "PMT mV per raw code (polarity included): mV = code * code_scale "
                   "+ code_offset", np.float64, np.nan),
    "code_offset": ("mV", "PMT offset of the raw codes", np.float64, np.nan),
}
ALPHA_FRAME = {
    "alpha_file": ("1", "raw file name of the alpha channel", object, ""),
    "alpha_valid": ("1", "frame slot holds an ingested alpha frame (false: padding, no or "
                    "disagreeing alpha twin)", bool, False),
    "alpha_code_scale": ("V", "alpha volts per raw code: V = code * alpha_code_scale + "
                         "alpha_code_offset", np.float64, np.nan),
    "alpha_code_offset": ("V", "alpha offset of the raw codes", np.float64, np.nan),
}
#: attrs of a waveform variable naming its per-frame scaling coordinates
SCALE_ATTRS = {"waveform": {"scale_coord": "code_scale", "offset_coord": "code_offset"},
               "alpha_waveform": {"scale_coord": "alpha_code_scale",
                                  "offset_coord": "alpha_code_offset"}}
#: (set, frame) coordinates that say which frames of a waveform variable hold data
PRESENT = {"waveform": "valid", "alpha_waveform": "alpha_valid"}


def frame_specs(pmt: bool, alpha: bool) -> dict:
    """The per-frame coordinates of a node with the given channels."""
    return {**PER_FRAME, **(PMT_FRAME if pmt else {}), **(ALPHA_FRAME if alpha else {})}


def _time_coord(key: AxisKey, long_name: str) -> tuple:
    return key.time_us(), {"units": "µs", "long_name": long_name,
                           "sample_spacing": key.dt_us, "first_sample": key.t0_us}


def create_node(store: Path, node: str, key: AxisKey | None, alpha_key: AxisKey | None,
                n_sets: int, n_slots: int, chunk: int, codec) -> None:
    """Write the metadata of a new node holding ``n_sets`` sets of ``n_slots`` frame slots.

    ``key``: the PMT time axis (None: an alpha monitor node); ``alpha_key``: the alpha time
    axis (None: no alpha channel).  ``codec(dtype)`` gives each waveform's compressor.
    """
    import dask.array as da  # here: the figure helpers import this module, not Dask arrays

    variables, coords, encoding = {}, {}, {}
    for name, axis, dim, long_name, units, time_name in (
            ("waveform", key, "time", "PMT signal, positive-going", "mV",
             "time relative to the trigger"),
            ("alpha_waveform", alpha_key, "alpha_time", "alpha detector signal", "V",
             "alpha channel time relative to the trigger")):
        if axis is None:
            continue
        shape = (n_sets, n_slots, axis.n_samples)
        data = da.zeros(shape, dtype=axis.dtype, chunks=(1, chunk, axis.n_samples))
        variables[name] = (("set", "frame", dim), data, {
            "units": units, "long_name": long_name, **SCALE_ATTRS[name]})
        coords[dim] = (dim, *_time_coord(axis, time_name))
        encoding[name] = {"compressors": [codec(axis.dtype)],
                          "chunks": (1, chunk, axis.n_samples)}
    ds = xr.Dataset(
        variables,
        coords={
            "set": ("set", np.full(n_sets, "", dtype=object), {"long_name": "set name",
                                                               "units": "1"}),
            "frame": ("frame", np.arange(n_slots), {"long_name": "frame slot in the set",
                                                    "units": "1"}),
            **coords,
            "trigger_time": (("set", "frame"), np.full((n_sets, n_slots), _NAT).view(
                "datetime64[ns]"), {"long_name": "trigger time stamp (GMT)"}),
        },
        attrs={"frames_per_chunk": chunk,
               **({} if key is None else {"axis": key.to_dict()}),
               **({} if alpha_key is None else {"alpha_axis": alpha_key.to_dict()})},
    )
    for name, (units, long_name, dtype, fill) in PER_SET.items():
        ds.coords[name] = ("set", np.full(n_sets, fill, dtype=dtype),
                           {"units": units, "long_name": long_name})
    specs = frame_specs(key is not None, alpha_key is not None)
    for name, (units, long_name, dtype, fill) in specs.items():
        ds.coords[name] = (("set", "frame"), np.full((n_sets, n_slots), fill, dtype=dtype),
                           {"units": units, "long_name": long_name})
    coord_chunks = {"chunks": (1, min(_COORD_CHUNK, max(1, n_slots)))}
    encoding.update({"trigger_time": {**TRIGGER_ENCODING, **coord_chunks},
                     "set": {"chunks": (1024,)}, "frame": {"chunks": (_COORD_CHUNK,)}})
    encoding.update({k: {"chunks": (1024,)} for k in PER_SET})
    encoding.update({k: dict(coord_chunks) for k in specs})
    # Encoded in memory (the waveforms are not written: no chunk until a file fills it),
    # written as files beside the store and renamed into place: a node appears whole, and
    # without a file operation per key through zarr's I/O threads.
    files = encoded_group(ds, attrs={"complete": True}, mode="w-", compute=False,
                          encoding=encoding)
    final = Path(store) / node
    for stale in final.parent.parent.glob(f".{final.parent.name}.{node}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)  # an earlier creation, interrupted
    tmp = final.parent.parent / f".{final.parent.name}.{node}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        write_files(tmp, files)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def grow_node(store: Path, node: str, n_sets: int, n_slots: int) -> None:
    """Resize every (set, ...) and (..., frame) array of a node, filling the new entries.

    Zarr fills resized regions with the array's fill value, which is not the fill the
    coordinates use (-1, NaT, ""), so new regions are written explicitly.
    """
    group = zarr.open_group(store=str(store), path=node, mode="r+")
    old_sets, old_frames = group["set"].shape[0], group["frame"].shape[0]
    specs = {**PER_SET, **PER_FRAME, **PMT_FRAME, **ALPHA_FRAME}
    fills = {name: spec[3] for name, spec in specs.items()}
    fills.update(trigger_time=_NAT, set="")
    for name, arr in group.arrays():
        dims = arr.metadata.dimension_names
        new = tuple(n_sets if d == "set" else max(n_slots, s) if d == "frame" else s
                    for d, s in zip(dims, arr.shape, strict=True))
        if new == arr.shape:
            continue
        arr.resize(new)
        if name not in fills:
            continue  # waveforms: unwritten chunks are never read as frames (valid is False)
        for axis, dim in enumerate(dims):
            start = old_sets if dim == "set" else old_frames if dim == "frame" else None
            if start is not None and new[axis] > start:
                region = tuple(slice(start, None) if a == axis else slice(None)
                               for a in range(len(dims)))
                shape = tuple(len(range(*r.indices(n))) for r, n in zip(region, new, strict=True))
                kind = object if specs.get(name, (0, 0, None))[2] is object else arr.dtype
                arr[region] = np.full(shape, fills[name], dtype=kind)
    if n_slots > old_frames:
        group["frame"][old_frames:n_slots] = np.arange(old_frames, n_slots)


def write_set_coords(store: Path, node: str, sets: list, x_spacing: float,
                     params):
    """Per-set coordinates of ``sets`` = [(name, placement info)]: voltages and fields;
    ``x_spacing`` (s) of the node's main channel gives the sampling rate."""
    group = zarr.open_group(store=str(store), path=node, mode="r+")
    for name, info in sets:
        i = info["index"]
        gate = np.nan if info.get("gate") is None else info["gate"]
        anode = np.nan if info.get("anode") is None else info["anode"]
        group["set"][i] = name
        group["gate"][i] = gate
        group["anode"][i] = anode
        group["drift_field"][i] = float(drift_field(gate, params.drift_gap))
        group["EL_field"][i] = float(el_field(anode, gate, params.el_gap))
        group["sampling_rate"][i] = 1e-9 / x_spacing


def write_files_coords(store: Path, done: list[tuple]) -> None:
    """Per-frame coordinates of written files, ``done`` = [(task, facts)]; the validity
    flags last, so they never lie.

    A PMT file writes its frame identity and scaling; an alpha twin its alpha scaling and
    ``alpha_valid``; a file of an alpha monitor set both identity and alpha scaling.  The
    files of one set row are written together: per coordinate, one read and one write of
    the slots from the first file's to the last one's.
    """
    rows: dict[tuple[str, int], list] = {}
    for task, facts in done:
        rows.setdefault((task.node, task.set_index), []).append((task, facts))
    for (node, i), items in rows.items():
        _write_row(zarr.open_group(store=str(store), path=node, mode="r+"), i, items)


def _write_row(group, i: int, items: list[tuple]) -> None:
    """The coordinates of the files ``items`` = [(task, facts)] of set row ``i``."""
    lo = min(t.slot0 for t, _ in items)
    hi = max(t.slot0 + t.n_frames for t, _ in items)
    values: dict[str, np.ndarray] = {}

    def put(name, a, b, value):
        if name not in values:
            old = group[name][i, lo:hi]
            values[name] = np.asarray(old, dtype=object if old.dtype.kind in "OTU"
                                      else old.dtype)
        values[name][a - lo:b - lo] = value

    for task, facts in items:
        a, b, n = task.slot0, task.slot0 + task.n_frames, task.n_frames
        identity = task.role == "pmt" or task.twin_of is None
        if identity:
            put("file", a, b, task.path.name)
            put("twin_key", a, b, task.twin_key)
            put("frame_in_file", a, b, np.arange(n, dtype=np.int32))
            put("trigger_time", a, b, np.asarray(facts["trigger_ns"], dtype=np.int64))
        if task.role == "pmt":
            put("code_scale", a, b, facts["scale"])
            put("code_offset", a, b, facts["offset"])
        else:
            put("alpha_file", a, b, task.path.name)
            put("alpha_code_scale", a, b, facts["scale"])
            put("alpha_code_offset", a, b, facts["offset"])
            put("alpha_valid", a, b, True)
        if identity:
            put("valid", a, b, True)
    flags = ("alpha_valid", "valid")
    for name in [k for k in values if k not in flags] + [k for k in flags if k in values]:
        group[name][i, lo:hi] = values[name]
    if "valid" in values:
        group["n_frames"][i] = int(np.count_nonzero(group["valid"][i, :]))
