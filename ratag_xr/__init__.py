"""ratag_xr: the RaTag / RITA gas-xenon detector analysis on xarray, Dask and Zarr."""

from ratag_xr.errors import (
    AnalysisError,
    ConfigError,
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

# The public API, imported on first use so that `import ratag_xr` (and the CLI's --help)
# stays light: name -> module that defines it.
_API = {
    "read_wfm": "ratag_xr.io.wfm",
    "discover_run": "ratag_xr.store",
    "ingest": "ratag_xr.store",
    "open_run": "ratag_xr.store",
    "open_set": "ratag_xr.store",
    "open_analysis": "ratag_xr.pipeline",
    "prepare_run": "ratag_xr.pipeline",
    "run_ion_integration": "ratag_xr.pipeline",
    "run_xray_classification": "ratag_xr.pipeline",
    "run_calibration_analysis": "ratag_xr.pipeline",
    "run_isotope_analysis": "ratag_xr.pipeline",
    "run_pipeline": "ratag_xr.runner",
    "load_results": "ratag_xr.pipeline",
    "simulate_run": "ratag_xr.simulate",
    "load_config": "ratag_xr.config",
}


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'ratag_xr' has no attribute {name!r}")

__all__ = [*_API,
    "AnalysisError",
    "ConfigError",
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
