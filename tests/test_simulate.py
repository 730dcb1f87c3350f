"""The run simulator: files the reader reads back, waveforms that agree with the truth.

Every estimate here is plain numpy on the written (or in-memory) codes, compared with the
truth the simulator records; tolerances are stated with their reason next to each assert.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from ratag_xr.errors import ConfigError, RunLayoutError
from ratag_xr.io.wfm import read_wfm
from ratag_xr.physics.transport import set_transport
from ratag_xr.simulate import (
    KINDS,
    FileSimulation,
    SimConfig,
    simulate_file_frames,
    simulate_run,
)

# A small run: two sets far apart in field, 2 files x 100 frames each (default format,
# 2 GS/s int8, -3..30 µs: 26 MB in total).
SMALL = SimConfig(sets=((100, 1600), (500, 2000)), files_per_set=2, frames_per_file=100, seed=7)
N_PEDESTAL = 2000


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return simulate_run(tmp_path_factory.mktemp("sim"), SMALL)


@pytest.fixture(scope="module")
def truth(run_dir):
    return json.loads((run_dir / "truth.json").read_text())


@pytest.fixture(scope="module")
def frames_truth(run_dir):
    with np.load(run_dir / "truth_frames.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def moving_average(x: np.ndarray, w: int = 9) -> np.ndarray:
    """np.convolve(row, ones(w)/w, mode="same") of every row (zero-padded, odd w)."""
    h = w // 2
    padded = np.pad(x, ((0, 0), (h + 1, h)))
    c = np.cumsum(padded, axis=1, dtype=np.float64)
    return ((c[:, w:] - c[:, :-w]) / w).astype(x.dtype)


def set_millivolts(run_dir, name):
    """Pedestal-subtracted, polarity-flipped mV of every frame of a set, and the time (µs)."""
    files = sorted((run_dir / name).glob("*.wfm"))
    mv, time = [], None
    for path in files:
        w = read_wfm(path)
        mv.append(-(w.frames().astype(np.float32) * w.y_scale + w.y_offset) * 1e3)
        time, dt = w.time * 1e6, w.x_spacing * 1e6
        w.close()
    mv = np.concatenate(mv)
    mv -= mv[:, :N_PEDESTAL].mean(axis=1, keepdims=True)
    return mv, time, dt


def test_moving_average_matches_numpy_convolve():
    x = np.random.default_rng(0).normal(size=(3, 50)).astype(np.float32)
    expected = np.array([np.convolve(r, np.ones(9) / 9, mode="same") for r in x])
    np.testing.assert_allclose(moving_average(x), expected, atol=1e-5)


# -- files, header, layout --------------------------------------------------------------------


def test_file_reads_back_as_simulated(run_dir, truth):
    set_name = truth["sets"][1]["name"]
    path = run_dir / set_name / truth["sets"][1]["files"][1]
    expected, events = simulate_file_frames(SMALL, set_index=1, file_index=1)
    w = read_wfm(path)
    assert w.n_frames == SMALL.frames_per_file and w.n_samples == 66_000  # 33 µs at 2 GS/s
    assert w.raw_dtype == np.int8
    np.testing.assert_array_equal(w.frames(), expected)
    # header scaling from the config: 5 mV/div over 25 levels/div; 0.5 ns; -3 µs
    assert w.y_scale == pytest.approx(0.2e-3, rel=1e-12)
    assert w.y_offset == 0.0
    assert w.x_spacing == pytest.approx(0.5e-9, rel=1e-12)
    assert w.x_start == pytest.approx(-3e-6, rel=1e-12)
    np.testing.assert_array_equal(w.gmt_sec, events.gmt_sec)
    np.testing.assert_allclose(w.gmt_frac, events.gmt_frac, rtol=0, atol=1e-12)
    np.testing.assert_allclose(w.tt_offsets, events.tt_offsets, rtol=0, atol=1e-12)
    # triggers are after this file's start (set 1, file 1 -> third file of the run, 120 s
    # apart) and increase within the file
    t = w.gmt_sec + w.gmt_frac
    assert np.all(np.diff(t) > 0)
    assert t[0] > SMALL.start_epoch + 3 * SMALL.file_interval_s
    w.close()


def test_layout_and_names_parse(run_dir, truth):
    sets = sorted(p.name for p in run_dir.iterdir() if p.is_dir())
    assert sets == ["FieldScan_Gate100_Anode1600", "FieldScan_Gate500_Anode2000"]
    for entry in truth["sets"]:
        folder = run_dir / entry["name"]
        assert int(re.search(r"Gate(\d+)", folder.name).group(1)) == entry["v_gate"]
        assert int(re.search(r"Anode(\d+)", folder.name).group(1)) == entry["v_anode"]
        names = sorted(p.name for p in folder.glob("*.wfm"))
        assert names == entry["files"]  # truth lists files in the analysis' (lexical) order
        for k, name in enumerate(names):
            assert re.search(r"RUN(\d+)", name).group(1) == "1"
            assert re.search(r"_(\d{6,8})_", name).group(1) == "20260312"
            assert re.search(r"P(\d+)", name).group(1) == "3"
            m = re.search(r"_(\d+)(_ch(\d+))?\.wfm$", name)
            assert int(m.group(1)) == k and m.group(2) is None
            assert f"Gate{entry['v_gate']:.0f}_Anode{entry['v_anode']:.0f}" in name
    assert (run_dir / "truth.json").is_file() and (run_dir / "truth_frames.npz").is_file()


def test_existing_run_dir_is_not_overwritten_silently(run_dir):
    with pytest.raises(RunLayoutError):
        simulate_run(run_dir.parent, SMALL)


def test_config_is_validated():
    with pytest.raises(ConfigError, match="dtype"):
        SimConfig(dtype="float32")
    with pytest.raises(ConfigError, match="s1_time_us"):  # inside the 2000-sample pedestal
        SimConfig(s1_time_us=-2.5)
    with pytest.raises(ConfigError, match="unknown"):
        SimConfig().replace(no_such_parameter=1)


# -- determinism ------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, run_dir, truth):
    cfg = SMALL.replace(sets=((500, 2000),), files_per_set=1, frames_per_file=20)
    calls = []
    a = simulate_run(tmp_path / "a", cfg, progress=lambda done, total: calls.append(done))
    assert calls[-1] == 20 and calls == sorted(calls)  # frames done, monotonic, to the end
    b = simulate_run(tmp_path / "b", cfg)
    c = simulate_run(tmp_path / "c", cfg.replace(seed=8))
    rel = sorted(p.relative_to(a) for p in a.rglob("*.wfm"))
    assert len(rel) == 1
    assert (a / rel[0]).read_bytes() == (b / rel[0]).read_bytes()
    assert (a / "truth.json").read_bytes() == (b / "truth.json").read_bytes()
    assert (a / rel[0]).read_bytes() != (c / rel[0]).read_bytes()
    # a file's frames do not depend on the block size used to render them
    sim = FileSimulation(cfg, 0, 0)
    ref = np.concatenate(list(FileSimulation(cfg, 0, 0).blocks(32)))
    np.testing.assert_array_equal(np.concatenate(list(sim.blocks(7))), ref)


# -- truth bookkeeping ------------------------------------------------------------------------


def test_truth_model_values_follow_the_documented_laws(truth, frames_truth):
    assert truth["seed"] == 7 and truth["config"]["seed"] == 7
    assert truth["N_e_exp"] == pytest.approx(12300 / 22)
    assert truth["g_s2_constant_across_sets"] is True  # anode - gate = 1500 V in both sets
    assert truth["xray_area_mean"] == pytest.approx(12300 / 22 * truth["g_s2"])
    for i, s in enumerate(truth["sets"]):
        tr = set_transport(s["v_gate"], s["v_anode"], pressure_bar=2.0, temperature_k=293.0,
                           drift_gap_cm=1.4, el_gap_cm=0.8)
        assert s["time_drift"] == pytest.approx(tr["time_drift"])
        assert s["t_s2_start"] == pytest.approx(-1.5 + tr["time_drift"])
        sigma_t2 = 0.3 + 2 * 0.05 * tr["time_drift"] / tr["speed_drift"] ** 2
        assert s["sigma_t"] == pytest.approx(math.sqrt(sigma_t2))
        r = 0.95 / (1 + tr["drift_field"] / 250.0)
        assert s["recombination"] == pytest.approx(r)
        assert s["ion_area_mean"] == pytest.approx(12300 / 22 * (1 - r) * truth["g_s2"])
        sel = frames_truth["set_index"] == i
        assert s["n_frames"] == sel.sum() == 200
        assert s["n_xray_frames"] == frames_truth["xray"][sel].sum()
        # frames are stored in file, then frame order
        order = frames_truth["file_index"][sel] * 1000 + frames_truth["frame_index"][sel]
        assert np.all(np.diff(order) > 0)


def test_xray_fraction_and_duration_spread_of_the_draws(truth, frames_truth):
    n = frames_truth["xray"].size
    frac = frames_truth["xray"].mean()
    # binomial: 4 standard errors (sqrt(p(1-p)/n) = 0.02 for p = 0.2, n = 400)
    p = SMALL.xray_fraction
    assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n)
    for i, s in enumerate(truth["sets"]):
        sel = (frames_truth["set_index"] == i) & (frames_truth["kind"] == KINDS.index("normal"))
        d = (frames_truth["ion_end"] - frames_truth["ion_start"])[sel]
        # std of a sample std: sigma / sqrt(2 (N - 1)) ~ 5 % for N ~ 190; allow 4 of them
        assert np.std(d) == pytest.approx(s["sigma_t"], rel=4 / math.sqrt(2 * (d.size - 1)))


# -- waveforms against the truth --------------------------------------------------------------


def test_s1_peak_of_mean_waveform_is_at_t_s1():
    # 2000 frames of the default S1 (0.3 photoelectrons per frame) on a short record
    cfg = SMALL.replace(frames_per_file=2000, record_end_us=1.0, xray_fraction=0.0)
    raw, events = simulate_file_frames(cfg, 1, 0)
    mv = -(raw.astype(np.float32) * cfg.y_scale_mv)
    mv -= mv[:, :N_PEDESTAL].mean(axis=1, keepdims=True)
    time = cfg.record_start_us + np.arange(cfg.n_samples) * cfg.x_spacing_us
    mean = moving_average(mv.mean(axis=0, keepdims=True))[0]
    search = (time > time[N_PEDESTAL]) & (time < 0)
    peak = np.flatnonzero(search)[np.argmax(mean[search])]
    # centroid within +-2 sigma of the average S1 shape (sqrt(2^2 + 5^2) ns = 10.8 samples)
    k = np.arange(peak - 22, peak + 23)
    centroid = np.sum(k * mean[k]) / np.sum(mean[k])
    expected = (cfg.s1_time_us - cfg.record_start_us) / cfg.x_spacing_us
    # ~600 photoelectrons: statistical error 10.8 / sqrt(600) = 0.44 samples; 2 samples
    # ~ 4.5 sigma, i.e. "within a couple of samples"
    assert abs(centroid - expected) < 2.0
    assert abs(peak - expected) < 5  # the raw argmax, on a curve 10.8 samples wide
    # ... and yet mostly below threshold in single frames: at most one frame in two has a
    # smoothed S1 sample above 0.8 mV (Poisson: P(>= 1 pe) = 1 - exp(-0.3) = 0.26)
    window = np.abs(time - cfg.s1_time_us) < 0.03
    above = (moving_average(mv[:, window]) > 0.8).any(axis=1)
    assert above.mean() < 0.5
    assert above.mean() == pytest.approx(np.mean(events.s1_n_pe > 0), abs=0.03)


@pytest.mark.parametrize("set_index", [0, 1])
def test_s2_start_duration_and_area_match_truth(run_dir, truth, frames_truth, set_index):
    s = truth["sets"][set_index]
    mv, time, dt = set_millivolts(run_dir, s["name"])
    ft = {k: v[frames_truth["set_index"] == set_index] for k, v in frames_truth.items()
          if v.shape == frames_truth["set_index"].shape}

    # S2 start: first crossing of 0.4 mV after t_s1 + 0.75 time_drift of the smoothed frame
    smooth = moving_average(mv)
    smooth[smooth < 0.02] = 0
    above = (smooth > 0.4) & (time > s["t_s1"] + 0.75 * s["time_drift"])
    has = above.any(axis=1)
    first = np.where(has, time[np.argmax(above, axis=1)], np.nan)
    last = np.where(has, time[time.size - 1 - np.argmax(above[:, ::-1], axis=1)], np.nan)
    # the emission starts at t_s1 + time_drift (jitter 0.1 µs); the first photoelectron comes
    # a mean gap D / n_pe later (10 µs / 60..140 pe = 0.07..0.17 µs): 0.3 µs covers both
    assert np.nanmedian(first) == pytest.approx(s["t_s2_start"], abs=0.3)

    # frames with only the ion S2 after the S1 (no X-ray, no junk, no dark count)
    clean = (ft["kind"] == 0) & ~ft["xray"] & (ft["n_dark"] == 0)
    assert clean.sum() > 100
    # a smoothed SPE (sigma 2 ns, peak ~3.6 mV) crosses 0.4 mV ~5 ns before its centre
    np.testing.assert_allclose(first[clean], ft["ion_first_pe"][clean], atol=0.010)
    np.testing.assert_allclose(last[clean], ft["ion_last_pe"][clean], atol=0.010)
    # the duration spread of clean frames is sigma_t: std error sigma/sqrt(2N) ~ 6 % plus
    # the photoelectron gaps at both ends (~0.1 µs); 4 standard errors
    duration = (last - first)[clean]
    n = duration.size
    assert np.std(duration) == pytest.approx(s["sigma_t"], rel=4 / math.sqrt(2 * (n - 1)))

    # ion area: trapezoid of pedestal-subtracted mV over each frame's true emission interval
    # +- 20 ns (10 SPE sigmas), no smoothing, no clipping
    areas = np.array([
        np.trapezoid(mv[i, (time >= ft["ion_start"][i] - 0.02) & (time <= ft["ion_end"][i] + 0.02)],
                     dx=dt)
        for i in np.flatnonzero(clean)
    ])
    true = ft["ion_area"][clean]
    # per frame the noise adds 0.2 mV x 0.5 ns x sqrt(20 000 samples) = 0.014 mV·µs and the
    # pedestal error 0.2 mV / sqrt(2000) x 10 µs = 0.045 mV·µs: the mean of >100 frames
    # agrees with the drawn areas to ~0.005 mV·µs; allow 1 % (>= 0.013 mV·µs)
    assert areas.mean() == pytest.approx(true.mean(), rel=0.01)
    # and the drawn areas scatter around the model mean: 4 standard errors of the mean
    assert areas.mean() == pytest.approx(
        s["ion_area_mean"], abs=4 * s["ion_area_std"] / math.sqrt(areas.size)
    )


def test_xray_frames_show_an_s2_in_the_drift_region(run_dir, truth, frames_truth):
    s = truth["sets"][0]  # longest drift: most X-rays end well before the ion S2
    mv, time, _ = set_millivolts(run_dir, s["name"])
    ft = {k: v[frames_truth["set_index"] == 0] for k, v in frames_truth.items()
          if v.shape == frames_truth["set_index"].shape}
    # light between S1 (+50 ns = 10 S1 sigmas) and the earliest ion S2 start (-0.5 µs)
    w_start, w_end = s["t_s1"] + 0.05, s["t_s2_start"] - 0.5
    window = (time > w_start) & (time < w_end)
    n_above = (moving_average(mv[:, window]) > 0.8).sum(axis=1)
    # an X-ray gives ~250 photoelectrons in 4.4 µs, each ~12 samples above 0.8 mV; a stray
    # photoelectron (dark count, S1 tail) ~12 samples: 200 samples separates the two
    seen = n_above > 200

    def overlap(start, stop):
        return np.clip(np.minimum(stop, w_end) - np.maximum(start, w_start), 0, None)

    # truth: X-ray (or pile-up S2) light overlapping the window by > 0.5 µs (>= ~25 pe) is
    # seen; light that does not reach the window even with 4 diffusion sigmas is not;
    # anything between is ambiguous and not compared
    xray, sigma = ft["xray"], np.nan_to_num(ft["xray_sigma"])
    ov = np.where(xray, overlap(ft["xray_start"], ft["xray_end"]), 0)
    reach = np.where(xray, overlap(ft["xray_start"] - 4 * sigma, ft["xray_end"] + 4 * sigma), 0)
    pile = ft["kind"] == KINDS.index("pileup")
    pile_ov = np.where(pile, overlap(ft["pileup_start"], ft["pileup_start"] + 5), 0)
    sat = ft["kind"] == KINDS.index("saturation")
    sat_in = sat & (ft["saturation_time"] > w_start) & (ft["saturation_time"] < w_end)
    ov = np.maximum(ov, np.maximum(pile_ov, np.where(sat_in, 1.0, 0.0)))
    reach = np.maximum(reach, ov)
    expected = ov > 0.5
    compared = (reach == 0) | expected
    assert expected.sum() > 20 and compared.sum() > 180
    np.testing.assert_array_equal(seen[compared], expected[compared])


# -- two-channel runs (ALGORITHMS.md §11-§13) --------------------------------------------------

TINY = SimConfig(sets=((100, 1600), (500, 2000)), files_per_set=2, frames_per_file=6, seed=3,
                 record_end_us=12.0)


def _digest(paths) -> str:
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_single_channel_run_is_byte_identical_to_before(tmp_path):
    """The digest of this tiny run's files was taken before the alpha channel existed."""
    run = simulate_run(tmp_path, TINY)
    assert _digest(run.rglob("*.wfm")) == "1bbfe1fe04148d599cac12bf3c02ab4c"
    with np.load(run / "truth_frames.npz") as f:
        assert not any(k.startswith("alpha") for k in f.files)
    assert "alpha" not in json.loads((run / "truth.json").read_text())


