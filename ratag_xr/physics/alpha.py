"""Alpha spectrum calibration, isotope ranges, tagging, recoil energies (ALGORITHMS.md §13–14).

Pure functions on numpy arrays and small dataclasses.  Units: ``alpha_energy_sca`` and
everything fitted in the spectrum (x0, sigma, windows) in SCA units ("SCA-scale MeV", the
kernel's output); calibrated energies, ranges and the overlap boundary in MeV; recoil
energies in keV; ion S2 areas in mV·µs.  Ranges are always in calibrated MeV and are
applied to calibrated energies (the reference compared them with SCA energies).

Typical use, from per-chunk partial histograms to per-frame labels::

    counts, edges = alpha_spectrum(energies_sca)      # or the sum of chunk histograms
    fits = fit_peaks(counts, edges)                   # {name: PeakFit}
    cal = calibrate(fits)                             # E(x) in MeV
    ranges = isotope_ranges(fits, cal)                # MeV, Th228/Ra224 overlap cut
    labels = tag(cal.energy(energies_sca), ranges)    # "Th228", ..., "untagged"
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq

from ratag_xr.errors import ConfigError
from ratag_xr.physics.calibration import W_EV, Recombination, XrayCalibration, recombination
from ratag_xr.physics.crystal_ball import CrystalBallFit, crystal_ball, fit_crystal_ball_hist
from ratag_xr.physics.fit import histogram

UNTAGGED = "untagged"
#: Spectrum binning of §13 (SCA units).
SPECTRUM_NBINS = 120
SPECTRUM_RANGE = (4.0, 8.2)


@dataclass(frozen=True)
class Peak:
    """One alpha line: start ``x0`` and fit ``window`` in SCA units, ``energy_mev`` (MeV).

    ``continuum``: fit the β-continuum under it (Po212, §13).
    """

    name: str
    x0: float
    window: tuple[float, float]
    energy_mev: float
    continuum: bool = False

    def __post_init__(self):
        lo, hi = (float(w) for w in self.window)
        object.__setattr__(self, "window", (lo, hi))
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ConfigError(f"peak {self.name}: window must have low < high, got {self.window}")
        if not lo <= self.x0 <= hi:
            raise ConfigError(f"peak {self.name}: start x0 {self.x0} outside its window "
                              f"{self.window}")
        if not (np.isfinite(self.energy_mev) and self.energy_mev > 0):
            raise ConfigError(f"peak {self.name}: energy must be > 0 MeV, got {self.energy_mev}")


#: The group's peak table (§13): name, start x0 (SCA), fit window (SCA), energy (MeV).
DEFAULT_PEAKS = (
    Peak("Th228", 4.5, (4.0, 4.6), 5.42315),
    Peak("Ra224", 4.8, (4.62, 5.1), 5.68537),
    Peak("Rn220", 5.4, (5.0, 5.5), 6.40484),
    Peak("Po216", 5.9, (5.5, 6.1), 6.90628),
    Peak("Po212", 7.5, (6.3, 8.0), 8.785, continuum=True),
)

#: Q values (keV) and parent mass numbers of the alpha decays (§14).
Q_VALUES_KEV = {"Th228": 5520.15, "Ra224": 5788.87, "Rn220": 6404.84, "Po216": 6906.28,
                "Po212": 8954.12}
PARENT_MASS_NUMBER = {"Th228": 228, "Ra224": 224, "Rn220": 220, "Po216": 216, "Po212": 212}


def peak_table(rows: Iterable) -> tuple[Peak, ...]:
    """A peak table from config rows: :class:`Peak`, mappings with the field names, or
    tuples ``(name, x0, (lo, hi), energy_mev[, continuum])``.  Names must be unique."""
    peaks = []
    for row in rows:
        if isinstance(row, Peak):
            peaks.append(row)
        elif isinstance(row, Mapping):
            try:
                peaks.append(Peak(**row))
            except TypeError as exc:
                raise ConfigError(f"peak row {dict(row)}: {exc}") from None
        else:
            peaks.append(Peak(*row))
    names = [p.name for p in peaks]
    if len(set(names)) != len(names):
        raise ConfigError(f"peak names must be unique, got {names}")
    return tuple(peaks)


# ---------------------------------------------------------------- spectrum and peak fits


def alpha_spectrum(energies_sca, nbins: int = SPECTRUM_NBINS,
                   energy_range=SPECTRUM_RANGE):
    """Counts and edges (SCA units) of ``alpha_energy_sca`` in ``nbins`` over ``energy_range``.

    NaN and out-of-range energies are ignored.  The same ``nbins`` and ``energy_range``
    give identical edges for every chunk, so per-chunk histograms simply add.
    """
    return histogram(energies_sca, energy_range, nbins)


@dataclass(frozen=True)
class PeakFit:
    """The Crystal Ball fit of one :class:`Peak` (x0, sigma in SCA units)."""

    peak: Peak
    fit: CrystalBallFit

    @property
    def success(self) -> bool:
        return self.fit.success

    @property
    def reason(self) -> str:
        return self.fit.reason

    def to_dict(self) -> dict:
        return {"name": self.peak.name, "ref_energy": self.peak.energy_mev,
                **self.fit.to_dict()}


def fit_peaks(counts, edges, peaks=DEFAULT_PEAKS, *, limits=None) -> dict[str, PeakFit]:
    """A left-tailed Crystal Ball fit per peak in its window (§13), keyed by name.

    Starts and bounds are §13's (see :func:`~ratag_xr.physics.crystal_ball.
    fit_crystal_ball_hist`), x0 from the table; ``limits`` overrides bounds for every
    peak.  A failed peak keeps its reason (``success`` False); it never raises for data.
    """
    peaks = peak_table(peaks)
    out = {}
    for p in peaks:
        fit = fit_crystal_ball_hist(counts, edges, tail="left", window=p.window,
                                    start={"x0": p.x0}, limits=limits, continuum=p.continuum)
        out[p.name] = PeakFit(p, fit)
    return out


# ---------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    """SCA → MeV: ``E(x) = a + b·x [+ c·x²]`` from the successful peaks (§13).

    ``linear`` (a, b) and ``quadratic`` (a, b, c) least squares of reference energy (MeV)
    on fitted x0 (SCA), NaN when there are too few peaks; ``order_used`` 1 or 2;
    ``residuals_*`` (MeV, reference − fit) per peak in ``names``; peaks that failed are
    listed in ``excluded`` with their reasons.  A failed calibration has NaN
    coefficients, ``success`` False and a reason.
    """

    order_used: int
    linear: tuple[float, float]
    quadratic: tuple[float, float, float]
    names: tuple[str, ...]
    x0: tuple[float, ...]
    ref_energy_mev: tuple[float, ...]
    residuals_linear: tuple[float, ...]
    residuals_quadratic: tuple[float, ...]
    excluded: dict = field(default_factory=dict)
    success: bool = True
    reason: str = ""

    @property
    def coefficients(self) -> np.ndarray:
        """(a, b, c) of the order used (c = 0 for order 1)."""
        if self.order_used == 2:
            return np.asarray(self.quadratic, dtype=float)
        return np.r_[np.asarray(self.linear, dtype=float), 0.0]

    def energy(self, x):
        """Calibrated energy (MeV) of SCA-unit values ``x`` (NaN stays NaN)."""
        a, b, c = self.coefficients
        x = np.asarray(x, dtype=float)
        return a + x * (b + c * x)

    def derivative(self, x):
        """dE/dx (MeV per SCA unit) at ``x``."""
        _, b, c = self.coefficients
        return b + 2.0 * c * np.asarray(x, dtype=float)

    def to_dict(self) -> dict:
        return {"order_used": self.order_used, "linear": list(self.linear),
                "quadratic": list(self.quadratic), "names": list(self.names),
                "x0": list(self.x0), "ref_energy_mev": list(self.ref_energy_mev),
                "residuals_linear": list(self.residuals_linear),
                "residuals_quadratic": list(self.residuals_quadratic),
                "excluded": dict(self.excluded), "success": self.success,
                "reason": self.reason}


def _lsq(x, e, order):
    if x.size <= order:
        return tuple([float("nan")] * (order + 1)), tuple([float("nan")] * x.size)
    coef = np.polynomial.polynomial.polyfit(x, e, order)
    resid = e - np.polynomial.polynomial.polyval(x, coef)
    return tuple(float(c) for c in coef), tuple(float(r) for r in resid)


def calibrate(peak_fits: Mapping[str, PeakFit], order: int | None = None) -> Calibration:
    """Least squares of reference energy (MeV) against fitted x0 (SCA), order 1 and 2.

    Only successful peaks count.  ``order`` None: 2 when >= 4 peaks succeeded, else 1.
    Fewer peaks than the order needs (2 for order 1, 3 for order 2), or a calibration
    that does not increase over the fitted peaks, give ``success=False`` with a reason.
    Raises :class:`ConfigError` for an ``order`` other than None, 1 or 2.
    """
    if order not in (None, 1, 2):
        raise ConfigError(f"calibration order must be 1, 2 or None, got {order!r}")
    good = [pf for pf in peak_fits.values() if pf.success]
    excluded = {name: pf.reason for name, pf in peak_fits.items() if not pf.success}
    x = np.array([pf.fit.x0 for pf in good], dtype=float)
    e = np.array([pf.peak.energy_mev for pf in good], dtype=float)
    order_used = order if order is not None else (2 if len(good) >= 4 else 1)
    lin, res_lin = _lsq(x, e, 1)
    quad, res_quad = _lsq(x, e, 2)
    cal = Calibration(order_used=order_used, linear=lin, quadratic=quad,
                      names=tuple(pf.peak.name for pf in good), x0=tuple(x.tolist()),
                      ref_energy_mev=tuple(e.tolist()), residuals_linear=res_lin,
                      residuals_quadratic=res_quad, excluded=excluded)
    reason = ""
    if len(good) < order_used + 1:
        reason = (f"{len(good)} successful peak(s), order {order_used} needs "
                  f">= {order_used + 1}")
    elif np.any(cal.derivative(x) <= 0):
        reason = "calibrated energy does not increase with the SCA value at every peak"
    if reason:
        return Calibration(**{**cal.__dict__, "success": False, "reason": reason})
    return cal


# ---------------------------------------------------------------- ranges and tagging


@dataclass(frozen=True)
class IsotopeRange:
    """Energy range (MeV) of one isotope: ``lo <= E <= hi`` is tagged ``name``.

    ``centre_mev`` = E(x0); ``sigma_mev`` = |E'(x0)|·sigma; ``beta``, ``m`` the fitted tail
    (the calibrated shape is a unit-height left-tailed Crystal Ball with these).
    """

    name: str
    centre_mev: float
    sigma_mev: float
    lo: float
    hi: float
    beta: float
    m: float

    def shape(self, energy_mev):
        """The calibrated unit-height Crystal Ball at ``energy_mev``."""
        return crystal_ball(energy_mev, self.centre_mev, self.sigma_mev, self.beta, self.m,
                            "left")


@dataclass(frozen=True)
class IsotopeRanges:
    """Ranges in calibrated MeV, keyed by isotope, plus the overlap boundaries (MeV).

    ``overlap_boundary_mev``: for each pair in ``overlap_pairs`` whose ranges overlapped,
    the energy between the centres where the two calibrated shapes are equal (NaN if the
    ranges did not overlap or a peak is missing).  ``units`` is "MeV", always.
    """

    ranges: dict
    overlap_boundary_mev: dict
    n_sigma: float
    units: str = "MeV"

    def to_dict(self) -> dict:
        return {"ranges": {k: [r.lo, r.hi] for k, r in self.ranges.items()},
                "overlap_boundary_mev": dict(self.overlap_boundary_mev),
                "n_sigma": self.n_sigma, "units": self.units}


def overlap_boundary(a: IsotopeRange, b: IsotopeRange) -> float:
    """Energy (MeV) between the two centres where the calibrated shapes are equal.

    Between the centres the lower peak's shape falls (its core side) and the upper
    peak's rises (its core, then its tail), so their difference changes sign exactly
    once: a bracketed root (Brent), not an argmin on a grid that can land in a tail.
    """
    lo, hi = sorted((a, b), key=lambda r: r.centre_mev)
    if not hi.centre_mev > lo.centre_mev:
        return float("nan")
    return float(brentq(lambda e: lo.shape(e) - hi.shape(e), lo.centre_mev, hi.centre_mev,
                        xtol=1e-12, rtol=1e-12))


def isotope_ranges(peak_fits: Mapping[str, PeakFit], calibration: Calibration,
                   n_sigma: float = 2.0,
                   overlap_pairs=(("Th228", "Ra224"),)) -> IsotopeRanges:
    """E(x0) ± n_sigma·|E'(x0)|·sigma (MeV) for every successful peak (§13).

    For each pair in ``overlap_pairs`` whose ranges overlap, both ranges are cut at
    :func:`overlap_boundary` (clipped into the overlap, so the two stay adjacent).  A
    failed calibration gives no ranges (every frame will be untagged).
    """
    if not (np.isfinite(n_sigma) and n_sigma > 0):
        raise ConfigError(f"n_sigma must be > 0, got {n_sigma}")
    ranges = {}
    if calibration.success:
        for name, pf in peak_fits.items():
            if not pf.success:
                continue
            centre = float(calibration.energy(pf.fit.x0))
            sigma = float(abs(calibration.derivative(pf.fit.x0)) * pf.fit.sigma)
            ranges[name] = IsotopeRange(name, centre, sigma, centre - n_sigma * sigma,
                                        centre + n_sigma * sigma, pf.fit.beta, pf.fit.m)
    boundaries = {}
    for pair in overlap_pairs:
        key = "/".join(pair)
        boundaries[key] = float("nan")
        if not all(p in ranges for p in pair):
            continue
        low, high = sorted((ranges[p] for p in pair), key=lambda r: r.centre_mev)
        if low.hi <= high.lo:
            continue
        root = overlap_boundary(low, high)
        if not np.isfinite(root):
            continue
        boundaries[key] = root
        cut = min(max(root, high.lo), low.hi)
        ranges[low.name] = IsotopeRange(**{**low.__dict__, "hi": cut})
        ranges[high.name] = IsotopeRange(**{**high.__dict__, "lo": cut})
    return IsotopeRanges(ranges, boundaries, float(n_sigma))


#: the units of SCA-scale ranges (:func:`sca_ranges`): those of ``alpha_energy_sca``
SCA_UNITS = "SCA MeV"


def sca_ranges(ranges: Mapping[str, Iterable[float]]) -> IsotopeRanges:
    """Configured ranges {isotope: (lo, hi)} on the SCA scale of ``alpha_energy_sca``
    (a single-isotope run's energy window, no calibration needed): ``tag(energies_sca,
    sca_ranges(...), units=SCA_UNITS)``.  Centres are the middles of the ranges."""
    out = {}
    for name, (lo, hi) in ranges.items():
        lo, hi = float(lo), float(hi)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ConfigError(f"isotope range {name}: needs low < high, got [{lo}, {hi}]")
        out[str(name)] = IsotopeRange(str(name), (lo + hi) / 2, float("nan"), lo, hi,
                                      float("nan"), float("nan"))
    return IsotopeRanges(out, {}, float("nan"), units=SCA_UNITS)


def tag(energies_mev, ranges: IsotopeRanges, units: str = "MeV") -> np.ndarray:
    """Isotope label per frame: the range holding its energy, else "untagged".

    ``energies_mev`` must be on the scale of the ranges, which ``units`` names: calibrated
    MeV (``Calibration.energy`` of the SCA values, ranges of :func:`isotope_ranges`) or
    :data:`SCA_UNITS` (the SCA values themselves, ranges of :func:`sca_ranges`).  NaN →
    "untagged".  An energy inside two ranges (pairs not cut by an overlap boundary) goes
    to the nearer centre.  Returns an object array of str.
    """
    if not isinstance(ranges, IsotopeRanges) or ranges.units != units:
        raise ConfigError(f"tag() of energies in {units} needs ranges in {units} "
                          "(isotope_ranges() for MeV, sca_ranges() for SCA MeV)")
    e = np.asarray(energies_mev, dtype=float)
    labels = np.full(e.shape, UNTAGGED, dtype=object)
    best = np.full(e.shape, np.inf)
    with np.errstate(invalid="ignore"):
        for name, r in ranges.ranges.items():
            distance = np.abs(e - r.centre_mev)
            take = (e >= r.lo) & (e <= r.hi) & (distance < best)
            labels[take] = name
            best[take] = distance[take]
    return labels


# ---------------------------------------------------------------- recoil energies


def recoil_energy_kev(isotope: str) -> float:
    """Recoil energy (keV) of the daughter of ``isotope``'s alpha decay: Q × 4 / A_parent."""
    if isotope not in Q_VALUES_KEV:
        raise ConfigError(f"no Q value for {isotope!r}; known: {sorted(Q_VALUES_KEV)}")
    return Q_VALUES_KEV[isotope] * 4.0 / PARENT_MASS_NUMBER[isotope]


def isotope_recombination(a_ion, a_ion_err, xray: XrayCalibration, isotope: str, *,
                          w_ev: float = W_EV) -> Recombination:
    """Electrons and recombination of one isotope's recoils (§14, uncertainties as §8).

    ``a_ion`` / ``a_ion_err``: that isotope's ion S2 area mean and ci95 per set (mV·µs);
    ``xray``: the run's X-ray gain.  N_exp = E_R / W with E_R = :func:`recoil_energy_kev`,
    r = 1 − (A_ion / g_S2) / N_exp; ``r_err_ion`` propagates the ion ci95 only,
    ``r_err`` the ion and X-ray ci95 (see :func:`ratag_xr.physics.calibration.recombination`).
    """
    return recombination(a_ion, a_ion_err, xray.A_x_mean, xray.ci95, n_e_exp=xray.N_e_exp,
                         e_recoil_ev=recoil_energy_kev(isotope) * 1000.0, w_ev=w_ev)
