"""Result figures (ALGORITHMS.md §10): functions take labeled result datasets and return
:class:`matplotlib.figure.Figure` objects; saving is :mod:`ratag_xr.export`'s job."""

from ratag_xr.plots._common import wf_id
from ratag_xr.plots.alpha import (
    plot_alpha_calibration,
    plot_alpha_spectrum,
    plot_alpha_spectrum_set,
    plot_s2_vs_drift_isotopes,
)
from ratag_xr.plots.per_run import (
    plot_diffusion,
    plot_recombination,
    plot_s2_vs_drift,
    plot_xray_histogram,
)
from ratag_xr.plots.per_set import plot_s2_histogram, plot_waveform_validation

__all__ = [
    "plot_alpha_calibration",
    "plot_alpha_spectrum",
    "plot_alpha_spectrum_set",
    "plot_diffusion",
    "plot_recombination",
    "plot_s2_histogram",
    "plot_s2_vs_drift",
    "plot_s2_vs_drift_isotopes",
    "plot_waveform_validation",
    "plot_xray_histogram",
    "wf_id",
]
