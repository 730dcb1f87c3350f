"""The alpha channel of a simulated two-channel run (ALGORITHMS.md §11–§13).

A silicon detector sees the alpha of each decay of the Th-228 chain; a shaping amplifier
turns its charge into a positive pulse, recorded by a second scope channel in volts, its
record shorter than the PMT's.  Model, per frame (one trigger):

* Isotope: Th228, Ra224, Rn220, Po216, Po212 in secular equilibrium: equal activities,
  Po212 0.64 of the others (it follows only the 64 % beta branch of Bi212); with
  ``alpha_isotopes`` only those (a single-isotope run, e.g. an SCA-triggered Ra-224 run).
* Deposited energy: the isotope's reference energy (§13) with a Gaussian resolution
  (``alpha_resolution_mev``), and for a fraction ``alpha_tail_fraction`` of the frames a
  loss drawn from an exponential of mean ``alpha_tail_mev`` (the low-energy tail of
  alphas that lose energy in the source or the detector's dead layer).
* SCA reading: a smooth quadratic ``sca = c0 + c1 E + c2 E²`` (least squares through the
  §13 table's peak positions; its coefficients are in ``truth.json``) is what the §12
  estimator ``savgol_filter(v - baseline, 501, 3).max() / 1.058`` returns for the
  noise-free pulse, its baseline included (the mean of the samples below 0.3 V takes in
  the pulse's decayed tail): the pulse height is solved for that
  (:func:`heights_for_readings`); it is about ``sca × 1.058 / k``, k the Savitzky–Golay
  maximum of the unit pulse at this sampling rate (``volts_per_sca`` in the truth), plus
  ~1 %.
* Pulse: CR–RC shape ``exp(−t/τ_decay) − exp(−t/τ_rise)`` (rise tens of ns, decay ~1 µs),
  normalised to height 1, starting at ``alpha_time_us``; a DC baseline (jittered per
  frame) and white noise; rounded to codes and clipped like the PMT channel.
* A fraction ``alpha_missing_fraction`` of the frames has no alpha (baseline only):
  isotope -1, NaN energy.

The alpha channel has its own random stream per file (the third child of the file's seed
sequence), so a run's PMT frames are the same with or without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ratag_xr.simulate.config import LEVELS_PER_DIV, SimConfig

ISOTOPES = ("Th228", "Ra224", "Rn220", "Po216", "Po212")
#: §13 reference energies (MeV) and peak positions (SCA units)
REFERENCE_MEV = (5.42315, 5.68537, 6.40484, 6.90628, 8.785)
SCA_PEAKS = (4.5, 4.8, 5.4, 5.9, 7.5)
#: secular equilibrium of the Th-228 chain: Po212 only after Bi212's 64 % beta branch
RELATIVE_ACTIVITY = (1.0, 1.0, 1.0, 1.0, 0.64)
SCA_FACTOR = 1.058  # §12
SAVGOL_WINDOW, SAVGOL_ORDER = 501, 3  # §12
BASELINE_THRESHOLD_V, MIN_BELOW = 0.3, 10  # §12: the baseline is the mean below 0.3 V


def sca_coefficients() -> tuple[float, float, float]:
    """(c0, c1, c2) of ``sca = c0 + c1 E + c2 E²`` (E in MeV): the least-squares quadratic
    through the §13 table's (reference energy, peak) pairs."""
    c2, c1, c0 = np.polyfit(REFERENCE_MEV, SCA_PEAKS, 2)
    return float(c0), float(c1), float(c2)


def sca_of_energy(energy_mev):
    c0, c1, c2 = sca_coefficients()
    e = np.asarray(energy_mev, dtype=np.float64)
    return c0 + c1 * e + c2 * e * e


def isotope_fractions(config: SimConfig | None = None) -> np.ndarray:
    """Probability of each of :data:`ISOTOPES` per frame (``config.alpha_isotopes``: only
    those, in their equilibrium proportions)."""
    w = np.asarray(RELATIVE_ACTIVITY, dtype=np.float64)
    if config is not None and config.alpha_isotopes is not None:
        w = np.where(np.isin(ISOTOPES, config.alpha_isotopes), w, 0.0)
    return w / w.sum()


