"""Map the registered per-frame kernels over a lazy (set, frame, time) waveform array.

:func:`frame_records` runs every selected :class:`~ratag_xr.features.Feature` kernel
on each waveform chunk in one Dask task, fused with the task that reads the chunk: the
task gets the chunk's frames with ``time`` as the core dimension, the chunk's slice of the
``valid`` mask and of the per-set parameters, and returns one record per frame (a numpy
structured array, one field per feature output).  One task per chunk keeps the
scheduler's share small (a chunk of 40 frames is ~25 ms of work; a task costs ~1 ms of
scheduling).  :func:`compute_features` turns the records into a labeled Dataset, one
variable per output, lazily; computing it reads every waveform chunk once.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.layers import ArrayBlockwiseDep

from ratag_xr.errors import AnalysisError, RatagError
from ratag_xr.features import PASSES, Feature, select

TIME = "time"
# A time coordinate within this fraction of a sample of t0 + i*dt counts as uniform.
_UNIFORM_RTOL = 1e-6


class KernelRef:
    """A kernel that travels to Dask workers by import path instead of by value.

    Unpickling a numba gufunc compiled with ``cache=True`` crashes the process (numba
    0.68), and a gufunc sent by value would be recompiled on every worker anyway; by
    reference, a worker imports the kernel's module once (loading numba's cache).
    """

    def __init__(self, kernel, frames=None):
        self.kernel = kernel
        self.frames = frames  # the kernel over a block, the GIL released (Feature.frames)
        self.path = _path(kernel)

    @classmethod
    def wrap(cls, kernel, frames=None):
        """A KernelRef if ``kernel`` is importable as module.name, else the kernel itself
        (``frames`` is kept where it is importable too).

        A kernel defined in ``__main__`` (a notebook, a script) is "importable" here but not
        on a worker, whose ``__main__`` is another program: it travels by value.
        """
        if not _importable(kernel):
            return kernel
        return cls(kernel, frames if frames is not None and _importable(frames) else None)

    def __reduce__(self):
        return _import_kernel, (*self.path, None if self.frames is None else _path(self.frames))

    def __call__(self, *args, **kwargs):
        return self.kernel(*args, **kwargs)


def _path(obj) -> tuple:
    return getattr(obj, "__module__", None), getattr(obj, "__name__", None)


def _importable(obj) -> bool:
    module, name = _path(obj)
    if module in ("__main__", "__mp_main__"):
        return False
    try:
        return getattr(importlib.import_module(module), name) is obj
    except (ImportError, AttributeError, TypeError, ValueError):
        return False


def _import_kernel(module: str, name: str, frames: tuple | None = None) -> KernelRef:
    kernel = getattr(importlib.import_module(module), name)
    block = None if frames is None else getattr(importlib.import_module(frames[0]), frames[1])
    return KernelRef(kernel, block)


def call_kernel(kernel, raw: np.ndarray, inputs, dtypes) -> tuple:
    """The outputs (a tuple, one array per output, shaped as ``raw`` without its last
    dim) of a feature's kernel on a block of frames: through its GIL-free block caller
    when it has one (``kernel.frames``; every input broadcast to one float64 per frame,
    the outputs of ``dtypes`` allocated here), else by calling the gufunc."""
    frames = getattr(kernel, "frames", None)
    if frames is None or raw.ndim < 2:
        results = kernel(raw, *inputs)
        return results if isinstance(results, tuple) else (results,)
    outer = raw.shape[:-1]
    n = int(np.prod(outer))
    outs = tuple(np.empty(n, dtype=d) for d in dtypes)
    if n:
        per_frame = [np.ascontiguousarray(np.broadcast_to(np.asarray(v, np.float64), outer))
                     .reshape(n) for v in inputs]
        frames(raw.reshape(n, raw.shape[-1]), *per_frame, *outs)
    return tuple(o.reshape(outer) for o in outs)


def code_scaling(waveform: xr.DataArray) -> tuple[float, float]:
    """(scale mV/code, offset mV) of raw codes: ``scale_factor``/``add_offset`` attrs.

    Integer codes opened with CF decoding switched off may carry them in ``encoding``
    instead.  Float data without attrs is taken as already decoded (1, 0): a float array
    with the factors only in ``encoding`` was decoded by xarray and must not be scaled again.
    """
    attrs = waveform.attrs
    if "scale_factor" in attrs or "add_offset" in attrs:
        source = attrs
    elif waveform.dtype.kind in "iu":
        source = waveform.encoding
    else:
        source = {}
    return float(source.get("scale_factor", 1.0)), float(source.get("add_offset", 0.0))


def frame_scaling(waveform: xr.DataArray, frame_dims=None):
    """(scale, offset) of raw codes for the kernels: floats when one scale holds for every
    frame (:func:`code_scaling`), else arrays over ``frame_dims`` (default: every dim but
    the last), length 1 along the dims they lack.

    Per-frame scales come from the store's raw waveforms: their ``scale_coord`` /
    ``offset_coord`` attrs name (set, frame) coordinates holding each file's own scale
    (a set whose volts/div changed between files).  Frames without a scale (padding) get
    1 and 0; their results are replaced by the fill values anyway.
    """
    attrs = waveform.attrs
    if "scale_factor" in attrs or "add_offset" in attrs or "scale_coord" not in attrs:
        return code_scaling(waveform)
    frame_dims = tuple(waveform.dims[:-1] if frame_dims is None else frame_dims)
    out = []
    for key, neutral in (("scale_coord", 1.0), ("offset_coord", 0.0)):
        name = attrs.get(key)
        if name not in waveform.coords:
            raise RatagError(f"the waveform's {key} attribute names {name!r}, which is not "
                             f"one of its coordinates ({sorted(waveform.coords)})")
        values = _frame_shaped(waveform.coords[name].astype(np.float64), frame_dims)
        out.append(np.where(np.isfinite(values), values, neutral))
    return out[0], out[1]


#: mV per unit of a waveform's ``units`` attribute: the kernels take mV (the feature
#: contract), the store keeps the alpha channel in V
MV_PER_UNIT = {"mV": 1.0, "V": 1000.0}


def mv_per_unit(waveform: xr.DataArray) -> float:
    """Factor from ``waveform``'s units to mV (no ``units`` attribute: mV)."""
    units = waveform.attrs.get("units", "mV")
    if units not in MV_PER_UNIT:
        raise RatagError(f"waveform {waveform.name!r} has units {units!r}; the kernels take "
                         f"mV and convert only from {sorted(MV_PER_UNIT)}")
    return MV_PER_UNIT[units]


