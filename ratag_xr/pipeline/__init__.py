"""The analysis of a run, from raw files to every output, as Python functions.

    ingest -> prepare -> frames -> integrate -> classify -> calibrate -> alpha -> isotopes
           -> export -> plots

The stages are declared in :mod:`ratag_xr.stages` and run by :mod:`ratag_xr.runner`; each
stores its labeled results in ``OUT/results.zarr`` and is reused while its lineage (raw
file manifest, the config values it reads, package and feature versions, upstream
stages) is unchanged.
"""

from ratag_xr.pipeline.api import (
    prepare_run,
    run_calibration_analysis,
    run_ion_integration,
    run_isotope_analysis,
    run_xray_classification,
)
from ratag_xr.pipeline.context import Run, open_analysis
from ratag_xr.pipeline.results import Results, load_results


def __getattr__(name):
    if name in ("run_pipeline", "PIPELINE"):
        from ratag_xr import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'ratag_xr.pipeline' has no attribute {name!r}")


__all__ = ["PIPELINE", "Results", "Run", "load_results", "open_analysis", "prepare_run",
           "run_calibration_analysis", "run_ion_integration", "run_isotope_analysis",
           "run_pipeline", "run_xray_classification"]
