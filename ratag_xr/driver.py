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
from ratag_xr.features import Feature, select

TIME = "time"
# A time coordinate within this fraction of a sample of t0 + i*dt counts as uniform.
_UNIFORM_RTOL = 1e-6


class KernelRef:
    """A kernel that travels to Dask workers by import path instead of by value.

    Unpickling a numba gufunc compiled with ``cache=True`` crashes the process (numba
    0.68), and a gufunc sent by value would be recompiled on every worker anyway; by
    reference, a worker imports the kernel's module once (loading numba's cache).
    """

    def __init__(self, kernel):
        self.kernel = kernel
        self.path = (getattr(kernel, "__module__", None), getattr(kernel, "__name__", None))

    @classmethod
    def wrap(cls, kernel):
        """A KernelRef if ``kernel`` is importable as module.name, else the kernel itself.

        A kernel defined in ``__main__`` (a notebook, a script) is "importable" here but not
        on a worker, whose ``__main__`` is another program: it travels by value.
        """
        module, name = getattr(kernel, "__module__", None), getattr(kernel, "__name__", None)
        if module in ("__main__", "__mp_main__"):
            return kernel
        try:
            found = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, TypeError, ValueError):
            return kernel
        return cls(kernel) if found is kernel else kernel

    def __reduce__(self):
        return _import_kernel, self.path

    def __call__(self, *args, **kwargs):
        return self.kernel(*args, **kwargs)