def time_axis(time: xr.DataArray | np.ndarray) -> tuple[float, float]:
    """(t0, dt) in µs such that sample ``i`` is at ``t0 + i*dt``, from a time coordinate.

    Uses the coordinate's ``first_sample``/``sample_spacing`` attrs when present (the
    store writes the coordinate from them); otherwise finds the spacing that reproduces
    the coordinate exactly, so kernels and coordinate agree on every sample time.
    """
    values = np.asarray(time, dtype=np.float64)
    n = values.size
    if n < 2:
        raise RatagError(f"the time axis needs at least 2 samples to define dt, got {n}")
    index = np.arange(n)
    attrs = getattr(time, "attrs", {})
    candidates = []
    if "first_sample" in attrs and "sample_spacing" in attrs:
        candidates.append((float(attrs["first_sample"]), float(attrs["sample_spacing"])))
    t0 = float(values[0])
    dt = (values[-1] - values[0]) / (n - 1)
    if not dt > 0:
        raise RatagError(f"the time coordinate must increase, got {values[0]} .. {values[-1]}")
    near, up, down = [dt, values[1] - values[0]], dt, dt
    for _ in range(4):  # the spacing that made the coordinate is within a few ulps of dt
        up, down = np.nextafter(up, np.inf), np.nextafter(down, -np.inf)
        near += [up, down]
    candidates += [(t0, float(d)) for d in near]
    for c0, cdt in candidates:
        if cdt > 0 and np.array_equal(c0 + index * cdt, values):
            return c0, cdt
    c0, cdt = candidates[0]
    deviation = np.max(np.abs(c0 + index * cdt - values))
    if deviation <= _UNIFORM_RTOL * cdt:
        return c0, cdt
    raise RatagError(f"the time coordinate is not uniform: it deviates from t0 + i*dt "
                     f"(t0={c0} µs, dt={cdt} µs) by up to {deviation:.3g} µs")


def _check_time_chunks(waveform: xr.DataArray) -> None:
    if waveform.chunks is None:
        return
    dim = waveform.dims[-1]  # time last
    chunks = waveform.chunks[-1]
    if len(chunks) > 1:
        raise RatagError(
            f"the waveform's {dim} axis is split into {len(chunks)} chunks {chunks[:4]}...; "
            f"per-frame kernels need each frame in one chunk: chunk it {{'{dim}': -1}} at "
            "ingest (rechunking along time copies every frame)")


