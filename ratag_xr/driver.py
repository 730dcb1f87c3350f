"""Map the registered per-frame kernels over a lazy (set, frame, time) waveform array.

:func:`compute_features` wraps each :class:`~ratag_xr.features.FrameFeature` kernel with
``xarray.apply_ufunc(..., dask="parallelized")``: the kernel runs once per frame chunk,
``time`` is its core dimension, and per-set parameters broadcast along ``set``.  The
result is lazy; computing all its variables together reads every waveform chunk once.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping

import numpy as np
import xarray as xr

from ratag_xr.errors import AnalysisError, RatagError
from ratag_xr.features import FrameFeature, select

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


def _param_value(params, name: str, feature: FrameFeature, frame_dims):
    """A parameter as float64 (a scalar or a DataArray over some non-time dims)."""
    if name in params:
        value = params[name]
    elif name in feature.defaults:
        value = feature.defaults[name]
    else:
        raise AnalysisError(f"feature {feature.name!r} needs parameter {name!r}, which is "
                            f"neither given nor defaulted (given: {sorted(params)})")
    if isinstance(value, xr.DataArray):
        extra = set(value.dims) - set(frame_dims)
        if extra:
            raise AnalysisError(f"parameter {name!r} of feature {feature.name!r} has dims "
                                f"{value.dims}; allowed are {tuple(frame_dims)}")
        # other coords of a per-set table (gate, ...) would be merged into the output
        return value.reset_coords(drop=True).astype(np.float64)
    try:
        return np.float64(value)
    except (TypeError, ValueError):
        raise AnalysisError(f"parameter {name!r} of feature {feature.name!r} must be a "
                            f"number or a DataArray, got {value!r}") from None


def _record(value):
    """A parameter as a plain attribute value: a float, or a list over ``set``."""
    if isinstance(value, xr.DataArray):
        return value.values.tolist()
    return float(value)


def compute_features(waveform: xr.DataArray, params: Mapping | xr.Dataset,
                     features: str | Iterable[str] | None = None) -> xr.Dataset:
    """Per-frame features of a (set, frame, time) waveform array, lazily.

    ``waveform``: raw codes (or decoded floats) with a uniform ``time`` coordinate in µs
    that is a single chunk; attrs ``scale_factor`` (mV/code, polarity sign included) and
    ``add_offset`` (mV).  ``params``: parameter name -> scalar or DataArray (e.g. per
    ``set``), a dict or a Dataset; missing names take the features' defaults.
    ``features``: None (all registered), a pass name ("pass1", "pass2"), a feature name or
    a list of names.  Returns a Dataset with the waveform's non-time dims and coords, one
    variable per feature output (``units``, ``long_name``); outputs of frames whose
    ``valid`` coordinate is False are NaN (integer outputs: their declared fill).
    """
    if TIME not in waveform.dims:
        raise RatagError(f"the waveform has dims {waveform.dims}, none of them {TIME!r}")
    _check_time_chunks(waveform)
    selected = select(features)
    scale, offset = code_scaling(waveform)
    t0, dt = time_axis(waveform[TIME])
    frame_dims = [d for d in waveform.dims if d != TIME]
    data = waveform.drop_vars(TIME)
    data.attrs = {}
    valid = waveform.coords.get("valid")

    variables, recorded = {}, {}
    for feature in selected:
        values = [_param_value(params, name, feature, frame_dims) for name in feature.params]
        recorded.update({name: _record(v) for name, v in zip(feature.params, values,
                                                             strict=True)})
        results = xr.apply_ufunc(
            KernelRef.wrap(feature.kernel), data, scale, offset, t0, dt, *values,
            input_core_dims=[[TIME]] + [[]] * (4 + len(values)),
            output_core_dims=[[]] * len(feature.outputs),
            dask="parallelized",
            output_dtypes=[o.dtype for o in feature.outputs],
        )
        if len(feature.outputs) == 1:
            results = (results,)
        for output, result in zip(feature.outputs, results, strict=True):
            if valid is not None:
                result = result.where(valid, output.fill_value).astype(output.dtype)
            result.attrs = {"units": output.units, "long_name": output.long_name,
                            **output.attrs}
            variables[output.name] = result

    ds = xr.Dataset(variables)
    ds.attrs = {"features": [f.name for f in selected], "t0": t0, "dt": dt,
                "scale_factor": scale, "add_offset": offset, **recorded}
    return ds