@pytest.mark.parametrize(("naming", "pmt", "folder"), [
    ("old", "RUN1_20260312_Gate100_Anode1600_P3_{n}Wfm_Ch{c}.wfm", "FieldScan_Gate100_Anode1600"),
    ("new", "RUN1_20260312_Gate0100_Anode1600_Batch{n:03d}__CH{c}.wfm",
     "FieldScan_Gate0100_Anode1600")])
def test_alpha_twins_in_both_naming_styles(tmp_path, naming, pmt, folder):
    cfg = TINY.replace(alpha=True, naming=naming, files_per_set=11, sets=((100, 1600),))
    run = simulate_run(tmp_path, cfg)
    pmt_channel = 1 if naming == "old" else 3
    names = sorted(p.name for p in (run / folder).glob("*.wfm"))
    assert names == sorted(pmt.format(n=n, c=c) for n in range(1, 12) for c in (pmt_channel, 4))
    truth = json.loads((run / "truth.json").read_text())
    entry = truth["sets"][0]
    assert entry["files"] == [pmt.format(n=n, c=pmt_channel) for n in range(1, 12)]  # natural
    assert entry["alpha_files"] == [pmt.format(n=n, c=4) for n in range(1, 12)]
    assert truth["alpha"]["channels"] == {"pmt": pmt_channel, "alpha": 4}
    for n in (1, 10):
        with read_wfm(run / folder / pmt.format(n=n, c=pmt_channel)) as p, \
                read_wfm(run / folder / pmt.format(n=n, c=4)) as a:
            assert a.n_frames == p.n_frames and a.n_samples < p.n_samples  # shorter record
            np.testing.assert_array_equal(a.gmt_sec, p.gmt_sec)  # the same triggers
            np.testing.assert_array_equal(a.gmt_frac, p.gmt_frac)
    # the PMT frames do not depend on the alpha channel
    plain = simulate_file_frames(TINY.replace(files_per_set=11, sets=((100, 1600),)),
                                 file_index=9)[0]
    with read_wfm(run / folder / pmt.format(n=10, c=pmt_channel)) as p:
        np.testing.assert_array_equal(p.frames(), plain)


