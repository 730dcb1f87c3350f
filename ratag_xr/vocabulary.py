"""The words of the results: X-ray outcomes and the results schema, each defined once.

:class:`XrayOutcome` gives every per-frame X-ray outcome its code (stored in
``frames.xray_code``), the flag meaning written into the variable's attributes, the reason
written into ``xray_results.json`` and the name of its per-set count.

:data:`SCHEMA` names every per-set and per-run result variable: which part of a stage's
results holds it (``sets`` or ``run``), its units and long name.  Stages take units and
long names from here (:func:`describe`), exports take units from the stored attributes
that came from here, and the tests build their fixtures from it.  Per-frame variables are
declared by the features (:mod:`ratag_xr.features`) and the store's frame identity.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class XrayOutcome(enum.IntEnum):
    """Outcome of the X-ray classification of one frame (ALGORITHMS.md §7, §15)."""

    NOT_CLASSIFIABLE = -1
    ACCEPTED = 0
    EXCESSIVE_S2 = 1
    NO_SIGNAL = 2
    INSUFFICIENT_SEPARATION = 3
    EXCESSIVE_S1 = 4  # §15, off by default (xray.max_area_s1)
    BELOW_MIN_AREA = 5  # §15, off by default (xray.min_xray_area)

    @property
    def meaning(self) -> str:
        """Flag meaning (one word, CF convention) in ``xray_code``'s attributes."""
        return _OUTCOMES[self][0]

    @property
    def reason(self) -> str:
        """What ``xray_results.json`` says of such a frame."""
        return _OUTCOMES[self][1]

    @property
    def count_name(self) -> str:
        """The per-set variable counting such frames."""
        return _OUTCOMES[self][2]

    @classmethod
    def flag_attrs(cls) -> dict:
        """``flag_values`` / ``flag_meanings`` attributes of ``xray_code``."""
        import numpy as np

        return {"flag_values": np.array([int(o) for o in cls], dtype=np.int8),
                "flag_meanings": " ".join(o.meaning for o in cls)}


#: outcome -> (flag meaning, JSON reason, count variable)
_OUTCOMES = {
    XrayOutcome.NOT_CLASSIFIABLE: ("not_classifiable", "not classifiable",
                                   "n_xray_not_classifiable"),
    XrayOutcome.ACCEPTED: ("accepted", "accepted", "n_xray_accepted"),
    XrayOutcome.EXCESSIVE_S2: ("excessive_s2_signal_above_baseline",
                               "excessive S2 signal above baseline", "n_xray_excessive_s2"),
    XrayOutcome.NO_SIGNAL: ("no_signal_above_baseline", "no signal above baseline",
                            "n_xray_no_signal"),
    XrayOutcome.INSUFFICIENT_SEPARATION: ("insufficient_separation", "insufficient separation",
                                          "n_xray_insufficient_separation"),
    XrayOutcome.EXCESSIVE_S1: ("excessive_s1_signal_above_baseline",
                               "excessive S1 signal above baseline", "n_xray_excessive_s1"),
    XrayOutcome.BELOW_MIN_AREA: ("area_below_minimum", "area below minimum",
                                 "n_xray_below_min_area"),
}


@dataclass(frozen=True)
class Var:
    """One result variable: the part that holds it, its units and long name."""

    part: str  # "sets" or "run"
    units: str
    long_name: str


def _vars(part: str, table: dict) -> dict[str, Var]:
    return {name: Var(part, units, long_name) for name, (units, long_name) in table.items()}


_CI = "95% confidence half-width"

