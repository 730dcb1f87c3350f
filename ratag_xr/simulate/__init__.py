"""Simulated runs of the gas-xenon detector: FastFrame WFM files with a known ground truth.

``simulate_run(out_dir, config=None, **overrides)`` writes ``out_dir/<run_name>/`` in the
raw-data layout of ALGORITHMS.md, plus ``truth.json`` and ``truth_frames.npz``
(:mod:`ratag_xr.simulate.truth`).  The physics model is described in
:mod:`ratag_xr.simulate.physics`, the defaults and their units in
:mod:`ratag_xr.simulate.config`.
"""

from ratag_xr.simulate.alpha import ISOTOPES, AlphaEvents
from ratag_xr.simulate.config import SimConfig
from ratag_xr.simulate.events import KINDS, FileEvents
from ratag_xr.simulate.physics import SetModel, set_model, set_name
from ratag_xr.simulate.run import (
    FileSimulation,
    simulate_alpha_frames,
    simulate_file_frames,
    simulate_run,
    simulate_set_frames,
)

__all__ = [
    "ISOTOPES",
    "KINDS",
    "AlphaEvents",
    "FileEvents",
    "FileSimulation",
    "SetModel",
    "SimConfig",
    "set_model",
    "set_name",
    "simulate_alpha_frames",
    "simulate_file_frames",
    "simulate_run",
    "simulate_set_frames",
]