def unit_pulse(t_us: np.ndarray, rise_ns: float, decay_us: float) -> np.ndarray:
    """CR–RC pulse of height 1 starting at t = 0 (t in µs)."""
    tau_r, tau_d = rise_ns * 1e-3, decay_us
    t_peak = tau_r * tau_d / (tau_d - tau_r) * np.log(tau_d / tau_r)
    norm = np.exp(-t_peak / tau_d) - np.exp(-t_peak / tau_r)
    t = np.clip(np.asarray(t_us, dtype=np.float64), 0.0, None)
    return np.where(t_us > 0, (np.exp(-t / tau_d) - np.exp(-t / tau_r)) / norm, 0.0)


@lru_cache(maxsize=16)
def savgol_gain(dt_us: float, rise_ns: float, decay_us: float) -> float:
    """k: the §12 Savitzky–Golay maximum of the noise-free unit pulse sampled at dt."""
    from scipy.signal import savgol_filter

    t = np.arange(-SAVGOL_WINDOW, 8 * SAVGOL_WINDOW + int(10 * decay_us / dt_us)) * dt_us
    return float(savgol_filter(unit_pulse(t, rise_ns, decay_us), SAVGOL_WINDOW,
                               SAVGOL_ORDER).max())


@lru_cache(maxsize=16)
def _sorted_record_pulse(dt_us: float, start_us: float, n: int, onset_us: float,
                         rise_ns: float, decay_us: float) -> tuple[np.ndarray, np.ndarray]:
    """The unit pulse on the record's samples, sorted, and its cumulative sums."""
    p = np.sort(unit_pulse(start_us + np.arange(n) * dt_us - onset_us, rise_ns, decay_us))
    return p, np.cumsum(p)


def heights_for_readings(config: SimConfig, sca: np.ndarray, baseline_v: np.ndarray
                         ) -> np.ndarray:
    """Pulse heights (V) whose noise-free frames the §12 estimator reads as ``sca``.

    On a DC baseline ``b`` a pulse ``h·p`` reads ``(b + h·k − B) / 1.058`` with k the
    Savitzky–Golay maximum of the unit pulse and B §12's baseline: the mean of the samples
    below 0.3 V, which takes in the pulse's own tail once it has decayed below 0.3 V, so
    ``B = b + h·c(h)``, c the mean of ``p`` over the samples with ``p < (0.3 − b)/h``
    (with fewer than 10 such samples, the median of the first 200, before the pulse:
    c = 0).  ``h·(k − c(h))`` grows with h; a fixed-point iteration from h = 1.058·sca/k
    converges in a few steps (c changes slowly with h).
    """
    c = config
    k = savgol_gain(c.x_spacing_us, c.alpha_rise_ns, c.alpha_decay_us)
    p, cum = _sorted_record_pulse(c.x_spacing_us, c.alpha_record_start_us, alpha_n_samples(c),
                                  c.alpha_time_us, c.alpha_rise_ns, c.alpha_decay_us)
    target = np.asarray(sca, dtype=np.float64) * SCA_FACTOR
    height = target / k
    for _ in range(30):
        with np.errstate(divide="ignore", invalid="ignore"):
            limit = np.where(height > 0, (BASELINE_THRESHOLD_V - baseline_v) / height, np.inf)
        below = np.searchsorted(p, limit, side="left")  # samples with p < limit
        mean = cum[np.maximum(below, 1) - 1] / np.maximum(below, 1)
        tail = np.where(below >= MIN_BELOW, mean, 0.0)
        new = target / (k - tail)
        if np.allclose(new, height, rtol=1e-12, atol=0.0):
            return new
        height = new
    return height


@dataclass
class AlphaEvents:
    """Per-frame truth of the alpha channel of one file (arrays of length n_frames)."""

    isotope: np.ndarray  # int8 index into ISOTOPES, -1: no alpha in the frame
    energy_mev: np.ndarray  # deposited energy (NaN: none)
    sca: np.ndarray  # §12 SCA reading of the noise-free pulse (NaN: none)
    height_v: np.ndarray  # pulse height, V (0: none)
    onset_us: np.ndarray  # pulse start relative to the trigger
    baseline_v: np.ndarray

    def per_frame(self) -> dict[str, np.ndarray]:
        """Truth arrays under their ``truth_frames.npz`` names."""
        return {"alpha_isotope": self.isotope, "alpha_energy_mev": self.energy_mev,
                "alpha_sca": self.sca, "alpha_height_v": self.height_v}


def alpha_y_scale_v(config: SimConfig) -> float:
    """Volts per code of the alpha channel."""
    return config.alpha_volts_per_div / LEVELS_PER_DIV[config.dtype]


