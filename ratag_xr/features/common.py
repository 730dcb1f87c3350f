"""Parameters shared by several features: the signal conditioning of ALGORITHMS.md §2.

Declared once here and used by each feature that conditions the frame the same way;
this module registers no feature of its own.
"""

from ratag_xr.params import Param, at_least, at_most, declare_data_check, odd

N_PEDESTAL = Param("prepare.n_pedestal", 2000, int, "samples",
                   "samples at the start of a frame averaged for the pedestal",
                   checks=(at_least(1),))
MA_WINDOW = Param("prepare.ma_window", 9, int, "samples",
                  "samples of the centred moving average", checks=(at_least(1), odd,
                                                                   at_most(32767)))


def _fits_the_record(config, facts) -> str | None:
    """The pedestal and the moving average must fit in every set's record."""
    for set_name, n in facts["n_samples"].items():
        for p in (N_PEDESTAL, MA_WINDOW):
            value = config.get(p.key)
            if value > n:
                return (f"{p.key} = {value} is longer than the record of set {set_name} "
                        f"({n} samples per frame)")
    return None


declare_data_check("record length", _fits_the_record)
