"""ratag_xr: the RaTag / RITA gas-xenon detector analysis on xarray, Dask and Zarr."""

from ratag_xr.errors import (
    AnalysisError,
    ConfigError,
    FitError,
    IngestOrderError,
    NotAnalogWaveformError,
    RatagError,
    RunLayoutError,
    StoreError,
    WfmError,
    WfmFormatError,
    WfmTruncatedError,
    WfmUnsupportedError,
)

__version__ = "0.1.0"

__all__ = [
    "AnalysisError",
    "ConfigError",
    "FitError",
    "IngestOrderError",
    "NotAnalogWaveformError",
    "RatagError",
    "RunLayoutError",
    "StoreError",
    "WfmError",
    "WfmFormatError",
    "WfmTruncatedError",
    "WfmUnsupportedError",
    "__version__",
]
