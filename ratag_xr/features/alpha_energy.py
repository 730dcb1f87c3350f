"""The alpha energy of a frame of the alpha (silicon PIN) channel (ALGORITHMS.md §12).

The kernel (:func:`ratag_xr.kernels.alpha.frame_alpha_energy`) reads the frame once:
baseline, cubic Savitzky–Golay smoothing exactly as ``scipy.signal.savgol_filter(v, w, 3)``
from running sums, maximum, divided by the SCA factor; no dither.  The polynomial order is
§12's 3 and not a parameter: the running-sum form is the cubic (equivalently quadratic)
filter's centre value.  The alpha channel is stored in V; the driver hands the kernel mV
(the feature contract), so the threshold is in mV (300 mV = the reference's 0.3 V).

A frame without its alpha twin (``alpha_valid`` False) and every frame of a node without
an alpha channel get NaN.
"""

from ratag_xr.features import Feature, Output, register
from ratag_xr.kernels.alpha import MAX_SAVGOL_WINDOW, frame_alpha_energy, frames_alpha_energy
from ratag_xr.params import Param, at_least, at_most, declare_data_check, odd, positive

SAVGOL_WINDOW = Param("alpha.savgol_window", 501, int, "samples",
                      "Savitzky–Golay window (polynomial order 3) of the alpha pulse",
                      checks=(at_least(5), odd, at_most(MAX_SAVGOL_WINDOW)))


def _window_fits_the_record(config, facts) -> str | None:
    """The window must fit in every alpha record (scipy refuses a longer one)."""
    window = config.get(SAVGOL_WINDOW.key)
    for set_name, n in facts.get("alpha_samples", {}).items():
        if window > n:
            return (f"{SAVGOL_WINDOW.key} = {window} is longer than the alpha record of set "
                    f"{set_name} ({n} samples per frame)")
    return None


declare_data_check("alpha record length", _window_fits_the_record)

FEATURE = register(Feature(
    name="alpha_energy",
    kernel=frame_alpha_energy,
    frames=frames_alpha_energy,
    inputs=(
        Param("alpha.alpha_threshold_bs", 300.0, float, "mV",
              "alpha baseline: mean of the samples below this (the median of the first 200 "
              "samples when fewer than 10 are)"),
        SAVGOL_WINDOW,
        Param("alpha.sca_factor", 1.058, float, "", "alpha_energy_sca = maximum of the "
              "smoothed pulse (V) / sca_factor", checks=(positive,)),
    ),
    outputs=(Output("alpha_energy_sca", "SCA MeV",
                    "alpha energy on the SCA scale: max of the smoothed pulse (V) / sca_factor "
                    "(NaN: no alpha record)"),),
    pass_="pass1",
    channel="alpha",
    doc="ALGORITHMS.md §12 alpha energy",
))
