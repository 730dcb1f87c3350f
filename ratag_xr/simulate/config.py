"""Configuration of a simulated run: :class:`SimConfig` and its defaults.

Units: voltages V (electrode) or mV (signal), times µs (ns where the name says so),
sampling rate GS/s, pressure bar, temperature K, gaps cm, energies eV, rates Hz.

Default size.  The defaults write a small but complete run of ~92 MB: 5 sets × 4 files ×
70 frames (280 frames per set, enough for a per-set Gaussian fit of ion areas), int8 codes
at 2 GS/s over −3 µs … 30 µs (66 000 samples per frame).  Real data are 5 GS/s over
−3 µs … 35 µs; 2 GS/s keeps 2.5 times more frames in the same size while a
single-photoelectron (SPE) pulse (σ = 2 ns) still spans 4 samples and clears the analysis
thresholds after the 9-sample moving average, and 30 µs still holds the latest ion S2 of
the default sets (gate 100 V: start ≈ 13.7 µs, end ≈ 23.7 µs + 3σ_t).  The benchmark uses the
real 5 GS/s int16 format.

X-ray fraction.  Real runs have X-rays in a few per cent of the frames and make up for it
with 10⁵–10⁶ frames per set.  The default 0.2 lets a small run calibrate (the §7 selection
keeps ~15 % of X-ray frames: an X-ray S2 lasts the ~4.4 µs EL transit and must end 1 µs
before t_s1 + time_drift − 2.7 µs).  The price: an X-ray absorbed near the cathode glows
after t_s1 + 0.75 time_drift and stretches that frame's §4 S2 duration (about three
quarters of the X-ray frames reach that late), which widens the duration spread of
ALGORITHMS.md §9 (by ~40 % with the defaults).  For diffusion studies
lower ``xray_fraction``; ``truth_frames.npz`` flags every X-ray frame with its light interval.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from ratag_xr.errors import ConfigError

#: Tektronix digitising levels per vertical division for each code width (8-bit ADC data:
#: 25 levels/div; the same data left-justified in 16 bits: 6400 levels/div).
LEVELS_PER_DIV = {"int8": 25.0, "int16": 6400.0}

#: Samples at the start of a frame that the analysis uses as pedestal (ALGORITHMS.md §2).
N_PEDESTAL = 2000

DEFAULT_SETS = ((100, 1600), (200, 1700), (300, 1800), (400, 1900), (500, 2000))


@dataclass(frozen=True)
class SimConfig:
    """Every parameter of a simulated run (see the module docstring for units).

    The default set list keeps anode − gate = 1500 V, so the EL field (and with it the
    electron gain g_S2) is the same in every set: one g_S2 describes the run.
    """

    # -- run layout ------------------------------------------------------------------------
    run_name: str = "RUN1"
    position: int = 3  #: source position, the ``P<pos>`` of file names
    start_time: str = "2026-03-12T09:00:00"  #: UTC, ISO 8601; first trigger of the run
    sets: tuple[tuple[int, int], ...] = DEFAULT_SETS  #: (gate V, anode V) per set
    files_per_set: int = 4
    frames_per_file: int = 70
    seed: int = 1
    # -- digitiser ---------------------------------------------------------------------------
    sampling_rate_gs: float = 2.0
    record_start_us: float = -3.0  #: time of the first sample relative to the trigger
    record_end_us: float = 30.0
    dtype: str = "int8"  #: "int8" or "int16" raw codes
    volts_per_div_mv: float = 5.0  #: vertical scale; y_scale = V/div / levels per div
    y_offset_mv: float = 0.0  #: header offset: volts = code × y_scale + y_offset
    byte_order: str = "<"
    baseline_mv: float = 20.0  #: DC level of the trace; pulses go down (negative) from it
    baseline_jitter_mv: float = 0.1  #: frame-to-frame std of the DC level
    noise_mv: float = 0.2  #: white electronic noise std per sample
    trigger_rate_hz: float = 20.0  #: mean trigger rate within a file (Poisson)
    file_interval_s: float = 120.0  #: time between the starts of consecutive files
    # -- run parameters (ALGORITHMS.md "Run parameters") --------------------------------
    pressure_bar: float = 2.0
    temperature_k: float = 293.0
    drift_gap_cm: float = 1.4
    el_gap_cm: float = 0.8
    w_value_ev: float = 22.0
    xray_energy_ev: float = 12300.0
    #: recoil energy defining the ion's reference electron count N_ref = E/W; None: use the
    #: X-ray energy (N_ref = N_e_exp), the convention of ALGORITHMS.md §8 (r = 1 − A_ion/A_x)
    ion_energy_ev: float | None = None
    # -- PMT and light -------------------------------------------------------------------
    spe_amplitude_mv: float = 4.0  #: mean SPE pulse height
    spe_sigma_ns: float = 2.0  #: Gaussian SPE pulse width
    spe_gain_rel_sigma: float = 0.35  #: relative SPE gain spread (Gamma distributed)
    photon_detection_efficiency: float = 0.02  #: EL photons -> photoelectrons
    #: EL yield Y/N = a·E/N − b (1e-17 photons cm² per electron, E/N in Td); a, b after
    #: Monteiro et al., JINST 2 (2007) P05001 (linear above the ~3.4 Td threshold)
    el_yield_slope: float = 0.140
    el_yield_offset: float = 0.474
    dark_rate_hz: float = 200.0  #: single photoelectrons at random times
    # -- S1 --------------------------------------------------------------------------------
    s1_time_us: float = -1.5
    s1_mean_pe: float = 0.3  #: Poisson mean photoelectrons per frame
    s1_sigma_ns: float = 5.0  #: time spread of the S1 photoelectrons
    # -- ion S2 ----------------------------------------------------------------------------
    recomb_r0: float = 0.95  #: r(E) = r0 / (1 + E / E0), E the drift field
    recomb_e0_v_cm: float = 250.0
    ion_s2_duration_us: float = 10.0  #: mean duration of the ion S2 light
    s2_start_jitter_us: float = 0.1  #: frame-to-frame std of the ion S2 start
    diffusion_dl_mm2_us: float = 0.05  #: longitudinal diffusion coefficient D_L
    sigma0_sq_us2: float = 0.3  #: σ_0², the duration variance without drift
    # -- X-rays and junk ------------------------------------------------------------------
    xray_fraction: float = 0.2  #: fraction of frames with an X-ray S2 (see module docstring)
    fano_factor: float = 0.15
    pileup_fraction: float = 0.01  #: frames with a second, uncorrelated ion S2
    saturation_fraction: float = 0.005  #: frames with a pulse beyond the code range
    no_s2_fraction: float = 0.02  #: frames without an ion S2
    # -- alpha channel (two-channel runs, ALGORITHMS.md §11–§13; ratag_xr.simulate.alpha) --
    alpha: bool = False  #: write an alpha twin of every PMT file
    #: file names: "plain" (<run>_<date>_Gate.._P<pos>_<NNNN>.wfm, single channel, the
    #: default without alpha), "old" (..._P<pos>_<n>Wfm_Ch<c>.wfm, unpadded n, PMT on
    #: channel 1; the default with alpha) or "new" (Gate0200 folders,
    #: ..._Batch<NNN>__CH<c>.wfm, PMT on channel 3); None: the default
    naming: str | None = None
    alpha_record_start_us: float = -1.0  #: the alpha record is shorter than the PMT's
    alpha_record_end_us: float = 5.0
    alpha_volts_per_div: float = 2.0  #: V/div of the alpha channel (pulses of 5-9 V)
    alpha_y_offset_v: float = 0.0
    alpha_baseline_v: float = 0.05  #: DC level of the alpha trace, V
    alpha_baseline_jitter_v: float = 0.005
    alpha_noise_v: float = 0.02  #: white noise std per sample, V
    alpha_rise_ns: float = 30.0  #: shaping amplifier rise time constant
    alpha_decay_us: float = 1.0  #: shaping amplifier decay time constant
    alpha_time_us: float = 0.0  #: pulse start relative to the trigger
    alpha_resolution_mev: float = 0.08  #: Gaussian energy resolution (std)
    alpha_tail_fraction: float = 0.25  #: frames with a low-energy tail loss
    alpha_tail_mev: float = 0.15  #: mean of the exponential tail loss
    alpha_missing_fraction: float = 0.03  #: frames without an alpha (baseline only)
    #: only these isotopes' alphas, in their equilibrium proportions (a single-isotope run,
    #: e.g. ("Ra224",)); None: the whole Th-228 chain
    alpha_isotopes: tuple[str, ...] | None = None

    def __post_init__(self):
        # sets may come as lists (YAML, JSON): store hashable tuples
        try:
            object.__setattr__(self, "sets", tuple(tuple(s) for s in self.sets))
        except TypeError as exc:
            raise ConfigError(f"SimConfig: sets must be (gate, anode) pairs, got "
                              f"{self.sets!r}") from exc
        if self.alpha_isotopes is not None:
            object.__setattr__(self, "alpha_isotopes", tuple(self.alpha_isotopes))
        _validate(self)

    # -- derived digitiser quantities ------------------------------------------------------
    @property
    def x_spacing_us(self) -> float:
        """Sample spacing in µs."""
        return 1e-3 / self.sampling_rate_gs

    @property
    def n_samples(self) -> int:
        """Samples per frame covering [record_start_us, record_end_us)."""
        return int(round((self.record_end_us - self.record_start_us) / self.x_spacing_us))

    @property
    def y_scale_mv(self) -> float:
        """mV per code."""
        return self.volts_per_div_mv / LEVELS_PER_DIV[self.dtype]

    @property
    def file_naming(self) -> str:
        """The naming style in effect (``naming``, or its default)."""
        return self.naming or ("old" if self.alpha else "plain")

    @property
    def pmt_channel(self) -> int | None:
        """The PMT's channel number in file names (None: untagged names)."""
        return {"plain": None, "old": 1, "new": 3}[self.file_naming]

    @property
    def alpha_channel(self) -> int | None:
        return 4 if self.alpha else None

    @property
    def n_frames_per_set(self) -> int:
        return self.files_per_set * self.frames_per_file

    @property
    def start_epoch(self) -> float:
        """Run start as Unix seconds (UTC)."""
        return datetime.fromisoformat(self.start_time).replace(tzinfo=UTC).timestamp()

    def to_dict(self) -> dict:
        """JSON-ready dict of every field (sets as lists)."""
        out = dataclasses.asdict(self)
        out["sets"] = [list(s) for s in self.sets]
        return out

    def replace(self, **overrides) -> SimConfig:
        """A copy with ``overrides``; unknown names raise :class:`ConfigError`."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"SimConfig: unknown parameter(s) {unknown}")
        return dataclasses.replace(self, **overrides)


def _validate(c: SimConfig) -> None:
    """Refuse values that cannot make a sensible run; messages say what was expected."""

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ConfigError(f"SimConfig: {what}")

    need(c.dtype in LEVELS_PER_DIV, f"dtype must be 'int8' or 'int16', got {c.dtype!r}")
    need(c.byte_order in ("<", ">"), f"byte_order must be '<' or '>', got {c.byte_order!r}")
    need(len(c.sets) >= 1, "need at least one (gate, anode) set")
    for s in c.sets:
        need(
            len(s) == 2 and all(float(v) == int(v) and v > 0 for v in s) and s[1] > s[0],
            f"each set must be (gate, anode) positive whole volts with anode > gate, got {s}",
        )
    need(len(set(map(tuple, c.sets))) == len(c.sets), "sets must be distinct")
    for name in ("files_per_set", "frames_per_file"):
        need(getattr(c, name) >= 1, f"{name} must be >= 1")
    need(c.files_per_set <= 10000, "files_per_set must be <= 10000 (4-digit file numbers)")
    positive = (
        "sampling_rate_gs", "volts_per_div_mv", "pressure_bar", "temperature_k",
        "drift_gap_cm", "el_gap_cm", "w_value_ev", "xray_energy_ev", "spe_amplitude_mv",
        "spe_sigma_ns", "photon_detection_efficiency", "ion_s2_duration_us", "trigger_rate_hz",
        "recomb_e0_v_cm",
    )
    for name in positive:
        value = getattr(c, name)
        need(math.isfinite(value) and value > 0, f"{name} must be > 0, got {value}")
    non_negative = (
        "baseline_jitter_mv", "noise_mv", "spe_gain_rel_sigma", "dark_rate_hz", "s1_mean_pe",
        "s1_sigma_ns", "s2_start_jitter_us", "diffusion_dl_mm2_us", "sigma0_sq_us2",
        "fano_factor", "file_interval_s",
    )
    for name in non_negative:
        value = getattr(c, name)
        need(math.isfinite(value) and value >= 0, f"{name} must be >= 0, got {value}")
    need(0 <= c.recomb_r0 <= 1, f"recomb_r0 must be in [0, 1], got {c.recomb_r0}")
    fractions = (c.xray_fraction, c.pileup_fraction, c.saturation_fraction, c.no_s2_fraction)
    need(all(0 <= f <= 1 for f in fractions), "fractions must be in [0, 1]")
    need(
        c.pileup_fraction + c.saturation_fraction + c.no_s2_fraction <= 1,
        "pileup + saturation + no_s2 fractions must add up to <= 1",
    )
    need(c.ion_energy_ev is None or c.ion_energy_ev > 0, "ion_energy_ev must be > 0 or None")
    need(c.record_end_us > c.record_start_us, "record_end_us must be after record_start_us")
    need(c.naming in (None, "plain", "old", "new"),
         f"naming must be 'plain', 'old' or 'new', got {c.naming!r}")
    need(not (c.alpha and c.file_naming == "plain"),
         "an alpha channel needs channel tags in the file names: naming 'old' or 'new'")
    if c.alpha:
        for name in ("alpha_volts_per_div", "alpha_rise_ns", "alpha_decay_us",
                     "alpha_tail_mev"):
            value = getattr(c, name)
            need(math.isfinite(value) and value > 0, f"{name} must be > 0, got {value}")
        for name in ("alpha_noise_v", "alpha_baseline_jitter_v", "alpha_resolution_mev"):
            value = getattr(c, name)
            need(math.isfinite(value) and value >= 0, f"{name} must be >= 0, got {value}")
        need(c.alpha_rise_ns * 1e-3 < c.alpha_decay_us,
             "alpha_rise_ns must be shorter than alpha_decay_us")
        need(0 <= c.alpha_tail_fraction <= 1 and 0 <= c.alpha_missing_fraction <= 1,
             "alpha fractions must be in [0, 1]")
        n_alpha = int(round((c.alpha_record_end_us - c.alpha_record_start_us)
                            / (1e-3 / c.sampling_rate_gs)))
        need(n_alpha > 501, f"the alpha record needs more than 501 samples (the §12 "
                            f"Savitzky-Golay window), got {n_alpha}")
        need(c.alpha_record_start_us < c.alpha_time_us < c.alpha_record_end_us,
             "alpha_time_us must lie inside the alpha record")
        if c.alpha_isotopes is not None:
            from ratag_xr.simulate.alpha import ISOTOPES

            need(len(c.alpha_isotopes) > 0 and set(c.alpha_isotopes) <= set(ISOTOPES),
                 f"alpha_isotopes must name some of {list(ISOTOPES)}, got "
                 f"{list(c.alpha_isotopes)}")
    try:
        datetime.fromisoformat(c.start_time)
    except ValueError:
        need(False, f"start_time must be ISO 8601, got {c.start_time!r}")
    dt = 1e-3 / c.sampling_rate_gs
    n = int(round((c.record_end_us - c.record_start_us) / dt))
    need(n > N_PEDESTAL, f"a frame needs more than {N_PEDESTAL} samples (pedestal), got {n}")
    pedestal_end = c.record_start_us + N_PEDESTAL * dt
    # The analysis takes the first 2000 samples as pedestal: the S1 (with its spread) must
    # come after them, and before the trigger (ALGORITHMS.md §3 looks for it at t < 0).
    need(
        pedestal_end + 5e-3 * c.s1_sigma_ns < c.s1_time_us < 0,
        f"s1_time_us must be in ({pedestal_end:.3f}, 0) µs (after the {N_PEDESTAL}-sample "
        f"pedestal, before the trigger), got {c.s1_time_us}",
    )
