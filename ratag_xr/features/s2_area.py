"""Pass 2 over a PMT frame: the ion S2 area in the set's window (ALGORITHMS.md §5).

The window is a per-set reduction of pass 1 (the S2 window statistics), hence a second
pass.
"""

from ratag_xr.features import Feature, Output, SetInput, register
from ratag_xr.features.common import MA_WINDOW, N_PEDESTAL
from ratag_xr.kernels.pass2 import frame_pass2, frames_pass2
from ratag_xr.params import Param, nonneg

FEATURE = register(Feature(
    name="s2_area",
    kernel=frame_pass2,
    frames=frames_pass2,
    inputs=(
        N_PEDESTAL,
        MA_WINDOW,
        Param("integrate.bs_threshold", 0.8, float, "mV",
              "clip threshold of the ion S2 integral", checks=(nonneg,)),
        SetInput("s2_window_start", "µs", "start of the set's integration window"),
        SetInput("s2_window_end", "µs", "end of the set's integration window"),
    ),
    outputs=(Output("s2_area", "mV·µs", "ion S2 area in [s2_window_start, s2_window_end]"),),
    pass_="pass2",
    version=2,
    doc="ALGORITHMS.md §5 ion S2 area",
))
