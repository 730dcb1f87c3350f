"""Per-frame features: each is one kernel plus one :class:`Feature` declaration.

A declaration says everything anything else needs to know about a feature: its kernel,
its inputs in the kernel's order (run-config parameters, :class:`~ratag_xr.params.Param`,
and per-set values of an earlier stage, :class:`SetInput`), its outputs with units, long
name, dtype and fill, the pass it runs in, the channel it reads and a version.  From the
declarations come the driver's arguments (:func:`arguments`), the run config's keys and
their validation (registering a feature declares its parameters), the per-frame exports
(every output is a column of ``frames.parquet``), the README's config table and the
lineage of the stages that run the feature (:func:`lineage`).

The built-in features are the modules of this package (one module each); they are
imported, and so registered, with it.  A feature of your own is one module that calls
:func:`register` (see notebook 3); importing it makes it part of every stage that runs
its pass.

Kernel contract: ``kernel(raw, scale, offset, t0, dt, *inputs, *outputs)`` with core
signature ``(n),(),(),(),()[,()...]->()[,()...]``: ``raw`` one frame of codes along
``time``, ``scale`` mV per code (sign included), ``offset`` mV, ``t0`` and ``dt`` µs
(sample ``i`` is at ``t0 + i*dt``), then the declared inputs in order, and one scalar
output per declared output, filled in place.

A gufunc called on a block of a few dozen frames holds the interpreter lock (numpy
releases it only for outer loops of more than ~500 iterations), so the threads of one
worker would run their kernels one at a time.  ``frames``, if declared, is the kernel over
a block with the lock released: ``@njit(nogil=True, cache=True) def frames_x(*args):
frame_x(*args)``, called with ``raw`` (frames, time), every other input as a float64
array of one value per frame and the outputs as arrays (frames,); the same compiled
kernel, so the same numbers (``tests/test_kernels.py``).
"""

from __future__ import annotations

import hashlib
import importlib
import pkgutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ratag_xr.errors import AnalysisError, RatagError
from ratag_xr.params import Param, declare, undeclare

PASSES = ("pass1", "pass2")
CHANNELS = ("pmt", "alpha")
#: Inputs every kernel takes before its declared ones.
KERNEL_INPUTS = ("raw", "scale", "offset", "t0", "dt")


@dataclass(frozen=True)
class Output:
    """One per-frame output; ``fill`` is its value on padding frames (None: NaN)."""

    name: str
    units: str
    long_name: str
    dtype: Any = np.float64
    attrs: Mapping[str, Any] = field(default_factory=dict)
    fill: Any = None

    def __post_init__(self):
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))
        if self.fill is None and self.dtype.kind != "f":
            raise RatagError(f"output {self.name!r} of dtype {self.dtype} needs a fill value "
                             "for padding frames (NaN exists only for floats)")

    @property
    def fill_value(self):
        return np.nan if self.fill is None else self.dtype.type(self.fill)


@dataclass(frozen=True)
class SetInput:
    """A per-set input of a kernel, taken from an earlier stage's per-set results
    (e.g. ``t_s1`` of ``prepare``); its value is part of that stage's lineage."""

    name: str
    units: str
    doc: str = ""

    @property
    def arg(self) -> str:
        return self.name


@dataclass(frozen=True)
class Feature:
    """Declaration of a per-frame feature (see the module doc).

    ``pass_``: "pass1" needs only the waveforms and per-set inputs known before the pass
    (S1 time, drift time); "pass2" needs per-set reductions of pass 1 (the S2 window).
    ``version``: raise it when the kernel's definition changes; it is in the lineage.
    """

    name: str
    kernel: Any  # a numba guvectorized gufunc
    inputs: tuple[Param | SetInput, ...]
    outputs: tuple[Output, ...]
    pass_: str
    version: int = 1
    channel: str = "pmt"
    doc: str = ""
    #: optional: the kernel over a block of frames with the GIL released (see the module
    #: doc); without it the driver calls the gufunc itself
    frames: Any = None

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        if self.pass_ not in PASSES:
            raise RatagError(f"feature {self.name!r}: pass {self.pass_!r} is not one of "
                             f"{PASSES}")
        if self.channel not in CHANNELS:
            raise RatagError(f"feature {self.name!r}: channel {self.channel!r} is not one of "
                             f"{CHANNELS}")
        args = [i.arg for i in self.inputs]
        if len(set(args)) != len(args):
            raise RatagError(f"feature {self.name!r}: inputs {args} repeat a name")
        n_in = len(KERNEL_INPUTS) + len(self.inputs)
        nin, nout = getattr(self.kernel, "nin", None), getattr(self.kernel, "nout", None)
        if (nin, nout) != (n_in, len(self.outputs)):
            raise RatagError(
                f"feature {self.name!r}: declared {n_in} inputs "
                f"({', '.join(KERNEL_INPUTS + tuple(args))}) and {len(self.outputs)} "
                f"outputs, but the kernel takes {nin} inputs and gives {nout} outputs")

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    @property
    def params(self) -> tuple[Param, ...]:
        """The run-config parameters among the inputs."""
        return tuple(i for i in self.inputs if isinstance(i, Param))

    @property
    def set_inputs(self) -> tuple[SetInput, ...]:
        return tuple(i for i in self.inputs if isinstance(i, SetInput))

    @property
    def arg_names(self) -> tuple[str, ...]:
        return tuple(i.arg for i in self.inputs)


