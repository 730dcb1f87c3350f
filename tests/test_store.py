"""The Zarr waveform store: discovery, ingest, lazy opening, increments, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ratag_xr.config import Config, IngestParams, RunParams
from ratag_xr.errors import IngestOrderError, RunLayoutError
from ratag_xr.io.wfm import read_wfm
from ratag_xr.store import (
    discover_run,
    ingest,
    open_run,
    open_set,
    parse_set_name,
    store_state,
)
from tests.conftest import write_random_set

SMALL_CHUNKS = Config(ingest=IngestParams(chunk_mb=0.05))  # ~12 frames of 2000 int16 samples


def make_run(root, n_files=3):
    """Three sets: two on one time axis (different frame counts), one at another rate."""
    sets = {
        "FieldScan_Gate200_Anode1700": dict(n_frames=30, n_samples=2000, seed=1),
        "FieldScan_Gate300_Anode1800": dict(n_frames=17, n_samples=2000, seed=2),
        "FieldScan_2GSsec_Gate400_EL1900": dict(n_frames=8, n_samples=800, seed=3,
                                                x_spacing=5e-10, dtype="int8", y_scale=4e-4),
    }
    written = {}
    for name, kw in sets.items():
        written[name] = write_random_set(root / name, "RUN3_20260101_P1_{:04d}.wfm", n_files,
                                         **kw)
    return written


def test_parse_set_name():
    assert parse_set_name("FieldScan_Gate200_Anode350") == {
        "gate": 200.0, "anode": 350.0, "sampling_gsps": None}
    assert parse_set_name("X_5GSsec_EL2000_Gate50") == {
        "gate": 50.0, "anode": 2000.0, "sampling_gsps": 5.0}


def test_discover_orders_files_and_skips_unnamed_folders(tmp_path):
    make_run(tmp_path, n_files=3)
    (tmp_path / "plots").mkdir()  # an output folder without .wfm files is not a set
    layout = discover_run(tmp_path, nfiles=2)
    assert layout.set_names() == sorted(layout.set_names())
    assert len(layout.sets) == 3
    assert all(len(s.files) == 2 for s in layout.sets)
    assert [p.name for p in layout.sets[0].files] == sorted(p.name for p in layout.sets[0].files)
    bad = tmp_path / "Calibration_run"
    bad.mkdir()
    (bad / "x.wfm").write_bytes(b"")
    layout = discover_run(tmp_path)  # not a set: skipped with a notice, the run goes on
    assert layout.skipped == ("Calibration_run",) and len(layout.sets) == 3
    assert any("Calibration_run" in n and "no gate" in n for n in layout.notices)
    for s in layout.sets:
        (s.path / "other.txt").write_text("")
    only_bad = tmp_path / "only"
    (only_bad / "Calibration_run").mkdir(parents=True)
    (only_bad / "Calibration_run" / "x.wfm").write_bytes(b"")
    with pytest.raises(RunLayoutError, match="no set folders.*Calibration_run"):
        discover_run(only_bad)


def test_ingest_matches_reader_frames(tmp_path, client):
    run = tmp_path / "run"
    written = make_run(run)
    summary = ingest(run, tmp_path / "w.zarr", config=SMALL_CHUNKS, client=client,
                     progress=False)
    assert summary.files_written == 9 and not summary.bad
    tree = open_run(tmp_path / "w.zarr")
    assert set(tree.children) == {"axis0", "axis1"}  # two distinct time axes
    rng = np.random.default_rng(0)
    for name, frames in written.items():
        ds = open_set(tmp_path / "w.zarr", name)
        truth = np.concatenate(frames)
        assert ds.sizes["frame"] == len(truth) == int(ds.n_frames)
        first = sorted((run / name).glob("*.wfm"))[0]
        with read_wfm(first) as wfm:
            np.testing.assert_allclose(ds.time.values, wfm.time * 1e6, rtol=0, atol=1e-9)
            scale, offset = wfm.y_scale, wfm.y_offset
        for k in rng.choice(len(truth), size=5, replace=False):
            expected_mv = -(truth[k] * scale + offset) * 1000.0  # negative polarity flipped
            got = ds.waveform.isel(frame=k).values
            np.testing.assert_allclose(got, expected_mv, rtol=1e-12, atol=1e-12)
            assert ds.file.values[k] == f"RUN3_20260101_P1_{k // len(frames[0]):04d}.wfm"
            assert ds.frame_in_file.values[k] == k % len(frames[0])
        raw = open_set(tmp_path / "w.zarr", name, raw=True).waveform
        assert raw.dtype == truth.dtype
        np.testing.assert_array_equal(raw.values, truth)


def test_units_long_names_and_padding(tmp_path, client):
    run = tmp_path / "run"
    make_run(run, n_files=2)
    ingest(run, tmp_path / "w.zarr", config=SMALL_CHUNKS, client=client, progress=False)
    node = store_state(tmp_path / "w.zarr")["sets"]["FieldScan_Gate200_Anode1700"]["node"]
    ds = open_run(tmp_path / "w.zarr")[node].to_dataset()
    for name, var in ds.variables.items():
        if name in ("set", "frame", "trigger_time"):
            continue
        assert "units" in var.attrs and "long_name" in var.attrs, name
    assert ds.time.attrs["units"] == "µs" and ds.waveform.attrs["units"] == "mV"
    # 30-frame files in 15-frame chunks: no padding; 17-frame files need padding slots
    valid = ds.valid.sel(set="FieldScan_Gate300_Anode1800").values
    assert valid.sum() == 34 and (~valid).sum() == ds.sizes["frame"] - 34
    assert ds.drift_field.sel(set="FieldScan_Gate200_Anode1700") == pytest.approx(200 / 1.4)
    assert ds.EL_field.sel(set="FieldScan_Gate200_Anode1700") == pytest.approx(1500 / 0.8)
    assert ds.sampling_rate.values == pytest.approx([5.0, 5.0])
    assert ds.trigger_time.dtype == np.dtype("datetime64[ns]")
    assert np.isnat(ds.trigger_time.values[~ds.valid.values]).all()


def test_incremental_ingest_adds_only_new_files(tmp_path, client):
    run = tmp_path / "run"
    make_run(run, n_files=3)
    late_set = run / "FieldScan_Gate300_Anode1800"
    late_set.rename(tmp_path / "later")  # this set's acquisition starts later
    first = ingest(run, tmp_path / "inc.zarr", config=SMALL_CHUNKS, nfiles=2, client=client,
                   progress=False)
    assert first.files_written == 4
    (tmp_path / "later").rename(late_set)
    second = ingest(run, tmp_path / "inc.zarr", config=SMALL_CHUNKS, client=client,
                    progress=False)
    assert second.files_written == 5 and second.files_ok == 9
    again = ingest(run, tmp_path / "inc.zarr", config=SMALL_CHUNKS, client=client,
                   progress=False)
    assert again.files_written == 0
    ingest(run, tmp_path / "full.zarr", config=SMALL_CHUNKS, client=client, progress=False)
    inc, full = open_run(tmp_path / "inc.zarr"), open_run(tmp_path / "full.zarr")
    for node in full.children:
        xr.testing.assert_identical(inc[node].to_dataset().load(),
                                    full[node].to_dataset().load())


def test_new_file_sorting_first_is_refused(tmp_path, client):
    run = tmp_path / "run"
    make_run(run, n_files=2)
    ingest(run, tmp_path / "w.zarr", config=SMALL_CHUNKS, client=client, progress=False)
    write_random_set(run / "FieldScan_Gate200_Anode1700", "RUN3_20251231_P1_{:04d}.wfm", 1,
                     n_frames=30, n_samples=2000, seed=9)
    with pytest.raises(IngestOrderError, match="rebuild"):
        ingest(run, tmp_path / "w.zarr", config=SMALL_CHUNKS, client=client, progress=False)
    rebuilt = ingest(run, tmp_path / "w.zarr", config=SMALL_CHUNKS, rebuild=True, client=client,
                     progress=False)
    assert rebuilt.files_written == 7


def test_corrupt_file_is_reported_and_skipped(tmp_path, client, capsys):
    run = tmp_path / "run"
    make_run(run, n_files=3)
    victim = run / "FieldScan_Gate300_Anode1800" / "RUN3_20260101_P1_0001.wfm"
    victim.write_bytes(victim.read_bytes()[:-5000])
    summary = ingest(run, tmp_path / "w.zarr", config=SMALL_CHUNKS, client=client,
                     progress=False)
    assert summary.files_ok == 8
    assert [b["file"] for b in summary.bad] == [victim.name]
    assert "RUN3_20260101_P1_0001.wfm" in str(summary)
    assert victim.name in capsys.readouterr().err
    ds = open_set(tmp_path / "w.zarr", "FieldScan_Gate300_Anode1800")
    assert int(ds.n_frames) == 34 and victim.name not in set(ds.file.values)


def test_params_from_config_change_fields(tmp_path, client):
    run = tmp_path / "run"
    make_run(run, n_files=1)
    cfg = Config(run=RunParams(drift_gap=2.0), ingest=SMALL_CHUNKS.ingest)
    ingest(run, tmp_path / "w.zarr", config=cfg, client=client, progress=False)
    ds = open_set(tmp_path / "w.zarr", "FieldScan_Gate200_Anode1700")
    assert float(ds.drift_field) == pytest.approx(100.0)
