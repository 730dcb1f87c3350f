"""Pass 1 over a PMT frame: pedestal (§2), S2 window crossings (§4), X-ray outcome (§7).

One kernel (:func:`ratag_xr.kernels.pass1.frame_pass1`) computes all three, so a frame is
read once for them: the S2 search and the X-ray window share the pedestal and the smoothed
samples around the S2 start.  The §15 options (clean S2 timing, the excessive-S1 and
minimum-area X-ray checks) are parameters of the same kernel, off by default.
"""

import numpy as np

from ratag_xr.features import Feature, Output, SetInput, register
from ratag_xr.features.common import MA_WINDOW, N_PEDESTAL
from ratag_xr.kernels.pass1 import S2_TIMINGS, frame_pass1, frames_pass1
from ratag_xr.params import Param, choice_code, none_is_inf, nonneg, one_of, positive
from ratag_xr.vocabulary import XrayOutcome

MV, US = "mV", "µs"
S2_TIMING = Param("prepare.s2_timing", "reference", str, "",
                  "S2 start of each frame: reference (§4: the first crossing after "
                  "t_s1 + 0.75 time_drift) or clean (§15: the first crossing after the last "
                  "gap of more than s2_max_gap between crossings, so an X-ray before the "
                  "ion S2 is not its start)", checks=(one_of(*S2_TIMINGS),),
                  to_kernel=choice_code(*S2_TIMINGS))
S2_MAX_GAP = Param("prepare.s2_max_gap", 1.0, float, US,
                   "clean S2 timing: a longer gap between crossings ends what came before",
                   checks=(positive,))

FEATURE = register(Feature(
    name="s2_window_xray",
    kernel=frame_pass1,
    frames=frames_pass1,
    inputs=(
        N_PEDESTAL,
        MA_WINDOW,
        Param("prepare.threshold_s2", 0.4, float, MV,
              "S2 start/end: first/last smoothed sample above this", checks=(nonneg,)),
        Param("prepare.s2_clip", 0.02, float, MV,
              "smoothed values below this are set to 0 before the S2 search",
              checks=(nonneg,)),
        S2_TIMING,
        S2_MAX_GAP,
        SetInput("t_s1", US, "S1 time of the set"),
        SetInput("time_drift", US, "electron drift time of the set"),
        Param("xray.ts2_tol", -2.7, float, US,
              "the X-ray window ends at t_s1 + time_drift + ts2_tol"),
        Param("xray.bs_threshold", 0.8, float, MV, "clip threshold of the X-ray window",
              checks=(nonneg,)),
        Param("xray.max_area_s1", None, float | None, MV,
              "excessive-S1 limit (§15): sum of samples above bs_threshold before t_s1; "
              "null: no check (the group uses 1e5)", checks=(nonneg,), to_kernel=none_is_inf),
        Param("xray.max_area_s2", 1e5, float, MV,
              "excessive-S2 limit: sum of samples above bs_threshold after the window",
              checks=(nonneg,)),
        Param("xray.min_s2_sep", 1.0, float, US, "required separation from the S2 start",
              checks=(nonneg,)),
        Param("xray.min_s1_sep", 1.0, float, US, "required separation from S1",
              checks=(nonneg,)),
        Param("xray.min_xray_area", 0.0, float, "mV·µs",
              "an accepted X-ray area below this is rejected (§15; 0: no check)",
              checks=(nonneg,)),
    ),
    outputs=(
        Output("pedestal", MV, "pedestal (mean of the first n_pedestal samples)"),
        Output("s2_start", US, "first sample of the smoothed frame above threshold_s2 after "
               "t_s1 + 0.75 time_drift (clean timing: after the last gap of more than "
               "s2_max_gap)"),
        Output("s2_end", US, "last sample of the smoothed frame above threshold_s2"),
        Output("s2_duration", US, "S2 duration (s2_end - s2_start)"),
        Output("xray_code", "1", "X-ray classification outcome", dtype=np.int8,
               fill=int(XrayOutcome.NOT_CLASSIFIABLE), attrs=XrayOutcome.flag_attrs()),
        Output("xray_area", "mV·µs", "X-ray area in [t_s1, t_s1 + time_drift + ts2_tol] "
               "(NaN unless accepted)"),
    ),
    pass_="pass1",
    version=3,
    doc="ALGORITHMS.md §2 pedestal, §4 per-frame S2 window, §7 X-ray events, §15 options",
))