def _param_value(value, name: str, feature: Feature, frame_dims):
    """A kernel input as float64: a scalar, or an array over ``frame_dims`` with length 1
    along the dims it does not have (it broadcasts against the frames)."""
    if isinstance(value, xr.DataArray):
        extra = set(value.dims) - set(frame_dims)
        if extra:
            raise AnalysisError(f"input {name!r} of feature {feature.name!r} has dims "
                                f"{value.dims}; allowed are {tuple(frame_dims)}")
        return _frame_shaped(value.astype(np.float64), frame_dims)
    try:
        return np.float64(value)
    except (TypeError, ValueError):
        raise AnalysisError(f"input {name!r} of feature {feature.name!r} must be a "
                            f"number or a DataArray, got {value!r}") from None


def _inputs(feature: Feature, args: Mapping) -> list:
    """The feature's inputs in kernel order from ``args`` (by feature name, then input
    name; or flat by input name)."""
    given = args.get(feature.name, args)
    missing = [n for n in feature.arg_names if n not in given]
    if missing:
        raise AnalysisError(f"feature {feature.name!r} needs input(s) {missing}, which were "
                            f"not given (given: {sorted(given)})")
    return [given[n] for n in feature.arg_names]


def _frame_shaped(value: xr.DataArray, frame_dims) -> np.ndarray:
    """``value``'s numbers in ``frame_dims`` order, length 1 along the dims it lacks."""
    missing = [d for d in frame_dims if d not in value.dims]
    return np.asarray(value.expand_dims(missing).transpose(*frame_dims).values)


def _record(value):
    """A parameter as a plain attribute value: a float, or a nested list (e.g. per set)."""
    if isinstance(value, np.ndarray):
        return np.squeeze(value).tolist()
    return float(value)


def _block(array, slices):
    """The part of a frame-shaped input that belongs to one chunk (length-1 dims kept)."""
    if not isinstance(array, np.ndarray) or array.ndim == 0:
        return array
    return array[tuple(slice(None) if n == 1 else s for n, s in zip(array.shape, slices,
                                                                     strict=True))]


class _PerChunk(ArrayBlockwiseDep):
    """Per-chunk inputs of the fused task: chunk index -> (valid masks, parameters,
    per-frame scales), one entry per channel."""

    def __init__(self, chunks, values: dict):
        super().__init__(chunks)
        self.values = values

    def __getitem__(self, idx):
        return self.values[tuple(idx)]


#: per channel: (waveform variable of a store node, its time dimension, its valid mask)
CHANNEL_VARS = {"pmt": ("waveform", "time", "valid"),
                "alpha": ("alpha_waveform", "alpha_time", "alpha_valid")}


@dataclass(frozen=True)
class ChannelKernels:
    """The kernels run on one channel's block of a chunk, and that channel's axis and
    scaling (``scale``/``offset`` None: per frame, given with each chunk)."""

    kernels: tuple
    outputs: tuple  # output names, per kernel
    fill: tuple  # fill value per output name (in the order of ``outputs`` flattened)
    scale: float | None
    offset: float | None
    t0: float
    dt: float


def run_kernels(*args, channels: tuple, record: np.dtype) -> np.ndarray:
    """Every kernel on a block of frames: one record per frame.

    ``args``: one block of raw codes per channel (time last, the same frames), then the
    chunk's inputs ``(valids, params, scales)``, per channel: the block's valid mask (None:
    all valid), per kernel its parameter values (scalars or arrays that broadcast against
    the frames), and the per-frame ``(scale, offset)`` where that channel's frames
    have their own (else None: the channel's scalars).  Frames that are not valid get each
    of that channel's outputs' fill value.
    """
    *blocks, (valids, params, scales) = args
    out = np.empty(blocks[0].shape[:-1], dtype=record)
    for raw, ch, valid, values, scaling in zip(blocks, channels, valids, params, scales,
                                               strict=True):
        scale, offset = scaling if scaling is not None else (ch.scale, ch.offset)
        for kernel, names, vals in zip(ch.kernels, ch.outputs, values, strict=True):
            results = call_kernel(kernel, raw, (scale, offset, ch.t0, ch.dt, *vals),
                                  [record[name] for name in names])
            for name, result in zip(names, results, strict=True):
                out[name] = result
        if valid is not None:
            bad = ~np.broadcast_to(valid, out.shape)
            names = [n for group in ch.outputs for n in group]
            for name, value in zip(names, ch.fill, strict=True):
                out[name][bad] = value
    return out


