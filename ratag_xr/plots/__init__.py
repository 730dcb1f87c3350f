"""Result figures (ALGORITHMS.md §10, §14, §15): functions take labeled result datasets and
return :class:`matplotlib.figure.Figure` objects; saving is the plots stage's job.

The figure modules (and matplotlib) are imported on first use of a function here, so a
command that draws nothing does not pay for them.
"""

from importlib import import_module

from ratag_xr.vocabulary import wf_id as wf_id  # (re-exported)

#: function -> module of this package that defines it
_WHERE = {
    "plot_alpha_calibration": "alpha", "plot_alpha_spectrum": "alpha",
    "plot_alpha_spectrum_set": "alpha", "plot_s2_vs_drift_isotopes": "alpha",
    "plot_diffusion": "per_run", "plot_recombination": "per_run",
    "plot_s2_vs_drift": "per_run", "plot_xray_histogram": "per_run",
    "plot_s2_histogram": "per_set", "plot_waveform_validation": "per_set",
}  # fmt: skip

__all__ = sorted([*_WHERE, "wf_id"])


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_WHERE])