def _import_kernel(module: str, name: str) -> KernelRef:
    return KernelRef(getattr(importlib.import_module(module), name))


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
    chunks = waveform.chunks[waveform.get_axis_num(TIME)]
    if len(chunks) > 1:
        raise RatagError(
            f"the waveform's time axis is split into {len(chunks)} chunks {chunks[:4]}...; "
            "per-frame kernels need each frame in one chunk: chunk it {'time': -1} at "
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
    """Per-chunk inputs of the fused task: chunk index -> (valid, parameters)."""

    def __init__(self, chunks, values: dict):
        super().__init__(chunks)
        self.values = values

    def __getitem__(self, idx):
        # the time axis is contracted: its block index comes as a list of the one block
        return self.values[tuple(i[0] if isinstance(i, list) else i for i in idx)]


def run_kernels(raw: np.ndarray, inputs: tuple, *, kernels, outputs, scale: float,
                offset: float, t0: float, dt: float, record: np.dtype, fill: tuple) -> np.ndarray:
    """Every kernel on a block of frames (time last): one record per frame.

    ``inputs`` is ``(valid, params)`` or ``(valid, params, (scale, offset))``: the block's
    valid mask (None: all valid), per kernel its parameter values (scalars or arrays that
    broadcast against the frames), and the block's per-frame code scaling where frames
    have their own (it replaces the ``scale``/``offset`` options).  Frames that are not
    valid get each output's fill value.
    """
    valid, params = inputs[:2]
    if len(inputs) > 2:
        scale, offset = inputs[2]
    out = np.empty(raw.shape[:-1], dtype=record)
    for kernel, names, values in zip(kernels, outputs, params, strict=True):
        results = kernel(raw, scale, offset, t0, dt, *values)
        if len(names) == 1:
            results = (results,)
        for name, result in zip(names, results, strict=True):
            out[name] = result
    if valid is not None:
        out[~np.broadcast_to(valid, out.shape)] = fill
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


def frame_records(waveform: xr.DataArray, args: Mapping,
                  features: str | Iterable[str] | None = None) -> FrameRecords:
    """Per-frame records of the selected features over ``waveform`` (see
    :func:`compute_features` for the arguments): lazy when the waveform is Dask-backed
    (one task per chunk, fused with the chunk's read), computed now when it is numpy."""
    if TIME not in waveform.dims:
        raise RatagError(f"the waveform has dims {waveform.dims}, none of them {TIME!r}")
    waveform = waveform.transpose(..., TIME)
    _check_time_chunks(waveform)
    selected = select(features)
    frame_dims = waveform.dims[:-1]
    scale, offset = frame_scaling(waveform, frame_dims)
    per_frame = np.ndim(scale) > 0  # each file its own scale: travels with each chunk
    t0, dt = time_axis(waveform[TIME])

    values, recorded = [], {}
    for feature in selected:
        vals = [_param_value(v, name, feature, frame_dims)
                for name, v in zip(feature.arg_names, _inputs(feature, args), strict=True)]
        recorded.update({name: _record(v) for name, v in zip(feature.arg_names, vals,
                                                             strict=True)})
        values.append(vals)
    outputs = [o for f in selected for o in f.outputs]
    dtype = np.dtype([(o.name, o.dtype) for o in outputs])
    fill = tuple(o.fill_value for o in outputs)
    valid = waveform.coords.get("valid")
    valid = None if valid is None else _frame_shaped(valid.astype(bool), frame_dims)
    options = dict(kernels=tuple(KernelRef.wrap(f.kernel) for f in selected),
                   outputs=tuple(f.output_names for f in selected),
                   scale=None if per_frame else scale, offset=None if per_frame else offset,
                   t0=t0, dt=dt, record=dtype, fill=fill)

    data = waveform.data
    if isinstance(data, da.Array):
        per_chunk = {}
        starts = [np.cumsum((0, *c)) for c in data.chunks[:-1]]
        for idx in np.ndindex(*data.numblocks[:-1]):
            slices = [slice(s[i], s[i + 1]) for s, i in zip(starts, idx, strict=True)]
            per_chunk[(*idx, 0)] = (_block(valid, slices),
                                    [[_block(v, slices) for v in vals] for vals in values])
            if per_frame:
                per_chunk[(*idx, 0)] += ((_block(scale, slices), _block(offset, slices)),)
        name = "frame-features-" + tokenize(data.name, [f.name for f in selected], scale,
                                            offset, t0, dt, valid, values)
        records = da.map_blocks(run_kernels, data, _PerChunk(data.chunks, per_chunk),
                                drop_axis=data.ndim - 1, dtype=dtype, name=name,
                                meta=np.empty((0,) * (data.ndim - 1), dtype), **options)
    else:
        inputs = (valid, values) + (((scale, offset),) if per_frame else ())
        records = run_kernels(np.asarray(data), inputs, **options)

    coords = {k: v.variable for k, v in waveform.coords.items() if TIME not in v.dims}
    if per_frame:  # the scales are in the frames' coordinates
        scaling = {"scale_factor": f"per frame: {waveform.attrs['scale_coord']}",
                   "add_offset": f"per frame: {waveform.attrs['offset_coord']}"}
    else:
        scaling = {"scale_factor": scale, "add_offset": offset}
    attrs = {"features": [f.name for f in selected], "t0": t0, "dt": dt, **scaling,
             **recorded}
    return FrameRecords(records, frame_dims, coords, selected, attrs)


def compute_features(waveform: xr.DataArray, args: Mapping,
                     features: str | Iterable[str] | None = None) -> xr.Dataset:
    """Per-frame features of a (set, frame, time) waveform array, lazily.

    ``waveform``: raw codes (or decoded floats) with a uniform ``time`` coordinate in µs
    that is a single chunk; attrs ``scale_factor`` (mV/code, polarity sign included) and
    ``add_offset`` (mV), or ``scale_coord``/``offset_coord`` naming (set, frame) coordinates
    with each frame's own (see :func:`frame_scaling`).  ``args``: each feature's kernel
    inputs by name, as :func:`ratag_xr.features.arguments` gives them (feature name ->
    input name -> scalar or DataArray, e.g. per ``set``); a flat mapping input name ->
    value also works.
    ``features``: None (all registered), a pass name ("pass1", "pass2"), a feature name or
    a list of names.  Returns a Dataset with the waveform's non-time dims and coords, one
    variable per feature output (``units``, ``long_name``); outputs of frames whose
    ``valid`` coordinate is False are NaN (integer outputs: their declared fill).
    """
    return frame_records(waveform, args, features).to_dataset()
