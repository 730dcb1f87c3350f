"""Random draws of the frames of one file: per-frame truth and the list of pulses.

Everything is drawn up front for a whole file (a few numbers per frame, a few hundred pulses
per frame), vectorised with numpy; the waveforms themselves are rendered block by block in
:mod:`ratag_xr.simulate.render`.  Times µs relative to the trigger, amplitudes mV (positive:
the trace goes down by that much), areas mV·µs.

Frame kinds (:data:`KINDS`): ``normal``; ``pileup`` (a second, uncorrelated ion S2 at a
random time); ``saturation`` (one pulse three times deeper than the code range); ``no_s2``
(the recoil gave no charge in the gas).  Independently of the kind, a fraction of frames has
an X-ray S2.  Every frame has an S1 (Poisson photoelectrons, mostly zero or one), dark
counts and electronic noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ratag_xr.simulate.config import SimConfig
from ratag_xr.simulate.physics import SetModel

KINDS = ("normal", "pileup", "saturation", "no_s2")
SATURATION_SIGMA_NS = 20.0


@dataclass
class FileEvents:
    """Per-frame truth (arrays of length n_frames) and the pulses of one file.

    Pulses are sorted by frame: ``pulse_offsets[i]:pulse_offsets[i + 1]`` index frame i.
    S2 intervals (``ion_start``/``ion_end``, ``xray_start``/``xray_end``) are the model's
    emission intervals (for an X-ray: of its cloud centre; its photoelectrons are spread
    further by the Gaussian ``xray_sigma`` of its diffusion); ``ion_first_pe``/``ion_last_pe``
    the realised extreme PE times.
    Values that do not apply (no X-ray, no S2) are NaN, counts 0.
    """

    gmt_sec: np.ndarray
    gmt_frac: np.ndarray
    tt_offsets: np.ndarray
    kind: np.ndarray  # int8, index into KINDS
    baseline_mv: np.ndarray
    s1_n_pe: np.ndarray
    ion_n_e: np.ndarray
    ion_n_pe: np.ndarray
    ion_area: np.ndarray
    ion_start: np.ndarray
    ion_end: np.ndarray
    ion_first_pe: np.ndarray
    ion_last_pe: np.ndarray
    xray: np.ndarray  # bool
    xray_n_e: np.ndarray
    xray_n_pe: np.ndarray
    xray_area: np.ndarray
    xray_start: np.ndarray
    xray_end: np.ndarray
    xray_sigma: np.ndarray
    pileup_start: np.ndarray
    pileup_area: np.ndarray
    saturation_time: np.ndarray
    n_dark: np.ndarray
    pulse_offsets: np.ndarray
    pulse_time: np.ndarray
    pulse_amp: np.ndarray
    pulse_sigma_ns: np.ndarray

    @property
    def n_frames(self) -> int:
        return self.kind.shape[0]

    def per_frame(self) -> dict[str, np.ndarray]:
        """The per-frame arrays by name (no pulses)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("pulse_")}


def _gains(rng, n: int, rel_sigma: float) -> np.ndarray:
    """SPE gains: Gamma with mean 1 and std ``rel_sigma`` (positive, unlike a Gaussian)."""
    if rel_sigma == 0:
        return np.ones(n)
    k = 1.0 / rel_sigma**2
    return rng.gamma(k, 1.0 / k, n)


def _train(rng, start, duration, n_pe):
    """PE times uniform in [start, start + duration) for each frame; returns (frame, t)."""
    frame = np.repeat(np.arange(n_pe.size), n_pe)
    return frame, start[frame] + rng.random(frame.size) * duration[frame]


def _durations(rng, model: SetModel, n: int) -> np.ndarray:
    # The floor only guards against a negative duration for an absurd sigma_t; with the
    # defaults (sigma_t < 0.2 D) it is never reached.
    d = model.s2_duration_mean + model.sigma_t * rng.standard_normal(n)
    return np.maximum(d, 0.1 * model.s2_duration_mean)