FEATURES: dict[str, Feature] = {}


def register(feature: Feature, *, replace: bool = False) -> Feature:
    """Add ``feature`` to :data:`FEATURES` and declare its parameters; its name and its
    output names must be new (``replace=True`` replaces a feature of the same name)."""
    if feature.name in FEATURES and not replace:
        raise RatagError(f"a feature named {feature.name!r} is already registered")
    taken = {o: f.name for f in FEATURES.values() if f.name != feature.name
             for o in f.output_names}
    clashes = {o: taken[o] for o in feature.output_names if o in taken}
    if clashes:
        raise RatagError(f"feature {feature.name!r}: outputs already provided by other "
                         f"features: {clashes}")
    old = FEATURES.get(feature.name)
    declare(*feature.params, owner=f"feature {feature.name}", replace=replace)
    FEATURES[feature.name] = feature
    if old is not None:
        _drop_unused(old.params)
    return feature


def unregister(name: str) -> Feature:
    """Remove and return a registered feature (and its parameters no one else uses)."""
    try:
        feature = FEATURES.pop(name)
    except KeyError:
        raise RatagError(f"no feature named {name!r}; registered: {sorted(FEATURES)}") from None
    _drop_unused(feature.params)
    return feature


def _drop_unused(params: Iterable[Param]) -> None:
    from ratag_xr.stages import STAGES

    used = {p.key for f in FEATURES.values() for p in f.params}
    used |= {p.key for s in STAGES.values() for p in s.params}
    for p in params:
        if p.key not in used:
            undeclare(p.key)


def select(features: str | Iterable[str] | None = None, *, channel: str | None = None
           ) -> list[Feature]:
    """Registered features: None = all, a pass name, one name or a list of names;
    ``channel`` keeps those reading that channel."""
    if features is None:
        chosen = list(FEATURES.values())
    elif isinstance(features, str) and features in PASSES:
        chosen = [f for f in FEATURES.values() if f.pass_ == features]
    else:
        names = [features] if isinstance(features, str) else list(features)
        missing = [n for n in names if n not in FEATURES]
        if missing:
            raise RatagError(f"unknown feature(s) {missing}; registered: {sorted(FEATURES)}")
        chosen = [FEATURES[n] for n in names]
    return [f for f in chosen if channel is None or f.channel == channel]


def arguments(features: Iterable[Feature], config, per_set=None) -> dict[str, dict]:
    """The kernel inputs of ``features``: feature name -> input name -> value, parameters
    from the run ``config`` (as :meth:`~ratag_xr.params.Param.kernel_value` gives them),
    per-set inputs from the ``per_set`` dataset (DataArrays along ``set``)."""
    out = {}
    for feature in features:
        args = {}
        for item in feature.inputs:
            if isinstance(item, Param):
                args[item.arg] = item.kernel_value(config.get(item.key))
            elif per_set is None or item.name not in per_set:
                raise AnalysisError(f"feature {feature.name!r} needs the per-set input "
                                    f"{item.name!r} ({item.units}), which no earlier "
                                    "stage provided")
            else:
                args[item.arg] = per_set[item.name]
        out[feature.name] = args
    return out


def _source_hash(kernel) -> str:
    """Hash of the source the kernel was compiled from: every file of ratag_xr.kernels for
    a built-in kernel (helpers included), else the kernel's own module file."""
    module = sys.modules.get(getattr(kernel, "__module__", "") or "")
    if module is not None and module.__name__.startswith("ratag_xr.kernels"):
        from ratag_xr.kernels._cache import source_hash

        return source_hash()
    path = getattr(module, "__file__", None)
    if path and Path(path).is_file():
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    return "unknown"


def lineage(features: Iterable[Feature], config) -> dict:
    """What the features' results depend on: version, kernel source, parameter values."""
    return {f.name: {"version": f.version, "source": _source_hash(f.kernel), "pass": f.pass_,
                     "params": {p.key: config.get(p.key) for p in f.params}}
            for f in features}


def _load_builtin() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_load_builtin()