def test_alpha_pulse_heights_follow_the_th228_chain():
    """§12's estimator on the simulated alpha frames lands on the truth's SCA value, the
    peaks near the §13 table, with the chain's isotope fractions."""
    from scipy.signal import savgol_filter

    from ratag_xr.simulate import ISOTOPES, simulate_alpha_frames
    from ratag_xr.simulate.alpha import (
        REFERENCE_MEV,
        SCA_PEAKS,
        alpha_truth,
        alpha_y_scale_v,
        isotope_fractions,
        sca_of_energy,
    )

    cfg = SimConfig(frames_per_file=400, seed=11, alpha=True)
    codes, ev = simulate_alpha_frames(cfg)
    volts = codes * alpha_y_scale_v(cfg) + cfg.alpha_y_offset_v
    sca = []
    for row in volts:  # ALGORITHMS.md §12, plainly
        low = row[row < 0.3]
        base = low.mean() if low.size >= 10 else np.median(row[:200])
        sca.append(savgol_filter(row - base, 501, 3).max() / 1.058)
    sca = np.asarray(sca)
    has = ev.isotope >= 0
    # digitisation (0.08 V codes) and noise move a reading by well under the resolution
    assert np.abs(sca[has] - ev.sca[has]).max() < 0.1
    assert np.all(sca[~has] < 0.5) and 0.005 < (~has).mean() < 0.08  # baseline only
    np.testing.assert_allclose(sca_of_energy(REFERENCE_MEV), SCA_PEAKS, atol=0.04)
    counts = np.bincount(ev.isotope[has], minlength=len(ISOTOPES)) / has.sum()
    np.testing.assert_allclose(counts, isotope_fractions(), atol=0.06)
    for i, peak in enumerate(sca_of_energy(REFERENCE_MEV)):  # medians sit at the peaks
        assert abs(np.median(sca[ev.isotope == i]) - peak) < 0.1
    # the low-energy tail: more readings far below a peak than above it (0.25 SCA MeV is
    # 3.3 sigma of the resolution)
    dev = sca[has] - sca_of_energy(np.asarray(REFERENCE_MEV)[ev.isotope[has]])
    assert (dev < -0.25).sum() > 3 * max(1, (dev > 0.25).sum())
    # and the readings are the truth's, the §12 baseline's share of the tail included
    assert abs(np.median(sca[has] - ev.sca[has])) < 0.01
    truth = alpha_truth(cfg)
    assert truth["isotopes"] == list(ISOTOPES) and truth["fractions"][4] == pytest.approx(
        0.64 / 4.64)


def test_alpha_needs_channel_tags():
    with pytest.raises(ConfigError, match="naming 'old' or 'new'"):
        SimConfig(alpha=True, naming="plain")
    with pytest.raises(ConfigError, match="naming must be"):
        SimConfig(naming="fancy")
