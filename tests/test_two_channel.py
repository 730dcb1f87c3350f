"""Two-channel runs in the store (ALGORITHMS.md §2, §11): twins of both DAQs paired in
natural order, each channel its own waveform and scaling, missing and disagreeing twins,
files with their own vertical scale, alpha monitor folders, incremental ingest with
unpadded names, kill -9 and resume."""

from __future__ import annotations

import shutil
import signal
import subprocess

import numpy as np
import pytest
import xarray as xr

from ratag_xr.config import Config
from ratag_xr.driver import compute_features
from ratag_xr.errors import IngestOrderError
from ratag_xr.io.wfm import read_wfm
from ratag_xr.io.wfm_writer import write_wfm
from ratag_xr.store import (
    alpha_nodes,
    ingest,
    open_run,
    open_set,
    run_nodes,
    store_state,
)
from ratag_xr.store.layout import manifest_path
from ratag_xr.store.manifest import Manifest
from tests.test_store_resume import _ingest_cmd, _kill_after
from tests.twins import STYLES, name, set_folder, volts, write_twins

SMALL = {"chunk_mb": 0.02}  # 3 frames of 3000 int16 samples per chunk
CHANNELS = {"old": {"pmt": 1, "alpha": 4}, "new": {"pmt": 3, "alpha": 4}}


def config(style: str = "old", **run) -> Config:
    return Config({"run": {"channels": CHANNELS[style], **run}, "ingest": SMALL})


