"""Physics model of the simulated detector: what a set is expected to show.

Pure functions of a :class:`~ratag_xr.simulate.config.SimConfig`; the random draws of
individual frames live in :mod:`ratag_xr.simulate.events`.  Units: fields V/cm, reduced
fields Td, speeds mm/µs, times µs, areas mV·µs, energies eV.

Model, per set (gate V_g, anode V_a):

* Transport (ALGORITHMS.md §1, :func:`ratag_xr.physics.transport.set_transport`): drift
  field, EL field, drift speed v and drift time t_d across the drift gap.  The EL transit
  time is el_gap / v(E_EL/n), the same speed law extrapolated to the EL field.
* Light: each electron crossing the EL gap makes Y = (a·E/N − b)·N·el_gap photons (linear EL
  yield above threshold); a fraction ``photon_detection_efficiency`` become photoelectrons
  (PE).  An SPE pulse is Gaussian (height ``spe_amplitude_mv``, σ ``spe_sigma_ns``) times a
  Gamma-distributed gain of mean 1, so its mean area is a_SPE = h·σ·√(2π).  The electron gain
  is g_S2 = PE per electron × a_SPE (mV·µs per electron).
* X-ray (12.3 keV): N_e = E_x / W electrons (Fano-distributed), point-like at a uniform
  depth of the drift gap; its light lasts the EL transit, spread by the diffusion of its
  own drift.  Mean area N_e · g_S2.
* Ion recoil: N_ref (1 − r) surviving electrons (Poisson), with the recombination law
  r(E) = r0 / (1 + E / E0) of the drift field E: more charge survives at higher field.
  N_ref = E_x / W by default (ALGORITHMS.md §8 compares the recoil with the X-ray count).
* Ion S2 time structure: the light starts at t_s1 + t_d (plus a small frame jitter) and
  lasts D = D̄ + σ_t·z (z standard normal), PE times uniform inside.  D̄ is a model
  parameter (it includes the EL transit and the extent of the charge column);
  σ_t² = σ_0² + 2 D_L t_d / v² is the longitudinal-diffusion time spread.  The frame-to-frame
  spread of the duration *is* σ_t in this model: that is the premise of ALGORITHMS.md §9,
  adopted here on purpose so that the diffusion result has a known answer.  (A microscopic
  model with independently diffusing electrons would give a first-to-last spread of only
  ~0.6 σ_t, depending on the electron count.)
* S1: a Poisson number of photoelectrons (mean ``s1_mean_pe``, 0.3) at t_s1 with a Gaussian
  time spread: a clear peak in the mean of many frames, nothing in most single frames.
* Backgrounds: dark counts (single photoelectrons at random times), junk frames (pile-up of
  a second ion S2, a saturating pulse, no ion S2) at small configurable rates.
* Digitiser: DC baseline (jittered per frame) plus white Gaussian noise, minus the pulses
  (negative polarity), rounded half-up to integer codes and clipped to the code range.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ratag_xr.physics.transport import drift_speed, set_transport
from ratag_xr.simulate.config import SimConfig

SQRT_2PI = math.sqrt(2.0 * math.pi)


def set_name(v_gate: int, v_anode: int, padded: bool = False) -> str:
    """Folder name of a set: ``FieldScan_Gate<V>_Anode<V>`` (``padded``: four digits, as
    the newer DAQ writes them, ``FieldScan_Gate0200_Anode2100``)."""
    if padded:
        return f"FieldScan_Gate{int(v_gate):04d}_Anode{int(v_anode):04d}"
    return f"FieldScan_Gate{int(v_gate)}_Anode{int(v_anode)}"


def recombination(drift_field_v_cm: float, r0: float, e0_v_cm: float) -> float:
    """Recombined fraction r(E) = r0 / (1 + E / E0) of the ion's electrons (E in V/cm)."""
    return r0 / (1.0 + drift_field_v_cm / e0_v_cm)


def el_photons_per_electron(red_el_field_td, density_cm3, el_gap_cm, slope, offset) -> float:
    """EL photons per electron crossing the gap: (a·E/N − b)·1e-17·N·gap, zero below threshold."""
    per_atom_cm2 = max(slope * red_el_field_td - offset, 0.0) * 1e-17
    return per_atom_cm2 * density_cm3 * el_gap_cm


def spe_area_mv_us(amplitude_mv: float, sigma_ns: float) -> float:
    """Mean area of a Gaussian SPE pulse in mV·µs."""
    return amplitude_mv * sigma_ns * 1e-3 * SQRT_2PI