SCHEMA: dict[str, Var] = {
    # prepare: fields and transport (§1), S1 (§3), S2 window statistics (§4)
    **_vars("sets", {
        "gate": ("V", "gate voltage"),
        "anode": ("V", "anode voltage"),
        "drift_field": ("V/cm", "drift field"),
        "EL_field": ("V/cm", "electroluminescence field"),
        "gas_density": ("cm^-3", "gas number density"),
        "red_drift_field": ("Td", "reduced drift field"),
        "red_EL_field": ("Td", "reduced electroluminescence field"),
        "speed_drift": ("mm/µs", "electron drift speed"),
        "time_drift": ("µs", "electron drift time across the drift gap"),
        "t_s1": ("µs", "S1 time"),
        "t_s1_std": ("µs", "S1 time spread"),
        "s1_success": ("1", "S1 time found"),
        "s1_reason": ("1", "why the S1 time was not found"),
        "t_s2_start_mean": ("µs", "S2 start, set centre"),
        "t_s2_start_std": ("µs", "S2 start, set spread"),
        "t_s2_end_mean": ("µs", "S2 end, set centre"),
        "t_s2_end_std": ("µs", "S2 end, set spread"),
        "s2_duration_mean": ("µs", "S2 duration, set centre"),
        "s2_duration_std": ("µs", "S2 duration, set spread"),
        "n_s2_frames": ("1", "frames with an S2 crossing"),
        "n_s2_durations": ("1", "S2 durations inside the duration cuts"),
        "s2_window_success": ("1", "S2 start and end statistics succeeded"),
        "s2_window_reason": ("1", "why an S2 statistic failed"),
        # integrate (§5, §6)
        "s2_window_start": ("µs", "start of the integrated S2 window"),
        "s2_window_end": ("µs", "end of the integrated S2 window"),
        "s2_window_estimated": ("1", "window from the S2 statistics (false: fallback window)"),
        "s2_area_mean": ("mV·µs", "fitted mean ion S2 area (Crystal Ball: its peak x0)"),
        "s2_area_sigma": ("mV·µs", "fitted sigma of the ion S2 area"),
        "s2_area_sigma_err": ("mV·µs", "uncertainty of s2_area_sigma (1 sigma)"),
        "s2_area_ci95": ("mV·µs", f"{_CI} of the mean (1.96 standard errors)"),
        "s2_area_amplitude": ("1", "fitted frames under the peak (Gaussian: all of it; "
                                   "Crystal Ball: in the fitted range)"),
        "s2_area_chi2_ndf": ("1", "likelihood chi2 per degree of freedom of the fit"),
        "s2_area_n_entries": ("1", "frames in the fitted bins"),
        "s2_fit_success": ("1", "the ion S2 area fit succeeded"),
        "s2_fit_reason": ("1", "why the fit failed"),
        "s2_fit_model": ("1", "ion S2 area fit model (gauss or crystal_ball)"),
        # the Crystal Ball fit (§15), NaN for the Gaussian
        "s2_area_beta": ("1", "Crystal Ball tail start beta (sigmas above x0)"),
        "s2_area_beta_err": ("1", "Crystal Ball beta uncertainty (1 sigma)"),
        "s2_area_m": ("1", "Crystal Ball tail power m"),
        "s2_area_m_err": ("1", "Crystal Ball m uncertainty (1 sigma)"),
        "s2_area_cb_amplitude": ("1/(mV·µs)", "Crystal Ball height at x0, frames per mV·µs"),
        "s2_fit_low": ("mV·µs", "low edge of the bins the Crystal Ball was fitted in"),
        "s2_fit_high": ("mV·µs", "high edge of the bins the Crystal Ball was fitted in"),
        "s2_two_stage": ("1", "a background Gaussian was fitted first (two-stage)"),
        "s2_bg_fraction": ("1", "fraction of the entries at or below bg_threshold"),
        "s2_bg_mean": ("mV·µs", "two-stage: fitted mean of the zero-area population"),
        "s2_bg_sigma": ("mV·µs", "two-stage: fitted sigma of the zero-area population"),
        "s2_bg_amplitude": ("1", "two-stage: fitted frames of the zero-area population"),
        "s2_bg_success": ("1", "two-stage: the background Gaussian fit succeeded"),
        "s2_bg_reason": ("1", "two-stage: why the background fit failed"),
        "n_frames": ("1", "valid frames"),
        "n_area_nan": ("1", "valid frames that could not be integrated (area NaN)"),
        "s2_area_hist": ("1", "frames per bin of the ion S2 area"),
        "s2_area_hist_edges": ("mV·µs", "bin edges of the ion S2 area histogram"),
        # classify (§7)
        "n_xray_events": ("1", "X-ray outcomes: events"),
        "n_xray_rejected": ("1", "X-ray outcomes: rejected"),
        **{o.count_name: ("1", f"X-ray outcomes: {o.reason}") for o in XrayOutcome},
        # calibrate (§8, §9), per set
        "N_e_meas": ("electrons", "measured ionisation electrons (A_ion / g_S2)"),
        "N_e_meas_err": ("electrons", f"N_e_meas {_CI} (ion and X-ray fits)"),
        "N_e_meas_err_ion": ("electrons", f"N_e_meas {_CI} (ion fit only)"),
        "r": ("1", "recombination fraction"),
        "r_err": ("1", f"r {_CI} (ion and X-ray fits)"),
        "r_err_ion": ("1", f"r {_CI} (ion fit only)"),
        "norm_A_ion": ("1", "ion S2 area over X-ray S2 area"),
        "norm_A_ion_err": ("1", f"norm_A_ion {_CI} (ion and X-ray fits)"),
        "norm_A_ion_err_ion": ("1", f"norm_A_ion {_CI} (ion fit only)"),
        "sigma2_obs": ("µs²", "variance of the S2 duration (longitudinal diffusion)"),
        "sigma2_obs_err": ("µs²", "uncertainty of sigma2_obs (1 sigma)"),
    }),
    # calibrate, per run
    **_vars("run", {
        "A_x_mean": ("mV·µs", "fitted mean X-ray S2 area"),
        "A_x_sigma": ("mV·µs", "fitted sigma of the X-ray S2 area"),
        "A_x_ci95": ("mV·µs", f"{_CI} of the X-ray mean"),
        "xray_amplitude": ("1", "fitted number of X-rays under the Gaussian"),
        "xray_fit_success": ("1", "the X-ray fit succeeded"),
        "xray_fit_reason": ("1", "why the X-ray fit failed"),
        "xray_chi2_ndf": ("1", "likelihood chi2 per degree of freedom of the X-ray fit"),
        "xray_n_entries": ("1", "X-rays in the fitted bins"),
        "N_e_exp": ("electrons", "electrons expected from the reference energy (E / W)"),
        "g_S2": ("mV·µs/electron", "S2 gain"),
        "g_S2_err": ("mV·µs/electron", f"S2 gain, {_CI}"),
        "D_L": ("mm²/µs", "longitudinal diffusion coefficient"),
        "D_L_err": ("mm²/µs", "longitudinal diffusion coefficient uncertainty (1 sigma)"),
        "sigma0_sq": ("µs²", "S2 duration variance at zero drift"),
        "sigma0_sq_err": ("µs²", "uncertainty of sigma0_sq (1 sigma)"),
        "diffusion_chi2_ndf": ("1", "chi2 per degree of freedom of the diffusion fit"),
        "diffusion_success": ("1", "the diffusion fit succeeded"),
        "diffusion_reason": ("1", "why the diffusion fit failed"),
        "xray_hist": ("1", "X-rays per bin, all sets"),
        "xray_hist_edges": ("mV·µs", "bin edges of the combined X-ray histogram"),
    }),
}


def describe(ds, names=None):
    """Set ``units`` and ``long_name`` of the variables of ``ds`` (all, or ``names``) from
    :data:`SCHEMA`; returns ``ds``.  A variable missing from the schema is an error: a
    stage may only provide what the schema declares."""
    from ratag_xr.errors import RatagError

    for name in names if names is not None else list(ds.variables):
        if name in ds.dims and name not in SCHEMA:
            continue  # a dimension coordinate (set, bin, ...): a label, not a result
        var = SCHEMA.get(name)
        if var is None:
            raise RatagError(f"result variable {name!r} is not in the results schema "
                             "(ratag_xr.vocabulary.SCHEMA)")
        ds[name].attrs.update(units=var.units, long_name=var.long_name)
    return ds