@dataclass
class FrameRecords:
    """Per-frame results of the selected features: ``data`` is a structured array over
    ``dims`` (lazy Dask or numpy), one field per output; :meth:`to_dataset` labels it."""

    data: object
    dims: tuple[str, ...]
    coords: dict
    features: list[Feature]
    attrs: dict = field(default_factory=dict)

    def to_dataset(self, data=None) -> xr.Dataset:
        """One variable per output (``units``, ``long_name``), from ``data`` (default:
        :attr:`data`; e.g. the same records computed) and the waveform's frame coords."""
        data = self.data if data is None else data
        variables = {}
        for feature in self.features:
            for output in feature.outputs:
                variables[output.name] = xr.Variable(
                    self.dims, data[output.name],
                    attrs={"units": output.units, "long_name": output.long_name,
                           **output.attrs})
        return xr.Dataset(variables, coords=self.coords, attrs=dict(self.attrs))


def _has_channel(source, channel: str) -> bool:
    if isinstance(source, xr.DataArray):
        return channel == "pmt"
    return CHANNEL_VARS[channel][0] in source.data_vars


def _channel_arrays(source, selected) -> dict[str, tuple[xr.DataArray, xr.DataArray | None]]:
    """Per channel the selected features read: (waveform with time last, valid mask)."""
    wanted = list(dict.fromkeys(f.channel for f in selected))
    out = {}
    if isinstance(source, xr.DataArray):
        if wanted != ["pmt"] and wanted:
            raise RatagError(f"features of channel(s) {wanted} need a node Dataset with "
                             "every channel's waveform, not one waveform")
        if TIME not in source.dims:
            raise RatagError(f"the waveform has dims {source.dims}, none of them {TIME!r}")
        return {"pmt": (source.transpose(..., TIME), source.coords.get("valid"))}
    for channel in wanted:
        name, dim, valid_name = CHANNEL_VARS[channel]
        if name not in source:
            raise RatagError(f"features {[f.name for f in selected if f.channel == channel]} "
                             f"read the {channel} channel, but the node has no {name!r}")
        wf = source[name].transpose(..., dim)
        valid = source.coords.get("valid")
        if valid_name != "valid" and valid_name in source.coords:
            valid = source.coords[valid_name] if valid is None else valid & source.coords[
                valid_name]
        out[channel] = (wf, valid)
    return out