@dataclass(frozen=True)
class SetModel:
    """Expected (model) quantities of one set; times µs, areas mV·µs."""

    index: int
    name: str
    v_gate: float
    v_anode: float
    drift_field: float  # V/cm
    EL_field: float  # V/cm
    gas_density: float  # cm^-3
    red_drift_field: float  # Td
    red_EL_field: float  # Td
    speed_drift: float  # mm/µs
    time_drift: float  # µs
    el_transit_time: float  # µs
    recombination: float  # r, fraction of the ion's electrons lost
    n_ref: float  # electrons the ion would give without recombination
    ion_n_e_mean: float
    el_photons_per_electron: float
    pe_per_electron: float
    spe_area: float
    g_s2: float  # mV·µs per electron
    sigma_t: float  # std of the ion S2 duration
    t_s1: float
    t_s2_start: float  # mean ion S2 start: t_s1 + time_drift
    s2_duration_mean: float
    t_s2_end_mean: float
    ion_n_pe_mean: float
    ion_area_mean: float
    ion_area_std: float
    xray_n_e_mean: float
    xray_n_pe_mean: float
    xray_area_mean: float
    xray_area_std: float

    def to_dict(self) -> dict:
        return asdict(self)


def xray_electrons(config: SimConfig) -> float:
    """N_e_exp = E_x / W, the X-ray's mean electron count."""
    return config.xray_energy_ev / config.w_value_ev


def set_model(config: SimConfig, index: int) -> SetModel:
    """Expected quantities of set ``index`` of ``config``."""
    c = config
    v_gate, v_anode = (float(v) for v in c.sets[index])
    tr = {
        k: float(v)
        for k, v in set_transport(
            v_gate, v_anode, pressure_bar=c.pressure_bar, temperature_k=c.temperature_k,
            drift_gap_cm=c.drift_gap_cm, el_gap_cm=c.el_gap_cm,
        ).items()
    }
    el_transit = c.el_gap_cm * 10.0 / float(drift_speed(tr["red_EL_field"]))
    r = recombination(tr["drift_field"], c.recomb_r0, c.recomb_e0_v_cm)
    n_ref = (c.ion_energy_ev or c.xray_energy_ev) / c.w_value_ev
    photons = el_photons_per_electron(
        tr["red_EL_field"], tr["gas_density"], c.el_gap_cm, c.el_yield_slope, c.el_yield_offset
    )
    p = photons * c.photon_detection_efficiency
    a_spe = spe_area_mv_us(c.spe_amplitude_mv, c.spe_sigma_ns)
    rho2 = c.spe_gain_rel_sigma**2
    sigma_t = math.sqrt(
        c.sigma0_sq_us2 + 2.0 * c.diffusion_dl_mm2_us * tr["time_drift"] / tr["speed_drift"] ** 2
    )
    # Ion: n_e ~ Poisson(mu), n_pe | n_e ~ Poisson(p n_e)  ->  Var(n_pe) = mu p (1 + p).
    mu_ion = n_ref * (1.0 - r)
    npe_ion = mu_ion * p
    var_ion = a_spe**2 * (npe_ion * rho2 + mu_ion * p * (1.0 + p))
    # X-ray: n_e ~ Normal(N, F N) (rounded), n_pe | n_e ~ Poisson(p n_e).
    n_x = xray_electrons(c)
    npe_x = n_x * p
    var_x = a_spe**2 * (npe_x * rho2 + npe_x + p * p * c.fano_factor * n_x)
    t_start = c.s1_time_us + tr["time_drift"]
    return SetModel(
        index=index,
        name=set_name(v_gate, v_anode, padded=c.file_naming == "new"),
        v_gate=v_gate,
        v_anode=v_anode,
        drift_field=tr["drift_field"],
        EL_field=tr["EL_field"],
        gas_density=tr["gas_density"],
        red_drift_field=tr["red_drift_field"],
        red_EL_field=tr["red_EL_field"],
        speed_drift=tr["speed_drift"],
        time_drift=tr["time_drift"],
        el_transit_time=el_transit,
        recombination=r,
        n_ref=n_ref,
        ion_n_e_mean=mu_ion,
        el_photons_per_electron=photons,
        pe_per_electron=p,
        spe_area=a_spe,
        g_s2=p * a_spe,
        sigma_t=sigma_t,
        t_s1=c.s1_time_us,
        t_s2_start=t_start,
        s2_duration_mean=c.ion_s2_duration_us,
        t_s2_end_mean=t_start + c.ion_s2_duration_us,
        ion_n_pe_mean=npe_ion,
        ion_area_mean=npe_ion * a_spe,
        ion_area_std=math.sqrt(var_ion),
        xray_n_e_mean=n_x,
        xray_n_pe_mean=npe_x,
        xray_area_mean=npe_x * a_spe,
        xray_area_std=math.sqrt(var_x),
    )