def alpha_n_samples(config: SimConfig) -> int:
    return int(round((config.alpha_record_end_us - config.alpha_record_start_us)
                     / config.x_spacing_us))


def draw_alpha_events(rng: np.random.Generator, config: SimConfig, n: int) -> AlphaEvents:
    """The alpha of each of ``n`` frames (the draw order is part of the seed)."""
    c = config
    has = rng.random(n) >= c.alpha_missing_fraction
    isotope = rng.choice(len(ISOTOPES), size=n, p=isotope_fractions(c)).astype(np.int8)
    energy = np.asarray(REFERENCE_MEV)[isotope] + c.alpha_resolution_mev * rng.standard_normal(n)
    tail = rng.random(n) < c.alpha_tail_fraction
    energy = energy - np.where(tail, rng.exponential(c.alpha_tail_mev, n), 0.0)
    energy = np.maximum(energy, 0.0)
    sca = sca_of_energy(energy)
    onset = c.alpha_time_us + 0.005 * rng.standard_normal(n)
    baseline = c.alpha_baseline_v + c.alpha_baseline_jitter_v * rng.standard_normal(n)
    height = heights_for_readings(c, np.maximum(sca, 0.0), baseline)
    return AlphaEvents(isotope=np.where(has, isotope, -1).astype(np.int8),
                       energy_mev=np.where(has, energy, np.nan),
                       sca=np.where(has, sca, np.nan), height_v=np.where(has, height, 0.0),
                       onset_us=onset, baseline_v=baseline)


def render_alpha_block(rng: np.random.Generator, config: SimConfig, ev: AlphaEvents,
                       start: int, stop: int) -> np.ndarray:
    """Codes of frames [start, stop) of the alpha channel, (k, n_samples)."""
    c = config
    n = alpha_n_samples(c)
    t = c.alpha_record_start_us + np.arange(n) * c.x_spacing_us
    noise = np.empty((stop - start, n), dtype=np.float32)
    for row in noise:  # row by row: the stream does not depend on the block size
        rng.standard_normal(dtype=np.float32, out=row)
    volts = (ev.baseline_v[start:stop, None] + c.alpha_noise_v * noise
             + ev.height_v[start:stop, None]
             * unit_pulse(t[None, :] - ev.onset_us[start:stop, None], c.alpha_rise_ns,
                          c.alpha_decay_us))
    info = np.iinfo(c.dtype)
    codes = np.floor((volts - c.alpha_y_offset_v) / alpha_y_scale_v(c) + 0.5)
    return np.clip(codes, info.min, info.max).astype(c.dtype)


def alpha_truth(config: SimConfig) -> dict:
    """The run-level ``alpha`` entry of ``truth.json``."""
    c0, c1, c2 = sca_coefficients()
    gain = savgol_gain(config.x_spacing_us, config.alpha_rise_ns, config.alpha_decay_us)
    return {
        "isotopes": list(ISOTOPES),
        "reference_energy_mev": list(REFERENCE_MEV),
        "fractions": isotope_fractions(config).tolist(),
        "sca_relation": {"law": "sca = c0 + c1 E + c2 E^2, E in MeV (deposited energy)",
                         "c0": c0, "c1": c1, "c2": c2},
        "sca_peaks": sca_of_energy(REFERENCE_MEV).tolist(),
        "sca_table": list(SCA_PEAKS),
        "sca_factor": SCA_FACTOR,
        "savgol": {"window": SAVGOL_WINDOW, "order": SAVGOL_ORDER, "unit_pulse_max": gain},
        "volts_per_sca": SCA_FACTOR / gain,  # before the §12 baseline's share of the tail
        "resolution_mev": config.alpha_resolution_mev,
        "tail": {"fraction": config.alpha_tail_fraction, "mean_loss_mev": config.alpha_tail_mev},
        "missing_fraction": config.alpha_missing_fraction,
        "pulse": {"rise_ns": config.alpha_rise_ns, "decay_us": config.alpha_decay_us,
                  "onset_us": config.alpha_time_us, "polarity": "positive", "units": "V"},
        "record_us": [config.alpha_record_start_us, config.alpha_record_end_us],
        "n_samples": alpha_n_samples(config),
        "y_scale_v": alpha_y_scale_v(config),
        "channels": {"pmt": config.pmt_channel, "alpha": config.alpha_channel},
        "naming": config.file_naming,
    }