def check_set(store, set_name, twins: dict, *, alpha_missing=()):
    """Values through open_set equal the reader's frames, both channels, natural order."""
    ds = open_set(store, set_name)
    raw = open_set(store, set_name, raw=True)
    numbers = sorted(twins)
    n_frames = twins[numbers[0]].pmt_raw.shape[0]
    assert ds.sizes["frame"] == n_frames * len(numbers) == int(ds.n_frames)
    for k, n in enumerate(numbers):
        rows = slice(k * n_frames, (k + 1) * n_frames)
        t = twins[n]
        assert list(ds.file.values[rows]) == [t.pmt.name] * n_frames
        assert list(ds.frame_in_file.values[rows]) == list(range(n_frames))
        np.testing.assert_allclose(ds.waveform.values[rows], -1000.0 * volts(t.pmt),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(raw.waveform.values[rows], t.pmt_raw)
        if n in alpha_missing:
            assert not ds.alpha_valid.values[rows].any()
            assert np.isnan(ds.alpha_waveform.values[rows]).all()
            continue
        assert ds.alpha_valid.values[rows].all()
        assert list(ds.alpha_file.values[rows]) == [t.alpha.name] * n_frames
        assert set(ds.twin_key.values[rows]) == {t.pmt.name.rsplit("_", 1)[0].rstrip("_")}
        np.testing.assert_allclose(ds.alpha_waveform.values[rows], volts(t.alpha),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(raw.alpha_waveform.values[rows], t.alpha_raw)
    return ds


@pytest.mark.parametrize("style", ["old", "new"])
def test_twins_pair_in_natural_order_and_read_back(tmp_path, client, style):
    run = tmp_path / "run"
    written = {(200, 1700): write_twins(run, style, 200, 1700, range(1, 12), seed=1),
               (300, 1800): write_twins(run, style, 300, 1800, range(1, 4), seed=2)}
    summary = ingest(run, tmp_path / "w.zarr", config=config(style), client=client,
                     progress=False)
    assert summary.files_written == 28 and summary.frames_ok == 14 * 6 and not summary.twins
    assert summary.alpha_files_ok == 14 and not summary.bad
    tree = open_run(tmp_path / "w.zarr")
    assert list(tree.children) == ["axis0"]  # one node: both sets on the same two axes
    node = tree["axis0"].to_dataset()
    assert node.waveform.dims == ("set", "frame", "time")
    assert node.alpha_waveform.dims == ("set", "frame", "alpha_time")
    assert node.sizes["alpha_time"] == 800 < node.sizes["time"] == 3000
    # both channels chunked alike along frame: one task reads both channels of its frames
    assert node.waveform.data.chunks[:2] == node.alpha_waveform.data.chunks[:2]
    assert node.alpha_time.attrs["units"] == "µs" and node.alpha_waveform.attrs["units"] == "V"
    for (gate, anode), twins in written.items():
        check_set(tmp_path / "w.zarr", set_folder(style, gate, anode), twins)
    # selectable by set and frame, lazily
    pick = tree["axis0"].to_dataset().sel(set=set_folder(style, 200, 1700), frame=[0, 60])
    assert pick.alpha_waveform.shape == (2, 800)
    assert list(pick.file.values) == [name(style, 200, 1700, 1, "pmt"),
                                      name(style, 200, 1700, 11, "pmt")]


def test_missing_and_disagreeing_twins_are_reported_pmt_kept(tmp_path, client, capsys):
    run = tmp_path / "run"
    twins = write_twins(run, "old", 200, 1700, range(1, 8), seed=3)
    folder = run / set_folder("old", 200, 1700)
    twins[3].alpha.unlink()  # missing
    short = write_twins(tmp_path / "other", "old", 200, 1700, [5], n_frames=5, seed=4)[5]
    shutil.copy(short.alpha, twins[5].alpha)  # 5 frames against 6
    with read_wfm(twins[7].pmt) as w:  # trigger stamps 5 µs off
        write_wfm(twins[7].alpha, twins[7].alpha_raw, y_scale=0.04, y_offset=0.1,
                  x_spacing=2e-10, x_start=-1e-8, gmt_sec=w.gmt_sec,
                  gmt_frac=np.clip(w.gmt_frac + 5e-6, 0, 0.999999))
    orphan = folder / name("old", 200, 1700, 9, "alpha")
    shutil.copy(twins[1].alpha, orphan)  # an alpha file without its PMT file
    store = tmp_path / "w.zarr"
    summary = ingest(run, store, config=config(), client=client, progress=False)
    err = capsys.readouterr().err
    problems = {t["file"]: t for t in summary.twins}
    assert set(problems) == {twins[3].alpha.name, twins[5].alpha.name, twins[7].alpha.name,
                             orphan.name}
    assert problems[twins[3].alpha.name]["status"] == "missing"
    assert "6" in problems[twins[5].alpha.name]["reason"]
    assert "trigger time stamps disagree" in problems[twins[7].alpha.name]["reason"]
    assert problems[orphan.name]["status"] == "orphan"
    for t in (twins[3], twins[5], twins[7]):
        assert t.alpha.name in err  # said on screen
    assert "twin problem" in err and "twin problem" in str(summary)
    statuses = {e["file"]: e["status"] for e in Manifest.load(manifest_path(store))
                .entries.values()}
    assert statuses[twins[3].alpha.name] == "missing"
    assert statuses[twins[5].alpha.name] == statuses[twins[7].alpha.name] == "bad"
    # every PMT frame is kept, the alpha values of the three files are NaN
    check_set(store, set_folder("old", 200, 1700), twins, alpha_missing={3, 5, 7})
    # the missing twin arrives: added into its PMT file's slots, nothing else rewritten
    # (the same seed writes the same first three twins again)
    shutil.copy(write_twins(tmp_path / "again", "old", 200, 1700, range(1, 4), seed=3)[3].alpha,
                twins[3].alpha)
    again = ingest(run, store, config=config(), client=client, progress=False)
    assert again.files_written == 1 and again.frames_written == 0
    check_set(store, set_folder("old", 200, 1700), twins, alpha_missing={5, 7})


def test_files_with_their_own_vertical_scale_keep_every_frame(tmp_path, client):
    run = tmp_path / "run"
    scales = {2: ((3e-4, 0.02), (0.08, -0.2)), 3: ((1e-4, 0.05), (0.04, 0.1))}
    twins = write_twins(run, "old", 200, 1700, range(1, 4), seed=5, scales=scales)
    store = tmp_path / "w.zarr"
    summary = ingest(run, store, config=config(), client=client, progress=False)
    assert not summary.bad and not summary.twins and summary.files_ok == 6
    ds = check_set(store, set_folder("old", 200, 1700), twins)
    assert np.unique(ds.code_scale.values).size == 2
    assert np.unique(ds.alpha_code_offset.values).size == 2
    raw = run_nodes(store, raw=True)["axis0"]
    assert "scale_factor" not in raw.waveform.attrs
    assert raw.waveform.attrs["scale_coord"] == "code_scale"
    # the kernels get each frame's own scale: equal to the one-scale path file by file
    params = {"n_pedestal": 100, "ma_window": 9, "bs_threshold": 0.8, "s2_window_start": 0.0,
              "s2_window_end": 0.2}
    got = compute_features(raw.waveform, params, "pass2").compute(scheduler="synchronous")
    for n in (1, 2, 3):
        frames = np.flatnonzero(raw.file.values[0] == twins[n].pmt.name)
        part = raw.waveform.isel(frame=frames)
        part = part.drop_vars(["code_scale", "code_offset"]).assign_attrs(
            scale_factor=float(raw.code_scale.values[0, frames[0]]),
            add_offset=float(raw.code_offset.values[0, frames[0]]))
        want = compute_features(part, params, "pass2").compute(scheduler="synchronous")
        np.testing.assert_array_equal(got.s2_area.values[0, frames], want.s2_area.values[0])
        assert np.isfinite(want.s2_area.values).all()
    # the S1 estimate's chunk means take each chunk's own scale (a chunk is one file)
    from ratag_xr.pipeline.frames import analysis_nodes
    from ratag_xr.stages.prepare import s1_batch_means

    (means, _), = s1_batch_means(analysis_nodes(store), 6, 100, None).values()
    chunk = int(raw.attrs["frames_per_chunk"])
    for c in range(6):
        mv = ds.waveform.values[c * chunk:(c + 1) * chunk].mean(axis=0)
        np.testing.assert_allclose(means[c], mv - mv[:100].mean(), rtol=1e-9, atol=1e-9)


def test_alpha_monitor_folders_are_alpha_only_nodes(tmp_path, client):
    run = tmp_path / "run"
    twins = write_twins(run, "old", 200, 1700, range(1, 3), seed=6)
    monitor = write_twins(tmp_path / "m", "old", 200, 1700, range(1, 4), seed=7,
                          alpha_samples=600)
    (run / "Ch4_noSCA").mkdir()
    for t in monitor.values():
        shutil.copy(t.alpha, run / "Ch4_noSCA" / t.alpha.name)
    store = tmp_path / "w.zarr"
    summary = ingest(run, store, config=config(), client=client, progress=False)
    assert summary.files_ok == 7 and summary.frames_ok == 2 * 6 + 3 * 6
    state = store_state(store)
    assert set(state["monitors"]) == {"Ch4_noSCA"} and "Ch4_noSCA" not in state["sets"]
    ds = open_set(store, "Ch4_noSCA")
    assert "waveform" not in ds and ds.sizes["frame"] == 18
    for k, n in enumerate(sorted(monitor)):
        rows = slice(6 * k, 6 * k + 6)
        np.testing.assert_allclose(ds.alpha_waveform.values[rows], volts(monitor[n].alpha),
                                   rtol=1e-12, atol=1e-12)
        assert list(ds.file.values[rows]) == [monitor[n].alpha.name] * 6
    assert np.isnan(float(ds.drift_field))
    assert set(run_nodes(store)) == {state["sets"][set_folder("old", 200, 1700)]["node"]}
    assert set(alpha_nodes(store)) == {state["sets"][set_folder("old", 200, 1700)]["node"],
                                       state["monitors"]["Ch4_noSCA"]["node"]}
    check_set(store, set_folder("old", 200, 1700), twins)


def _move(run, twins, numbers, dest):
    dest.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        for path in (twins[n].pmt, twins[n].alpha):
            shutil.move(path, dest / path.name)


def _back(run, twins, numbers, dest):
    for n in numbers:
        for path in (twins[n].pmt, twins[n].alpha):
            shutil.move(dest / path.name, path)


def assert_same_store(a, b):
    got, want = open_run(a), open_run(b)
    assert set(got.children) == set(want.children)
    for node in want.children:
        xr.testing.assert_identical(got[node].to_dataset().load(),
                                    want[node].to_dataset().load())


def test_unpadded_names_append_in_natural_order(tmp_path, client):
    run = tmp_path / "run"
    twins = write_twins(run, "old", 200, 1700, range(1, 12), seed=8)
    _move(run, twins, (10, 11), tmp_path / "later")
    first = ingest(run, tmp_path / "inc.zarr", config=config(), client=client, progress=False)
    assert first.files_written == 18
    _back(run, twins, (10, 11), tmp_path / "later")
    second = ingest(run, tmp_path / "inc.zarr", config=config(), client=client, progress=False)
    assert second.files_written == 4 and second.frames_written == 12  # _10 after _9: appended
    ingest(run, tmp_path / "fresh.zarr", config=config(), client=client, progress=False)
    assert_same_store(tmp_path / "inc.zarr", tmp_path / "fresh.zarr")
    check_set(tmp_path / "inc.zarr", set_folder("old", 200, 1700), twins)
    # a new file sorting before the ingested ones still needs a rebuild
    write_twins(run, "old", 200, 1700, [0], seed=9)
    with pytest.raises(IngestOrderError, match=r"_P2_0Wfm_Ch1.wfm.*--rebuild"):
        ingest(run, tmp_path / "inc.zarr", config=config(), client=client, progress=False)


def _lines(path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def test_kill_and_resume_two_channels_equal_uninterrupted(tmp_path, client):
    run = tmp_path / "run"
    sets = [write_twins(run, "old", g, g + 1500, range(1, 12), seed=g, n_frames=40,
                        pmt_samples=20000, alpha_samples=8000) for g in (200, 300)]
    late = tmp_path / "later"
    for i, twins in enumerate(sets):
        _move(run, twins, (10, 11), late / str(i))
    reference = tmp_path / "reference.zarr"
    store = tmp_path / "killed.zarr"
    manifest = manifest_path(store)
    rng = np.random.default_rng(15)
    # files 1-9 of both channels (36 files, a planned and an ok line each): kill while
    # planning and while copying, then resume
    for k in (5, int(rng.integers(37, 72))):
        assert _kill_after(_ingest_cmd(run, store), manifest, k) == -signal.SIGKILL
    done = subprocess.run(_ingest_cmd(run, store), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    # files 10 and 11 land: killed while appending, then resumed
    for i, twins in enumerate(sets):
        _back(run, twins, (10, 11), late / str(i))
    base = _lines(manifest)
    for k in (base + 7,):  # killed while appending
        assert _kill_after(_ingest_cmd(run, store), manifest, k) == -signal.SIGKILL
    done = subprocess.run(_ingest_cmd(run, store), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "44 file(s) (with 22 alpha file(s)) / 880 frame(s) in the store" in done.stdout
    ingest(run, reference, client=client, progress=False)
    assert_same_store(store, reference)
    check_set(store, set_folder("old", 200, 1700), sets[0])


def test_frames_of_a_style_need_its_roles(tmp_path, client):
    """New-DAQ names analysed with the default roles: channel 3 is said to be ignored and
    nothing is stored as a PMT frame (no silent mix-up of channels)."""
    run = tmp_path / "run"
    write_twins(run, "new", 200, 2100, range(1, 3), seed=10)
    summary = ingest(run, tmp_path / "w.zarr", config=Config({"ingest": SMALL}), client=client,
                     progress=False)
    assert summary.frames_ok == 0 and summary.files_ok == 0
    assert any("channel 3" in n for n in summary.notices)
    assert {t["status"] for t in summary.twins} == {"orphan"}
    assert STYLES["new"][1] == 3


def test_two_channel_run_end_to_end_pmt_results_in_natural_order(tmp_path):
    """`ratag-xr simulate --alpha` (unpadded old-DAQ names, 11 files per set) then
    `ratag-xr run`: every stage runs, and the PMT per-frame results come in natural file
    order and equal plain numpy (tests.test_kernels) on the reader's frames."""
    import json

    from ratag_xr.pipeline import load_results
    from tests.test_cli import CLUSTER, ratag
    from tests.test_kernels import reference_pass1, reference_pass2
    from tests.test_pipeline_closure import _prep_params

    raw = tmp_path / "raw"
    ratag("simulate", raw, "--alpha", "--seed", 23, "--files-per-set", 11,
          "--frames-per-file", 12, "--sampling-rate", 1, "--record-start", -4,
          "--record-end", 26, "--sets", "200:1700,300:1800", "--xray-fraction", 0.5, "--quiet")
    run_dir, out = raw / "RUN1", tmp_path / "out"
    proc = ratag("run", run_dir, "--out", out, *CLUSTER)
    assert "twin problem" not in proc.stderr
    res = load_results(out)
    truth = json.loads((run_dir / "truth.json").read_text())
    for entry in truth["sets"]:
        name = entry["name"]
        frames = res.frames.sel(set=name)
        frames = frames.isel(frame=frames.valid.values)
        natural = [f"RUN1_20260312_Gate{entry['v_gate']:.0f}_Anode{entry['v_anode']:.0f}_P3_"
                   f"{n}Wfm_Ch1.wfm" for n in range(1, 12)]
        assert entry["files"] == natural
        assert list(dict.fromkeys(frames.file.values)) == natural  # _2 before _10
        p = _prep_params(res, name)
        k = 0
        for file in natural:
            with read_wfm(run_dir / name / file) as w:
                codes = w.frames()
                scale, offset = -1000.0 * w.y_scale, -1000.0 * w.y_offset
                t0, dt = w.x_start * 1e6, w.x_spacing * 1e6
            for j, row in enumerate(codes):
                got = frames.isel(frame=k)
                assert (str(got.file.values), int(got.frame_in_file)) == (file, j)
                ref = reference_pass1(row, scale, offset, t0, dt, p)
                for var in ("pedestal", "s2_start", "s2_end", "s2_duration", "xray_area"):
                    np.testing.assert_allclose(float(got[var]), ref[var], rtol=1e-9,
                                               atol=1e-12)
                assert int(got.xray_code) == ref["xray_code"]
                np.testing.assert_allclose(float(got.s2_area),
                                           reference_pass2(row, scale, offset, t0, dt, p),
                                           rtol=1e-9, atol=1e-12)
                k += 1
        events = json.loads((out / name / "xray_results.json").read_text())["events"]
        stems = list(dict.fromkeys(e["wf_id"].rsplit("_ff", 1)[0] for e in events))
        assert stems == [f.removesuffix(".wfm") for f in natural]
    assert (out / "plots" / "RUN1_diffusion_analysis.png").exists()
