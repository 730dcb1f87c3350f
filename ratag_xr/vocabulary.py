"""The words of the results: X-ray outcomes and the results schema, each defined once.

:class:`XrayOutcome` gives every per-frame X-ray outcome its code (stored in
``frames.xray_code``), the flag meaning written into the variable's attributes, the reason
written into ``xray_results.json`` and the name of its per-set count.

:data:`SCHEMA` names every per-set and per-run result variable: which part of a stage's
results holds it (``sets`` or ``run``), its units and long name; and the per-frame labels a
stage derives from the features (part ``frames``: the calibrated alpha energy and the
isotope of §14), which :func:`~ratag_xr.pipeline.results.load_results` makes coordinates of
the frames.  Stages take units and
long names from here (:func:`describe`), exports take units from the stored attributes
that came from here, and the tests build their fixtures from it.  Per-frame variables are
declared by the features (:mod:`ratag_xr.features`) and the store's frame identity.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import PurePath


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

    part: str  # "sets", "run" or "frames" (per-frame labels a stage derives)
    units: str
    long_name: str


def _vars(part: str, table: dict) -> dict[str, Var]:
    return {name: Var(part, units, long_name) for name, (units, long_name) in table.items()}


_CI = "95% confidence half-width"
#: ``g_S2_source`` of a run whose recombination uses its own X-ray fit (§8)
GAIN_OWN = "this run's X-ray fit"
_SCA = "SCA MeV"  # the alpha energy scale of §12: max of the smoothed pulse (V) / 1.058

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
        "g_S2_own": ("mV·µs/electron", "S2 gain from this run's X-ray fit (A_x / N_e_exp), "
                     "whichever gain the recombination uses"),
        "g_S2_own_err": ("mV·µs/electron", f"g_S2_own, {_CI}"),
        "g_S2_source": ("1", "where the g_S2 used comes from: this run's X-ray fit, another "
                        "run's output folder or a configured value"),
        "g_S2_source_lineage": ("1", "lineage hash of the source run's calibrate result "
                                "(empty: none)"),
        "D_L": ("mm²/µs", "longitudinal diffusion coefficient"),
        "D_L_err": ("mm²/µs", "longitudinal diffusion coefficient uncertainty (1 sigma)"),
        "sigma0_sq": ("µs²", "S2 duration variance at zero drift"),
        "sigma0_sq_err": ("µs²", "uncertainty of sigma0_sq (1 sigma)"),
        "diffusion_chi2_ndf": ("1", "chi2 per degree of freedom of the diffusion fit"),
        "diffusion_success": ("1", "the diffusion fit succeeded"),
        "diffusion_reason": ("1", "why the diffusion fit failed"),
        "xray_hist": ("1", "X-rays per bin, all sets"),
        "xray_hist_edges": ("mV·µs", "bin edges of the combined X-ray histogram"),
        # alpha (§13): the run's spectrum, per peak (dim isotope), the calibration
        "alpha_spectrum": ("1", "frames per bin of alpha_energy_sca, all frames of the run"),
        "alpha_spectrum_edges": (_SCA, "bin edges of the alpha spectrum"),
        "alpha_monitor_spectrum": ("1", "frames per bin of alpha_energy_sca, per alpha "
                                   "monitor set"),
        "alpha_monitor_n_frames": ("1", "frames with an alpha energy, per alpha monitor set"),
        "alpha_n_frames": ("1", "frames of the PMT sets with an alpha energy"),
        "alpha_peak_start": (_SCA, "start value of the peak position x0"),
        "alpha_peak_window_lo": (_SCA, "low end of the peak's fit window"),
        "alpha_peak_window_hi": (_SCA, "high end of the peak's fit window"),
        "alpha_peak_ref_energy": ("MeV", "reference energy of the alpha line"),
        "alpha_peak_x0": (_SCA, "fitted peak position (Crystal Ball x0)"),
        "alpha_peak_x0_err": (_SCA, "uncertainty of x0 (1 sigma)"),
        "alpha_peak_sigma": (_SCA, "fitted Crystal Ball sigma"),
        "alpha_peak_beta": ("1", "fitted Crystal Ball tail start beta (left tail)"),
        "alpha_peak_m": ("1", "fitted Crystal Ball tail power m"),
        "alpha_peak_amplitude": (f"1/({_SCA})", "fitted peak height (frames per SCA MeV)"),
        "alpha_peak_continuum_a": (f"1/({_SCA})", "beta continuum at its origin (frames per "
                                   "SCA MeV; NaN: no continuum)"),
        "alpha_peak_continuum_lambda": (f"1/({_SCA})", "beta continuum slope"),
        "alpha_peak_continuum_origin": (_SCA, "beta continuum origin (the window's low end)"),
        "alpha_peak_n_entries": ("1", "frames in the fitted bins"),
        "alpha_peak_chi2_ndf": ("1", "likelihood chi2 per degree of freedom of the peak fit"),
        "alpha_peak_success": ("1", "the peak fit succeeded"),
        "alpha_peak_reason": ("1", "why the peak fit failed"),
        "alpha_peak_energy": ("MeV", "calibrated energy of the fitted peak, E(x0)"),
        "alpha_peak_residual_linear": ("MeV", "reference - linear calibration at x0"),
        "alpha_peak_residual_quadratic": ("MeV", "reference - quadratic calibration at x0"),
        "alpha_cal_coef": (f"MeV/({_SCA})^power", "calibration E = sum_k c_k x^k (x in SCA "
                           "MeV), order 1 and order 2"),
        "alpha_cal_order_used": ("1", "calibration order used"),
        "alpha_cal_success": ("1", "the alpha calibration succeeded"),
        "alpha_cal_reason": ("1", "why the alpha calibration failed"),
        "alpha_range_lo": ("MeV", "low end of the isotope's energy range"),
        "alpha_range_hi": ("MeV", "high end of the isotope's energy range"),
        "alpha_range_centre": ("MeV", "calibrated peak centre E(x0) of the range"),
        "alpha_range_sigma": ("MeV", "calibrated peak width |E'(x0)| sigma"),
        "alpha_overlap_boundary": ("MeV", "energy where the calibrated Th228 and Ra224 "
                                   "shapes are equal (NaN: the ranges do not overlap)"),
        # isotopes (§14), per run and isotope
        "E_recoil": ("keV", "recoil energy of the daughter, Q·4/A"),
        "iso_N_exp": ("electrons", "electrons expected from the recoil energy (E_R / W)"),
        "alpha_energy_hist_edges": ("MeV", "bin edges of the per-set calibrated alpha "
                                    "spectra"),
        "iso_sca_lo": (_SCA, "low end of the isotope's configured SCA range "
                       "(alpha.isotope_ranges; NaN: tagged by its calibrated range)"),
        "iso_sca_hi": (_SCA, "high end of the isotope's configured SCA range "
                       "(alpha.isotope_ranges; NaN: tagged by its calibrated range)"),
        "isotope_tagging": ("1", "how frames were tagged: sca (alpha.isotope_ranges on "
                            "alpha_energy_sca) or calibrated (the §13 ranges on "
                            "alpha_energy_mev)"),
    }),
    # isotopes (§14), per set and isotope
    **_vars("sets", {
        "iso_N_e_meas": ("electrons", "measured ionisation electrons (A_ion / g_S2), per "
                         "isotope"),
        "iso_N_e_meas_err": ("electrons", f"iso_N_e_meas {_CI} (ion and X-ray fits)"),
        "iso_N_e_meas_err_ion": ("electrons", f"iso_N_e_meas {_CI} (ion fit only)"),
        "iso_r": ("1", "recombination fraction against the recoil energy, per isotope"),
        "iso_r_err": ("1", f"iso_r {_CI} (ion and X-ray fits)"),
        "iso_r_err_ion": ("1", f"iso_r {_CI} (ion fit only)"),
        "n_untagged": ("1", "valid frames in no isotope range (kept, not dropped)"),
        "n_no_alpha": ("1", "valid frames without an alpha energy (no alpha twin, NaN)"),
        "alpha_energy_hist": ("1", "frames per bin of the calibrated alpha energy"),
        "alpha_sca_hist": ("1", "frames per bin of alpha_energy_sca (the run spectrum's "
                           "bins)"),
    }),
    # isotopes (§14), per frame: labels (coordinates of load_results(out).frames)
    **_vars("frames", {
        "alpha_energy_mev": ("MeV", "calibrated alpha energy E(alpha_energy_sca)"),
        "isotope": ("1", "isotope whose energy range holds the frame's alpha energy "
                    "(untagged: none)"),
    }),
}

#: the per-set fit of §6 once more, per set and isotope (§14): ``iso_<name>``
ISOTOPE_FIT = ("s2_area_mean", "s2_area_sigma", "s2_area_ci95", "s2_area_amplitude",
               "s2_area_chi2_ndf", "s2_area_n_entries", "s2_fit_success", "s2_fit_reason",
               "n_frames", "n_area_nan")
SCHEMA.update({f"iso_{name}": Var("sets", SCHEMA[name].units,
                                  f"{SCHEMA[name].long_name}, per isotope")
               for name in ISOTOPE_FIT})


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


def wf_id(file, frame_in_file) -> str:
    """Name of a frame in plots and exports: raw file stem + ``_ff`` + frame in file.

    ``wf_id("RUN8_..._0000.wfm", 12) == "RUN8_..._0000_ff12"``.
    """
    return f"{PurePath(str(file)).stem}_ff{int(frame_in_file)}"
