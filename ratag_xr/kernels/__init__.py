"""Per-frame numba kernels (numpy and numba only; no xarray, no I/O).

Each kernel is a ``guvectorize`` gufunc over one frame of raw codes (core dimension
``time``), with its outputs last and filled in place, and a ``frames_*`` caller of it
that runs a block of frames with the interpreter lock released (``Feature.frames``).
``ratag_xr.features`` declares them; ``ratag_xr.driver`` maps them over a lazy (set,
frame, time) waveform array.

Modules: ``pass1`` and ``pass2`` (the PMT kernels), ``alpha`` (the alpha-energy kernel),
``conditioning`` (pedestal, windows, moving-average scans and sums), ``numeric``
(input-type dependent arithmetic, checks).

The kernels are compiled into a cache folder named after a hash of every source file
here (:mod:`ratag_xr.kernels._cache`), so editing any of them recompiles every kernel.
Every module of this package is imported here, inside that cache: importing one
directly still compiles it into the right folder.
"""

import importlib
import pkgutil

from ratag_xr.kernels._cache import kernel_cache

with kernel_cache():
    for _info in pkgutil.iter_modules(__path__):
        if not _info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{_info.name}")
    from ratag_xr.kernels.alpha import frame_alpha_energy
    from ratag_xr.kernels.pass1 import (
        XRAY_ACCEPTED,
        XRAY_BELOW_MIN_AREA,
        XRAY_EXCESSIVE_S1,
        XRAY_EXCESSIVE_S2,
        XRAY_INSUFFICIENT_SEPARATION,
        XRAY_NO_SIGNAL,
        XRAY_NOT_CLASSIFIABLE,
        frame_pass1,
    )
    from ratag_xr.kernels.pass2 import frame_pass2

__all__ = [
    "XRAY_ACCEPTED",
    "XRAY_BELOW_MIN_AREA",
    "XRAY_EXCESSIVE_S1",
    "XRAY_EXCESSIVE_S2",
    "XRAY_INSUFFICIENT_SEPARATION",
    "XRAY_NOT_CLASSIFIABLE",
    "XRAY_NO_SIGNAL",
    "frame_alpha_energy",
    "frame_pass1",
    "frame_pass2",
]
