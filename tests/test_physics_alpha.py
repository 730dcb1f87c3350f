"""Alpha spectrum calibration, ranges, tagging and recoil energies (ALGORITHMS.md §13–14).

Synthetic runs: five alpha lines drawn from known left-tailed Crystal Balls in SCA units,
whose centres are the reference energies mapped through a known quadratic MeV → SCA
relation (the inverse of TRUE_E below), plus a β-continuum under Po212.  Expected values
come from that truth or from the table of §14, never from the code under test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ratag_xr.errors import ConfigError
from ratag_xr.physics.alpha import (
    DEFAULT_PEAKS,
    UNTAGGED,
    Peak,
    alpha_spectrum,
    calibrate,
    fit_peaks,
    isotope_ranges,
    isotope_recombination,
    peak_table,
    recoil_energy_kev,
    tag,
)
from ratag_xr.physics.calibration import XrayCalibration
from ratag_xr.physics.crystal_ball import crystal_ball, sample_crystal_ball

TRUE_E = (1.2350, 0.8074, 0.02656)  # E(x) = a + b x + c x², MeV and SCA units
REF = {p.name: p.energy_mev for p in DEFAULT_PEAKS}
SIGMA = {"Th228": 0.07, "Ra224": 0.07, "Rn220": 0.05, "Po216": 0.05, "Po212": 0.08}
BETA, M = -1.2, 3.0
N_PER_PEAK = 6000


def true_energy(x):
    a, b, c = TRUE_E
    return a + b * x + c * x * x


def true_x0(energy):
    a, b, c = TRUE_E
    return (-b + np.sqrt(b * b - 4 * c * (a - energy))) / (2 * c)


def synthetic_run(seed, missing=(), n=N_PER_PEAK):
    """Per-frame SCA energies and true isotopes (NaN frames, "none" for the continuum)."""
    rng = np.random.default_rng(seed)
    values, truth = [], []
    for name in REF:
        if name in missing:
            continue
        x = sample_crystal_ball(rng, n, true_x0(REF[name]), SIGMA[name], BETA, M, "left")
        values.append(x)
        truth += [name] * n
    lam, lo, hi = 1.0, 6.3, 8.0  # Po212 β-continuum in its window
    u = rng.uniform(0, 1 - np.exp(-lam * (hi - lo)), n // 3)
    values.append(lo - np.log1p(-u) / lam)
    truth += ["none"] * (n // 3)
    values.append(np.full(50, np.nan))  # frames without an alpha energy
    truth += ["nan"] * 50
    return np.concatenate(values), np.array(truth, dtype=object)


def test_peak_positions_of_the_synthetic_truth_sit_in_their_windows():
    for p in DEFAULT_PEAKS:
        lo, hi = p.window
        assert lo + 0.04 < true_x0(p.energy_mev) < hi - 0.04, p.name


def test_spectrum_from_chunks_adds_up():
    energies, _ = synthetic_run(0)
    counts, edges = alpha_spectrum(energies)
    assert counts.size == 120 and edges[0] == 4.0 and edges[-1] == 8.2
    parts = [alpha_spectrum(chunk)[0] for chunk in np.array_split(energies, 7)]
    np.testing.assert_array_equal(np.sum(parts, axis=0), counts)
    inside = np.isfinite(energies) & (energies >= 4.0) & (energies <= 8.2)
    assert counts.sum() == inside.sum()


@pytest.fixture(scope="module")
def run():
    energies, truth = synthetic_run(1)
    counts, edges = alpha_spectrum(energies)
    fits = fit_peaks(counts, edges)
    cal = calibrate(fits)
    ranges = isotope_ranges(fits, cal)
    return energies, truth, fits, cal, ranges


def test_every_peak_is_fitted_and_calibrated_within_30_kev(run):
    _, _, fits, cal, _ = run
    assert all(f.success for f in fits.values()), {k: f.reason for k, f in fits.items()}
    assert fits["Po212"].fit.has_continuum and not fits["Th228"].fit.has_continuum
    assert cal.success and cal.order_used == 2 and len(cal.names) == 5
    for name, pf in fits.items():
        # Th228 and Ra224 overlap: each window holds some of the other peak, which
        # pulls x0 by up to ~0.01 SCA (the method's own bias, as in the reference)
        assert abs(pf.fit.x0 - true_x0(REF[name])) < 0.02, name
        assert abs(cal.energy(pf.fit.x0) - REF[name]) < 0.030, name
    # the calibration itself is the true relation, within the peaks' range
    x = np.linspace(4.4, 7.4, 31)
    assert np.max(np.abs(cal.energy(x) - true_energy(x))) < 0.030
    np.testing.assert_allclose(cal.derivative(5.0),
                               (cal.energy(5.0 + 1e-6) - cal.energy(5.0 - 1e-6)) / 2e-6,
                               rtol=1e-6)
    np.testing.assert_allclose(cal.residuals_quadratic,
                               np.array(cal.ref_energy_mev) - cal.energy(np.array(cal.x0)),
                               atol=1e-12)
    assert np.all(np.abs(cal.residuals_linear) > 0)  # the line cannot follow a parabola
    json.dumps(cal.to_dict())
    json.dumps({k: f.to_dict() for k, f in fits.items()})


def test_ranges_contain_their_peaks_and_the_overlap_is_cut_where_shapes_are_equal(run):
    _, _, fits, cal, ranges = run
    assert ranges.units == "MeV" and set(ranges.ranges) == set(REF)
    for name, r in ranges.ranges.items():
        assert r.lo < REF[name] < r.hi, name
        assert r.lo < r.centre_mev < r.hi
        pf = fits[name].fit
        assert r.sigma_mev == pytest.approx(abs(cal.derivative(pf.x0)) * pf.sigma)
    th, ra = ranges.ranges["Th228"], ranges.ranges["Ra224"]
    # the uncut ±2 sigma ranges overlap in this run
    assert th.centre_mev + 2 * th.sigma_mev > ra.centre_mev - 2 * ra.sigma_mev
    boundary = ranges.overlap_boundary_mev["Th228/Ra224"]
    assert th.centre_mev < boundary < ra.centre_mev
    shape_th = crystal_ball(boundary, th.centre_mev, th.sigma_mev, th.beta, th.m)
    shape_ra = crystal_ball(boundary, ra.centre_mev, ra.sigma_mev, ra.beta, ra.m)
    assert shape_th == pytest.approx(shape_ra, rel=1e-9) and 0 < shape_th < 1
    assert th.hi == boundary == ra.lo
    # a grid argmin of |difference| over ±0.5 MeV (the reference) finds a tail point
    grid = np.linspace(th.centre_mev - 0.5, ra.centre_mev + 0.5, 2001)
    diff = np.abs(th.shape(grid) - ra.shape(grid))
    assert not th.centre_mev < grid[np.argmin(diff)] < ra.centre_mev
    json.dumps(ranges.to_dict())


def test_tags_of_well_separated_frames_are_right(run):
    energies, truth, _, cal, ranges = run
    labels = tag(cal.energy(energies), ranges)
    assert labels.dtype == object and labels.shape == energies.shape
    assert np.all(labels[truth == "nan"] == UNTAGGED)
    true_ranges = {n: (REF[n] - 2 * s, REF[n] + 2 * s) for n, s in
                   ((n, abs(2 * TRUE_E[2] * true_x0(REF[n]) + TRUE_E[1]) * SIGMA[n])
                    for n in REF)}
    e_true = true_energy(energies)
    for name, (lo, hi) in true_ranges.items():
        others = [r for k, r in true_ranges.items() if k != name]
        separated = (truth == name) & (e_true >= lo) & (e_true <= hi)
        for olo, ohi in others:
            separated &= ~((e_true >= olo) & (e_true <= ohi))
        assert separated.sum() > 0.5 * N_PER_PEAK, name
        assert np.mean(labels[separated] == name) >= 0.97, name
    # untagged frames are kept and counted: frames outside every range
    assert 0 < np.sum(labels == UNTAGGED) < 0.5 * len(labels)


def test_tagging_needs_calibrated_energies_and_their_ranges(run):
    energies, truth, _, cal, ranges = run
    sca_labels = tag(energies, ranges)  # the reference's bug: SCA values vs MeV ranges
    assert np.mean(sca_labels[truth == "Po216"] == "Po216") < 0.05
    with pytest.raises(ConfigError):
        tag(cal.energy(energies), {"Th228": (5.3, 5.5)})
    assert tag(np.array([np.nan, 0.0, 100.0]), ranges).tolist() == [UNTAGGED] * 3


def test_a_missing_peak_fails_alone_with_a_reason():
    energies, _ = synthetic_run(2, missing=("Rn220",))
    lo, hi = DEFAULT_PEAKS[2].window
    empty = energies[~((energies >= lo - 0.02) & (energies <= hi + 0.02))]  # no entries
    for values, words in ((empty, "entries"), (energies, "")):  # then only neighbours' tails
        fits = fit_peaks(*alpha_spectrum(values))
        assert not fits["Rn220"].success and words in fits["Rn220"].reason
        assert fits["Rn220"].reason
        assert all(f.success for k, f in fits.items() if k != "Rn220")
        cal = calibrate(fits)
        assert cal.success and cal.order_used == 2 and "Rn220" in cal.excluded
        assert "Rn220" not in cal.names
        for name in ("Th228", "Ra224", "Po216", "Po212"):
            assert abs(cal.energy(fits[name].fit.x0) - REF[name]) < 0.030
        ranges = isotope_ranges(fits, cal)
        assert "Rn220" not in ranges.ranges and len(ranges.ranges) == 4


def test_calibration_orders_and_failures():
    energies, _ = synthetic_run(3, missing=("Rn220", "Po216"))
    fits = fit_peaks(*alpha_spectrum(energies))
    fits = {k: f for k, f in fits.items() if k not in ("Rn220", "Po216")}
    cal = calibrate(fits)  # three peaks: order 1 by default, 2 on request
    assert cal.success and cal.order_used == 1
    assert np.all(np.isfinite(cal.quadratic))
    assert calibrate(fits, order=2).order_used == 2
    np.testing.assert_allclose(calibrate(fits, order=2).residuals_quadratic, 0, atol=1e-9)
    one = {"Th228": fits["Th228"]}
    failed = calibrate(one)
    assert not failed.success and "needs" in failed.reason
    assert np.isnan(failed.energy(5.0))
    assert isotope_ranges(one, failed).ranges == {}
    with pytest.raises(ConfigError):
        calibrate(fits, order=3)


def test_peak_tables_are_validated():
    table = peak_table([("A", 5.0, (4.5, 5.5), 6.0), {"name": "B", "x0": 6.0,
                        "window": (5.6, 6.5), "energy_mev": 7.0, "continuum": True}])
    assert table[1].continuum and table[0].window == (4.5, 5.5)
    for bad in ([("A", 6.0, (4.5, 5.5), 6.0)], [("A", 5.0, (5.5, 4.5), 6.0)],
                [("A", 5.0, (4.5, 5.5), -1.0)], [("A", 5.0, (4.5, 5.5), 6.0)] * 2,
                [{"name": "A", "x0": 5.0}]):
        with pytest.raises(ConfigError):
            peak_table(bad)
    assert isinstance(DEFAULT_PEAKS[0], Peak) and len(DEFAULT_PEAKS) == 5


@pytest.mark.parametrize(("isotope", "kev"), [("Th228", 96.84), ("Ra224", 103.37),
                                               ("Rn220", 116.45), ("Po216", 127.89),
                                               ("Po212", 168.94)])
def test_recoil_energies_match_the_table(isotope, kev):
    assert recoil_energy_kev(isotope) == pytest.approx(kev, abs=0.01)


def test_recoil_energy_of_an_unknown_isotope_raises():
    with pytest.raises(ConfigError):
        recoil_energy_kev("U238")


def test_isotope_recombination_by_hand():
    xray = XrayCalibration(A_x_mean=2.0, sigma=0.3, ci95=0.1, N_e_exp=12300 / 22.0,
                           g_S2=2.0 / (12300 / 22.0), g_S2_err=0.1 / (12300 / 22.0),
                           success=True, reason="")
    a_ion, a_ion_err = np.array([1.0, 1.5]), np.array([0.05, 0.08])
    rec = isotope_recombination(a_ion, a_ion_err, xray, "Ra224")
    n_exp = 5788.87 * 4 / 224 * 1000 / 22.0
    n_meas = a_ion / (2.0 / (12300 / 22.0))
    np.testing.assert_allclose(rec.N_exp, n_exp)
    np.testing.assert_allclose(rec.r, 1 - n_meas / n_exp)
    np.testing.assert_allclose(rec.r_err_ion, a_ion_err / 2.0 * (12300 / 22.0) / n_exp)
    np.testing.assert_allclose(rec.r_err, np.hypot(rec.r_err_ion, n_meas * 0.05 / n_exp))
