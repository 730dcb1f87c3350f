"""The analysis of a run, from raw files to every output, as Python functions.

    ingest -> prepare -> frames -> integrate -> classify -> calibrate -> alpha -> isotopes
           -> export -> plots

The stages are declared in :mod:`ratag_xr.stages` and run by :mod:`ratag_xr.runner`; each
stores its labeled results in ``OUT/results.zarr`` and is reused while its lineage (raw
file manifest, the config values it reads, package and feature versions, upstream
stages) is unchanged.
"""

from importlib import import_module

#: name -> module that defines it; imported on first use, so that importing one module of
#: this package (``ratag_xr.pipeline.results`` in a figure helper) does not import the
#: stages and their kernels.
_WHERE = {
    "prepare_run": "ratag_xr.pipeline.api",
    "run_calibration_analysis": "ratag_xr.pipeline.api",
    "run_ion_integration": "ratag_xr.pipeline.api",
    "run_isotope_analysis": "ratag_xr.pipeline.api",
    "run_xray_classification": "ratag_xr.pipeline.api",
    "Run": "ratag_xr.pipeline.context", "open_analysis": "ratag_xr.pipeline.context",
    "Results": "ratag_xr.pipeline.results", "load_results": "ratag_xr.pipeline.results",
    "run_pipeline": "ratag_xr.runner", "PIPELINE": "ratag_xr.runner",
}


def __getattr__(name):
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'ratag_xr.pipeline' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_WHERE])


__all__ = ["PIPELINE", "Results", "Run", "load_results", "open_analysis", "prepare_run",
           "run_calibration_analysis", "run_ion_integration", "run_isotope_analysis",
           "run_pipeline", "run_xray_classification"]