def frame_records(source: xr.DataArray | xr.Dataset, args: Mapping,
                  features: str | Iterable[str] | None = None) -> FrameRecords:
    """Per-frame records of the selected features (see :func:`compute_features` for the
    arguments): lazy when the waveforms are Dask-backed (one task per chunk, fused with
    the reads of every channel it needs), computed now when they are numpy.

    ``source`` is one PMT waveform, or a store node (a Dataset) whose channels the
    features read: ``waveform`` (pmt) and ``alpha_waveform`` (alpha, with its own time
    axis, scaling and ``alpha_valid`` mask), chunked alike along ``frame``.
    """
    selected = select(features)
    if features is None or (isinstance(features, str) and features in PASSES):
        # "every feature (of a pass)": those of the channels the source has; a feature
        # asked for by name must find its channel
        selected = [f for f in selected if _has_channel(source, f.channel)]
    arrays = _channel_arrays(source, selected)
    first = next(iter(arrays.values()))[0]
    frame_dims = first.dims[:-1]
    channels, per_channel, recorded, attrs = [], [], {}, {}
    for channel, (wf, valid) in arrays.items():
        _check_time_chunks(wf)
        if wf.dims[:-1] != frame_dims:
            raise RatagError(f"the {channel} waveform has frame dims {wf.dims[:-1]}, "
                             f"not {frame_dims}")
        scale, offset = frame_scaling(wf, frame_dims)
        to_mv = mv_per_unit(wf)
        if to_mv != 1.0:  # e.g. the alpha channel, stored in V
            scale, offset = scale * to_mv, offset * to_mv
        per_frame = np.ndim(scale) > 0  # each file its own scale: travels with each chunk
        t0, dt = time_axis(wf[wf.dims[-1]])
        feats = [f for f in selected if f.channel == channel]
        values = []
        for feature in feats:
            vals = [_param_value(v, name, feature, frame_dims) for name, v in
                    zip(feature.arg_names, _inputs(feature, args), strict=True)]
            recorded.update({name: _record(v) for name, v in zip(feature.arg_names, vals,
                                                                 strict=True)})
            values.append(vals)
        channels.append(ChannelKernels(
            kernels=tuple(KernelRef.wrap(f.kernel, f.frames) for f in feats),
            outputs=tuple(f.output_names for f in feats),
            fill=tuple(o.fill_value for f in feats for o in f.outputs),
            scale=None if per_frame else scale, offset=None if per_frame else offset,
            t0=t0, dt=dt))
        valid = None if valid is None else _frame_shaped(valid.astype(bool), frame_dims)
        per_channel.append((valid, values, (scale, offset) if per_frame else None))
        prefix = "" if channel == "pmt" else f"{channel}_"
        if per_frame:  # the scales are in the frames' coordinates
            times = "" if to_mv == 1.0 else f" x {to_mv:g}"  # in mV, as the kernels got it
            attrs |= {f"{prefix}scale_factor": f"per frame: {wf.attrs['scale_coord']}{times}",
                      f"{prefix}add_offset": f"per frame: {wf.attrs['offset_coord']}{times}"}
        else:
            attrs |= {f"{prefix}scale_factor": scale, f"{prefix}add_offset": offset}
        attrs |= {f"{prefix}t0": t0, f"{prefix}dt": dt}
    outputs = [o for f in selected for o in f.outputs]
    record = np.dtype([(o.name, o.dtype) for o in outputs])
    order = [f for ch in arrays for f in selected if f.channel == ch]
    data = [wf.data for wf, _ in arrays.values()]
    if all(isinstance(d, da.Array) for d in data):
        per_chunk = {}
        starts = [np.cumsum((0, *c)) for c in data[0].chunks[:-1]]
        for idx in np.ndindex(*data[0].numblocks[:-1]):
            slices = [slice(s[i], s[i + 1]) for s, i in zip(starts, idx, strict=True)]
            per_chunk[idx] = (
                [_block(v, slices) for v, _, _ in per_channel],
                [[[_block(x, slices) for x in vals] for vals in values]
                 for _, values, _ in per_channel],
                [None if sc is None else (_block(sc[0], slices), _block(sc[1], slices))
                 for _, _, sc in per_channel])
        frame_ind = "abcdefgh"[: len(frame_dims)]
        pairs = []
        for k, d in enumerate(data):
            pairs += [d, frame_ind + "tuvw"[k]]
        dep = _PerChunk(data[0].chunks[:-1], per_chunk)
        name = "frame-features-" + tokenize([d.name for d in data], [f.name for f in order],
                                            channels, per_channel)
        records = da.blockwise(run_kernels, frame_ind, *pairs, dep, frame_ind,
                               concatenate=True, align_arrays=False, dtype=record, name=name,
                               meta=np.empty((0,) * len(frame_dims), record),
                               channels=tuple(channels), record=record)
    else:
        records = run_kernels(*(np.asarray(d) for d in data),
                              tuple(map(list, zip(*per_channel, strict=True))),
                              channels=tuple(channels), record=record)
    times = {wf.dims[-1] for wf, _ in arrays.values()}
    coord_source = source if isinstance(source, xr.Dataset) else first
    coords = {k: v.variable for k, v in coord_source.coords.items()
              if not times & set(v.dims) and set(v.dims) <= set(frame_dims)}
    attrs = {"features": [f.name for f in order], **attrs, **recorded}
    return FrameRecords(records, frame_dims, coords, order, attrs)


def compute_features(waveform: xr.DataArray | xr.Dataset, args: Mapping,
                     features: str | Iterable[str] | None = None) -> xr.Dataset:
    """Per-frame features of a (set, frame, time) waveform array (or of the channels of a
    store node, see :func:`frame_records`), lazily.

    ``waveform``: raw codes (or decoded floats) with a uniform ``time`` coordinate in µs
    that is a single chunk; attrs ``scale_factor`` (mV/code, polarity sign included) and
    ``add_offset`` (mV), or ``scale_coord``/``offset_coord`` naming (set, frame) coordinates
    with each frame's own (see :func:`frame_scaling`).  ``args``: each feature's kernel
    inputs by name, as :func:`ratag_xr.features.arguments` gives them (feature name ->
    input name -> scalar or DataArray, e.g. per ``set``); a flat mapping input name ->
    value also works.
    ``features``: None (all registered), a pass name ("pass1", "pass2") — of both, those
    whose channel the source has —, a feature name or a list of names.  Returns a Dataset
    with the waveform's non-time dims and coords, one variable per feature output
    (``units``, ``long_name``); outputs of frames whose ``valid`` coordinate is False are
    NaN (integer outputs: their declared fill).  A channel stored in V (``units``
    attribute) reaches the kernels in mV, as every kernel takes it.
    """
    return frame_records(waveform, args, features).to_dataset()
