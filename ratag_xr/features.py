"""The registry of per-frame features: what each kernel needs and what it provides.

A per-frame feature is one guvectorized kernel (``ratag_xr.kernels``) plus one
:class:`FrameFeature` declaration, registered here with :func:`register`.  The driver
(:func:`ratag_xr.driver.compute_features`) and everything downstream iterate
:data:`FEATURES`; nothing else lists the features.

Kernel contract: ``kernel(raw, scale, offset, t0, dt, *params, *outputs)`` with core
signature ``(n),(),(),(),()[,()...]->()[,()...]``: ``raw`` one frame of codes along
``time``, ``scale`` mV per code (sign included), ``offset`` mV, ``t0`` and ``dt`` µs (sample
``i`` is at ``t0 + i*dt``), then the scalar parameters in the declared order, and one
scalar output per declared output.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from ratag_xr.errors import RatagError
from ratag_xr.kernels import XRAY_CODE_MEANINGS, XRAY_NOT_CLASSIFIABLE, frame_pass1, frame_pass2

PASSES = ("pass1", "pass2")
# Inputs every kernel takes before its own parameters.
KERNEL_INPUTS = ("raw", "scale", "offset", "t0", "dt")


@dataclass(frozen=True)
class FeatureOutput:
    """One output variable of a feature; ``fill`` is its value on padding frames."""

    name: str
    units: str
    long_name: str
    dtype: Any = np.float64
    attrs: Mapping[str, Any] = field(default_factory=dict)
    fill: Any = None  # None: NaN (float outputs only)

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
class FrameFeature:
    """Declaration of a per-frame feature.

    ``params`` are looked up by name in the parameters given to the driver (run-config
    values or per-set DataArrays), falling back to ``defaults``.  ``pass_name`` says when
    it can run: "pass1" needs only the waveforms and per-set inputs known beforehand,
    "pass2" needs per-set reductions of pass 1 (e.g. the S2 window).
    """

    name: str
    kernel: Any  # a numba guvectorized gufunc
    params: tuple[str, ...]
    outputs: tuple[FeatureOutput, ...]
    pass_name: str
    defaults: Mapping[str, float] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self):
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        if self.pass_name not in PASSES:
            raise RatagError(f"feature {self.name!r}: pass {self.pass_name!r} is not one of "
                             f"{PASSES}")
        unknown = sorted(set(self.defaults) - set(self.params))
        if unknown:
            raise RatagError(f"feature {self.name!r}: defaults for undeclared parameters "
                             f"{unknown}")
        n_in = len(KERNEL_INPUTS) + len(self.params)
        nin, nout = getattr(self.kernel, "nin", None), getattr(self.kernel, "nout", None)
        if (nin, nout) != (n_in, len(self.outputs)):
            raise RatagError(
                f"feature {self.name!r}: declared {n_in} inputs "
                f"({', '.join(KERNEL_INPUTS + self.params)}) and {len(self.outputs)} outputs, "
                f"but the kernel takes {nin} inputs and gives {nout} outputs")

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)


FEATURES: dict[str, FrameFeature] = {}


def register(feature: FrameFeature, *, replace: bool = False) -> FrameFeature:
    """Add ``feature`` to :data:`FEATURES`; its name and output names must be new."""
    if feature.name in FEATURES and not replace:
        raise RatagError(f"a feature named {feature.name!r} is already registered")
    taken = {o: f.name for f in FEATURES.values() if f.name != feature.name
             for o in f.output_names}
    clashes = {o: taken[o] for o in feature.output_names if o in taken}
    if clashes:
        raise RatagError(f"feature {feature.name!r}: outputs already provided by other "
                         f"features: {clashes}")
    FEATURES[feature.name] = feature
    return feature


def unregister(name: str) -> FrameFeature:
    """Remove and return a registered feature."""
    try:
        return FEATURES.pop(name)
    except KeyError:
        raise RatagError(f"no feature named {name!r}; registered: {sorted(FEATURES)}") from None


def select(features: str | Iterable[str] | None = None) -> list[FrameFeature]:
    """Registered features by name: None = all, a pass name, one name or a list of names."""
    if features is None:
        return list(FEATURES.values())
    if isinstance(features, str):
        if features in PASSES:
            return [f for f in FEATURES.values() if f.pass_name == features]
        features = [features]
    missing = [name for name in features if name not in FEATURES]
    if missing:
        raise RatagError(f"unknown feature(s) {missing}; registered: {sorted(FEATURES)}")
    return [FEATURES[name] for name in features]


# ---------------------------------------------------------------- built-in features

MV = "mV"
US = "µs"

register(FrameFeature(
    name="s2_window_xray",
    kernel=frame_pass1,
    params=("n_pedestal", "ma_window", "threshold_s2", "s2_clip", "t_s1", "time_drift",
            "ts2_tol", "bs_threshold", "max_area_s2", "min_s2_sep", "min_s1_sep"),
    defaults={"n_pedestal": 2000, "ma_window": 9, "threshold_s2": 0.4, "s2_clip": 0.02,
              "ts2_tol": -2.7, "bs_threshold": 0.8, "max_area_s2": 1e5, "min_s2_sep": 1.0,
              "min_s1_sep": 1.0},
    outputs=(
        FeatureOutput("pedestal", MV, "pedestal (mean of the first n_pedestal samples)"),
        FeatureOutput("s2_start", US, "first sample of the smoothed frame above threshold_s2 "
                      "after t_s1 + 0.75 time_drift"),
        FeatureOutput("s2_end", US, "last sample of the smoothed frame above threshold_s2"),
        FeatureOutput("s2_duration", US, "S2 duration (s2_end - s2_start)"),
        FeatureOutput(
            "xray_code", "1", "X-ray classification outcome", dtype=np.int8,
            fill=XRAY_NOT_CLASSIFIABLE,
            attrs={"flag_values": np.array(sorted(XRAY_CODE_MEANINGS), dtype=np.int8),
                   "flag_meanings": " ".join(XRAY_CODE_MEANINGS[k]
                                             for k in sorted(XRAY_CODE_MEANINGS))}),
        FeatureOutput("xray_area", "mV·µs", "X-ray area in [t_s1, t_s1 + time_drift + "
                      "ts2_tol] (NaN unless accepted)"),
    ),
    pass_name="pass1",
    description="ALGORITHMS.md §2 pedestal, §4 per-frame S2 window, §7 X-ray events",
))

register(FrameFeature(
    name="s2_area",
    kernel=frame_pass2,
    params=("n_pedestal", "ma_window", "bs_threshold", "s2_window_start", "s2_window_end"),
    defaults={"n_pedestal": 2000, "ma_window": 9, "bs_threshold": 0.8},
    outputs=(FeatureOutput("s2_area", "mV·µs",
                           "ion S2 area in [s2_window_start, s2_window_end]"),),
    pass_name="pass2",
    description="ALGORITHMS.md §5 ion S2 area",
))