def draw_file_events(
    rng: np.random.Generator, config: SimConfig, model: SetModel, file_start_epoch: float
) -> FileEvents:
    """Draw the frames of one file of set ``model`` (the draw order is part of the seed)."""
    c, m = config, model
    n = c.frames_per_file
    rec_start, rec_end = c.record_start_us, c.record_end_us

    # trigger time stamps: Poisson triggers after the file start
    t_trig = file_start_epoch + np.cumsum(rng.exponential(1.0 / c.trigger_rate_hz, n))
    gmt_sec = np.floor(t_trig)
    gmt_frac = t_trig - gmt_sec
    tt_offsets = rng.random(n)  # not applied to pulse times: a sub-sample shift

    p_junk = [c.pileup_fraction, c.saturation_fraction, c.no_s2_fraction]
    p_normal = max(1.0 - sum(p_junk), 0.0)  # rounding may leave -1e-17
    kind = rng.choice(len(KINDS), size=n, p=[p_normal, *p_junk]).astype(np.int8)
    xray = rng.random(n) < c.xray_fraction
    baseline = c.baseline_mv + c.baseline_jitter_mv * rng.standard_normal(n)

    pulses_f, pulses_t, pulses_a, pulses_s = [], [], [], []

    def add_spe(frame, t):
        pulses_f.append(frame)
        pulses_t.append(t)
        pulses_a.append(c.spe_amplitude_mv * _gains(rng, frame.size, c.spe_gain_rel_sigma))
        pulses_s.append(np.full(frame.size, c.spe_sigma_ns))
        return pulses_a[-1]

    # S1: a few photoelectrons at t_s1 with a Gaussian time spread
    s1_n = rng.poisson(c.s1_mean_pe, n)
    s1_f = np.repeat(np.arange(n), s1_n)
    add_spe(s1_f, m.t_s1 + c.s1_sigma_ns * 1e-3 * rng.standard_normal(s1_f.size))

    # ion S2
    ion_n_e = rng.poisson(m.ion_n_e_mean, n)
    ion_n_e[kind == KINDS.index("no_s2")] = 0
    ion_n_pe = rng.poisson(ion_n_e * m.pe_per_electron)
    ion_start = m.t_s2_start + c.s2_start_jitter_us * rng.standard_normal(n)
    ion_dur = _durations(rng, m, n)
    f, t = _train(rng, ion_start, ion_dur, ion_n_pe)
    amp = add_spe(f, t)
    ion_area = np.bincount(f, amp, minlength=n) / c.spe_amplitude_mv * m.spe_area
    first, last = np.full(n, np.nan), np.full(n, np.nan)
    np.fmin.at(first, f, t)
    np.fmax.at(last, f, t)

    # pile-up: a second ion S2 of an uncorrelated decay, anywhere after the S1
    is_pile = kind == KINDS.index("pileup")
    pile_n_pe = np.where(
        is_pile, rng.poisson(rng.poisson(m.ion_n_e_mean, n) * m.pe_per_electron), 0
    )
    pile_start = np.where(is_pile, rng.uniform(m.t_s1, rec_end, n), np.nan)
    f, t = _train(rng, np.nan_to_num(pile_start), _durations(rng, m, n), pile_n_pe)
    amp = add_spe(f, t)
    pile_area = np.bincount(f, amp, minlength=n) / c.spe_amplitude_mv * m.spe_area

    # X-rays: uniform depth; the cloud reaches the gate after the remaining drift time t_rem,
    # diffuses by sqrt(2 D_L t_rem) / v and glows for the EL transit time
    x_n_e = np.where(
        xray,
        np.maximum(np.rint(rng.normal(m.xray_n_e_mean, np.sqrt(c.fano_factor * m.xray_n_e_mean),
                                      n)), 0),
        0,
    ).astype(np.int64)
    x_n_pe = rng.poisson(x_n_e * m.pe_per_electron)
    t_rem = rng.random(n) * m.time_drift
    x_start = m.t_s1 + t_rem
    x_sigma = np.sqrt(2.0 * c.diffusion_dl_mm2_us * t_rem) / m.speed_drift
    f = np.repeat(np.arange(n), x_n_pe)
    t = (
        x_start[f]
        + x_sigma[f] * rng.standard_normal(f.size)
        + m.el_transit_time * rng.random(f.size)
    )
    amp = add_spe(f, t)
    x_area = np.bincount(f, amp, minlength=n) / c.spe_amplitude_mv * m.spe_area

    # dark counts: single photoelectrons uniform over the record
    n_dark = rng.poisson(c.dark_rate_hz * (rec_end - rec_start) * 1e-6, n)
    f = np.repeat(np.arange(n), n_dark)
    add_spe(f, rng.uniform(rec_start, rec_end, f.size))

    # saturation: one pulse three times deeper than the whole code range
    f = np.flatnonzero(kind == KINDS.index("saturation"))
    full_range_mv = c.y_scale_mv * 2.0 ** (8 * np.dtype(c.dtype).itemsize)
    sat_time = np.full(n, np.nan)
    sat_time[f] = rng.uniform(m.t_s1, rec_end, f.size)
    pulses_f.append(f)
    pulses_t.append(sat_time[f])
    pulses_a.append(np.full(f.size, 3.0 * full_range_mv))
    pulses_s.append(np.full(f.size, SATURATION_SIGMA_NS))

    frame = np.concatenate(pulses_f)
    order = np.argsort(frame, kind="stable")
    nan = np.full(n, np.nan)
    return FileEvents(
        gmt_sec=gmt_sec,
        gmt_frac=gmt_frac,
        tt_offsets=tt_offsets,
        kind=kind,
        baseline_mv=baseline,
        s1_n_pe=s1_n,
        ion_n_e=ion_n_e,
        ion_n_pe=ion_n_pe,
        ion_area=ion_area,
        ion_start=np.where(ion_n_pe > 0, ion_start, nan),
        ion_end=np.where(ion_n_pe > 0, ion_start + ion_dur, nan),
        ion_first_pe=first,
        ion_last_pe=last,
        xray=xray,
        xray_n_e=x_n_e,
        xray_n_pe=x_n_pe,
        xray_area=np.where(xray, x_area, nan),
        xray_start=np.where(xray, x_start, nan),
        xray_end=np.where(xray, x_start + m.el_transit_time, nan),
        xray_sigma=np.where(xray, x_sigma, nan),
        pileup_start=pile_start,
        pileup_area=np.where(is_pile, pile_area, nan),
        saturation_time=sat_time,
        n_dark=n_dark,
        pulse_offsets=np.concatenate([[0], np.cumsum(np.bincount(frame, minlength=n))]),
        pulse_time=np.concatenate(pulses_t)[order],
        pulse_amp=np.concatenate(pulses_a)[order],
        pulse_sigma_ns=np.concatenate(pulses_s)[order],
    )
