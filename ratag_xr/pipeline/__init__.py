"""The analysis stages of a run, from raw files to every output.

    ingest -> prepare -> integrate -> classify -> calibrate -> export -> plots

Each stage is a function of a :class:`Run` (or a run directory / YAML config) that
stores its labeled results in ``OUT/results.zarr`` and reuses them while their lineage
(raw file manifest, configuration, package versions, upstream stages) is unchanged.
"""

from ratag_xr.pipeline.calibrate import run_calibration_analysis
from ratag_xr.pipeline.context import Run, open_analysis
from ratag_xr.pipeline.integrate import run_ion_integration
from ratag_xr.pipeline.prepare import prepare_run
from ratag_xr.pipeline.results import Results, load_results
from ratag_xr.pipeline.runner import STAGES, run_pipeline
from ratag_xr.pipeline.xray import run_xray_classification

__all__ = ["STAGES", "Results", "Run", "load_results", "open_analysis", "prepare_run",
           "run_calibration_analysis", "run_ion_integration", "run_pipeline",
           "run_xray_classification"]
