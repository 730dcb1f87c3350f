"""The Zarr waveform store: discovery, ingest, lazy opening, increments, bad files."""

from __future__ import annotations

import hashlib
import os

import blake3
import numpy as np
import pytest
import xarray as xr
import zarr

from ratag_xr.config import Config, load_config
from ratag_xr.errors import ConfigError, IngestOrderError, RunLayoutError, StoreError
from ratag_xr.io.wfm import read_wfm
from ratag_xr.store import (
    discover_run,
    ingest,
    open_run,
    open_set,
    parse_set_name,
    read_set_frames,
    set_frame_count,
    store_state,
)
from ratag_xr.store.layout import manifest_path
from ratag_xr.store.manifest import Manifest
from tests.conftest import write_random_set

SMALL_CHUNKS = Config({"ingest": {"chunk_mb": 0.05}})  # ~12 frames of 2000 int16 samples


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
        # a few frames read straight from Zarr (the validation figure's): the same frames
        picks = np.sort(rng.choice(len(truth), size=4, replace=False))
        few = read_set_frames(tmp_path / "w.zarr", name, picks)
        assert set_frame_count(tmp_path / "w.zarr", name) == len(truth)
        for j, k in enumerate(picks):
            np.testing.assert_allclose(few.waveform.values[j],
                                       -(truth[k] * scale + offset) * 1000.0, rtol=1e-12,
                                       atol=1e-12)
        lazy = ds.isel(frame=picks)
        np.testing.assert_array_equal(few.waveform.values, lazy.waveform.values)
        np.testing.assert_array_equal(few.frame.values, lazy.frame.values)  # padding skipped
        assert list(few.file.values) == list(lazy.file.values)
        np.testing.assert_array_equal(few.frame_in_file.values, lazy.frame_in_file.values)
        np.testing.assert_array_equal(few.time.values, ds.time.values)
        assert few.waveform.attrs["units"] == "mV" and few.time.attrs["units"] == "µs"


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
    cfg = SMALL_CHUNKS.replace({"run.drift_gap": 2.0})
    ingest(run, tmp_path / "w.zarr", config=cfg, client=client, progress=False)
    ds = open_set(tmp_path / "w.zarr", "FieldScan_Gate200_Anode1700")
    assert float(ds.drift_field) == pytest.approx(100.0)


def _touch(path):
    """A later modification time, the same bytes."""
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))


def _flip_a_byte(path):
    """The same size, other content."""
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))


def test_touched_but_unchanged_file_is_recognised_by_its_hash(tmp_path, client):
    run = tmp_path / "run"
    make_run(run, n_files=2)
    store = tmp_path / "w.zarr"
    ingest(run, store, config=SMALL_CHUNKS, client=client, progress=False)
    victim = run / "FieldScan_Gate200_Anode1700" / "RUN3_20260101_P1_0001.wfm"
    _touch(victim)
    again = ingest(run, store, config=SMALL_CHUNKS, client=client, progress=False)
    assert again.files_written == 0 and again.files_ok == 6
    event = Manifest.load(manifest_path(store)).get("FieldScan_Gate200_Anode1700", victim.name)
    assert event["status"] == "ok"
    assert event["fingerprint"]["mtime_ns"] == victim.stat().st_mtime_ns  # brought up to date
    _flip_a_byte(victim)
    with pytest.raises(StoreError, match=r"RUN3_20260101_P1_0001.wfm: changed since it was "
                                         r"ingested \(its content hash.*--rebuild"):
        ingest(run, store, config=SMALL_CHUNKS, client=client, progress=False)


def test_content_hash_is_blake3_and_older_blake2b_records_still_check(tmp_path, client):
    run = tmp_path / "run"
    make_run(run, n_files=1)
    store = tmp_path / "w.zarr"
    ingest(run, store, config=SMALL_CHUNKS, client=client, progress=False)
    victim = run / "FieldScan_Gate200_Anode1700" / "RUN3_20260101_P1_0000.wfm"
    manifest = Manifest.load(manifest_path(store))
    event = manifest.get("FieldScan_Gate200_Anode1700", victim.name)
    assert event["hash"] == "blake3:" + blake3.blake3(victim.read_bytes()).hexdigest()
    # a store written when records were BLAKE2b-160: a touched file is checked with it
    legacy = hashlib.blake2b(victim.read_bytes(), digest_size=20).hexdigest()
    manifest.append(dict(event, hash=f"blake2b:{legacy}"))
    _touch(victim)
    again = ingest(run, store, config=SMALL_CHUNKS, client=client, progress=False)
    assert again.files_written == 0
    _flip_a_byte(victim)
    with pytest.raises(StoreError, match="its content hash differs"):
        ingest(run, store, config=SMALL_CHUNKS, client=client, progress=False)


def test_deleted_raw_file_is_reported_and_its_frames_kept(tmp_path, client, capsys):
    run = tmp_path / "run"
    make_run(run, n_files=3)
    store = tmp_path / "w.zarr"
    ingest(run, store, config=SMALL_CHUNKS, client=client, progress=False)
    gone = [run / "FieldScan_Gate300_Anode1800" / f"RUN3_20260101_P1_{k:04d}.wfm" for k in (0, 2)]
    for path in gone:
        path.unlink()
    capsys.readouterr()
    summary = ingest(run, store, config=SMALL_CHUNKS, client=client, progress=False)
    err = capsys.readouterr().err
    (warning,) = [line for line in err.splitlines() if "no longer in" in line]
    assert "FieldScan_Gate300_Anode1800" in warning
    assert all(p.name in warning for p in gone) and "stay in the store" in warning
    assert summary.missing == {"FieldScan_Gate300_Anode1800": [p.name for p in gone]}
    assert "no longer in the run directory" in str(summary)
    ds = open_set(store, "FieldScan_Gate300_Anode1800")
    assert int(ds.n_frames) == 51 and {p.name for p in gone} <= set(ds.file.values)


@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("compressor", "foo", "lz4"), ("clevel", 99, "<= 9"), ("shuffle", "wrong", "bitshuffle"),
    ("direct_io", "always", "auto, on, off")])
def test_bad_codec_is_refused_before_anything_is_written(tmp_path, key, value, allowed):
    (tmp_path / "run.yaml").write_text(f"ingest:\n  {key}: {value}\n")
    with pytest.raises(ConfigError, match=rf"run.yaml: ingest\.{key} = .* must .*{allowed}"):
        load_config(tmp_path / "run.yaml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]


def test_existing_store_keeps_its_codec_with_one_notice(tmp_path, client, capsys):
    run = tmp_path / "run"
    make_run(run, n_files=1)
    store = tmp_path / "w.zarr"
    ingest(run, store, config=SMALL_CHUNKS, client=client, progress=False)
    write_random_set(run / "FieldScan_Gate500_Anode2000", "R_{:04d}.wfm", 1, n_frames=4,
                     n_samples=1200, seed=5)  # a new node after the codec changed
    zstd = SMALL_CHUNKS.replace({"ingest.compressor": "zstd"})
    capsys.readouterr()
    summary = ingest(run, store, config=zstd, client=client, progress=False)
    notices = [n for n in summary.notices if "keeps its codec" in n]
    assert len(notices) == 1 and "zstd" in notices[0]
    assert capsys.readouterr().err.count("keeps its codec") == 1
    assert summary.files_written == 1
    node = store_state(store)["sets"]["FieldScan_Gate500_Anode2000"]["node"]
    arr = zarr.open_array(store=str(store), path=f"{node}/waveform", mode="r")
    assert "lz4" in str(arr.metadata.codecs)
    assert ingest(run, store, config=zstd, client=client, progress=False).files_written == 0


def test_a_file_with_its_own_vertical_scale_is_kept(tmp_path, client):
    run = tmp_path / "run"
    folder = run / "FieldScan_Gate200_Anode1700"
    a = write_random_set(folder, "R_{:04d}.wfm", 2, n_frames=10, n_samples=2000, seed=1)
    b = write_random_set(tmp_path / "b", "R_{:04d}.wfm", 3, n_frames=10, n_samples=2000,
                         seed=2, y_scale=5e-4, y_offset=0.01)
    (tmp_path / "b" / "R_0002.wfm").rename(folder / "R_0002.wfm")  # volts/div changed
    summary = ingest(run, tmp_path / "w.zarr", config=SMALL_CHUNKS, client=client,
                     progress=False)
    assert not summary.bad and summary.files_ok == 3
    ds = open_set(tmp_path / "w.zarr", "FieldScan_Gate200_Anode1700")
    for k, (raw, scale, offset) in enumerate([(a[0], 1e-4, 0.0), (a[1], 1e-4, 0.0),
                                              (b[2], 5e-4, 0.01)]):
        got = ds.waveform.values[10 * k: 10 * k + 10]
        np.testing.assert_allclose(got, -(raw * scale + offset) * 1000.0, rtol=1e-12,
                                   atol=1e-12)
    assert sorted(set(ds.code_scale.values)) == pytest.approx([-0.5, -0.1])
    raw = open_set(tmp_path / "w.zarr", "FieldScan_Gate200_Anode1700", raw=True)
    assert "scale_factor" not in raw.waveform.attrs  # the kernels take per-frame scales


@pytest.mark.parametrize("dtype", ["int8", "int16"])
@pytest.mark.parametrize("cname,clevel,shuffle", [("lz4", 5, "bitshuffle"),
                                                  ("zstd", 3, "shuffle"),
                                                  ("blosclz", 1, "noshuffle")])
def test_chunk_files_written_by_ingest_equal_zarrs_own(tmp_path, dtype, cname, clevel, shuffle):
    from zarr.codecs import BloscCodec

    from ratag_xr.store.ingest import ChunkWriter

    rng = np.random.default_rng(3)
    info = np.iinfo(dtype)
    data = rng.integers(info.min // 8, info.max // 8, size=(2, 3 * 5, 700)).astype(dtype)
    arrays = {}
    for name in ("ours", "zarr"):
        arrays[name] = zarr.create_array(
            store=str(tmp_path / "s.zarr"), name=name, shape=data.shape, chunks=(1, 5, 700),
            dtype=dtype, fill_value=0,
            compressors=[BloscCodec(cname=cname, clevel=clevel, shuffle=shuffle)])
    writer = ChunkWriter(str(tmp_path / "s.zarr"), "ours")
    for i in range(2):
        for j in range(3):
            writer.write(i, j, data[i, 5 * j:5 * j + 5])
    arrays["zarr"][:] = data
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "s.zarr"), path="ours")[:],
                                  data)
    for i in range(2):
        for j in range(3):
            ours = (tmp_path / "s.zarr" / "ours" / "c" / str(i) / str(j) / "0").read_bytes()
            theirs = (tmp_path / "s.zarr" / "zarr" / "c" / str(i) / str(j) / "0").read_bytes()
            assert ours == theirs
    assert not list((tmp_path / "s.zarr").rglob("*.partial"))


def test_chunk_writer_goes_through_zarr_for_other_codecs(tmp_path):
    from zarr.codecs import ZstdCodec

    from ratag_xr.store.ingest import ChunkWriter

    data = np.arange(2 * 10 * 50, dtype=np.int16).reshape(2, 10, 50)
    zarr.create_array(store=str(tmp_path / "s.zarr"), name="w", shape=data.shape,
                      chunks=(1, 5, 50), dtype="int16", compressors=[ZstdCodec(level=1)])
    writer = ChunkWriter(str(tmp_path / "s.zarr"), "w")
    assert writer.codec is None
    for i in range(2):
        for j in range(2):
            writer.write(i, j, data[i, 5 * j:5 * j + 5])
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "s.zarr"), path="w")[:], data)


def test_direct_chunk_reads_equal_zarrs_and_keep_the_fill_value(tmp_path):
    import dask.array as da
    from zarr.codecs import BloscCodec, ZstdCodec

    from ratag_xr.store.chunks import direct_waveform

    rng = np.random.default_rng(4)
    data = rng.integers(-3000, 3000, size=(2, 15, 300)).astype(np.int16)
    arr = zarr.create_array(store=str(tmp_path / "s.zarr"), name="w", shape=data.shape,
                            chunks=(1, 5, 300), dtype="int16", fill_value=-7,
                            compressors=[BloscCodec(cname="lz4", clevel=5,
                                                    shuffle="bitshuffle")])
    arr[0, :10] = data[0, :10]  # chunks (0, 2, 0) and all of set 1 never written
    expected = arr[:]
    assert (expected[1] == -7).all()
    lazy = da.from_zarr(arr, chunks=(1, 5, 300))
    direct = direct_waveform(tmp_path / "s.zarr", "w", lazy)
    assert direct.name != lazy.name and direct.chunks == lazy.chunks
    np.testing.assert_array_equal(direct.compute(scheduler="threads"), expected)
    np.testing.assert_array_equal(direct[0, 3:12, 10:20].compute(), expected[0, 3:12, 10:20])
    other = zarr.create_array(store=str(tmp_path / "s.zarr"), name="z", shape=data.shape,
                              chunks=(1, 5, 300), dtype="int16", compressors=[ZstdCodec()])
    other[:] = data
    lazy = da.from_zarr(other, chunks=(1, 5, 300))
    assert direct_waveform(tmp_path / "s.zarr", "z", lazy) is lazy  # zarr reads it
    merged = da.from_zarr(arr, chunks=(1, 10, 300))
    assert direct_waveform(tmp_path / "s.zarr", "w", merged) is merged  # not its chunks


def test_a_tree_opened_again_follows_the_store(tmp_path, client):
    """open_run reuses what it opened only while the store's metadata, coordinates and
    manifest are unchanged: frames ingested since, or a coordinate rewritten, show at once."""
    run = tmp_path / "run"
    make_run(run, n_files=3)
    store = tmp_path / "s.zarr"
    ingest(run, store, config=SMALL_CHUNKS, nfiles=1, client=client, progress=False)
    first = open_run(store)
    node = next(iter(first.children))
    n_before = int(first[node].to_dataset().valid.sum())
    again = open_run(store)
    xr.testing.assert_identical(again[node].to_dataset(), first[node].to_dataset())
    again[node].to_dataset().valid.values[:] = False  # a caller's change stays its own
    assert int(open_run(store)[node].to_dataset().valid.sum()) == n_before

    ingest(run, store, config=SMALL_CHUNKS, client=client, progress=False)
    grown = open_run(store)[node].to_dataset()
    assert int(grown.valid.sum()) > n_before

    scale = zarr.open_array(store=str(store), path=f"{node}/code_scale", mode="r+")
    changed = scale[...]
    changed[0, 0] *= 2
    scale[...] = changed
    reread = open_run(store)[node].to_dataset()
    assert float(reread.code_scale.values[0, 0]) == float(changed[0, 0])


def test_the_chunk_writer_of_a_process_follows_the_array_it_writes(tmp_path):
    """One writer per array and metadata version: a store made again at the same path (new
    codec, new chunks) gets a new writer, and a chunk folder removed is made again."""
    import shutil

    from zarr.codecs import BloscCodec

    from ratag_xr.store.chunks import chunk_writer

    store = str(tmp_path / "s.zarr")

    def make(chunk, cname):
        zarr.create_array(store=store, name="w", shape=(1, 4 * chunk, 30), dtype="int16",
                          chunks=(1, chunk, 30), fill_value=0, overwrite=True,
                          compressors=[BloscCodec(cname=cname, clevel=1, shuffle="shuffle")])

    make(2, "lz4")
    first = chunk_writer(store, "w")
    assert chunk_writer(store, "w") is first
    data = np.arange(4 * 2 * 30, dtype=np.int16).reshape(1, 8, 30)
    first.write(0, 1, data[0, 2:4])
    shutil.rmtree(tmp_path / "s.zarr" / "w" / "c")  # its folders, gone since it made them
    first.write(0, 1, data[0, 2:4])
    np.testing.assert_array_equal(zarr.open_array(store, path="w")[0, 2:4], data[0, 2:4])
    shutil.rmtree(store)
    make(4, "zstd")
    second = chunk_writer(store, "w")
    assert second is not first and second.metadata.chunk_grid.chunk_shape == (1, 4, 30)
    second.write(0, 0, data[0, :4])
    np.testing.assert_array_equal(zarr.open_array(store, path="w")[0, :4], data[0, :4])


@pytest.mark.parametrize("byte_order,charge", [("<", 0), ("<", 7), (">", 0), (">", 5)])
def test_a_raw_file_read_once_gives_its_frames_and_the_hash_of_every_byte(
        tmp_path, byte_order, charge):
    """``RawFile.blocks``: native, C-contiguous, writable codes equal to the reader's frames
    (charge points dropped, bytes swapped), block by block in reused buffers; the hash is
    BLAKE3 of the whole file."""
    from ratag_xr.io.wfm_writer import write_wfm
    from ratag_xr.store.ingest import FileTask, RawFile

    rng = np.random.default_rng(5)
    raw = rng.integers(-3000, 3000, size=(11, 90)).astype(np.int16)
    path = tmp_path / "f.wfm"
    write_wfm(path, raw, y_scale=1e-4, x_spacing=1e-9, x_start=-1e-6, pre_charge=charge,
              post_charge=charge, byte_order=byte_order)
    task = FileTask(set_name="s", path=path, node="axis0", set_index=0, slot0=0,
                    n_frames=11)
    got = []
    with RawFile(task) as reader:
        for start, codes in reader.blocks(4):
            assert codes.dtype == np.dtype(np.int16) and codes.dtype.isnative
            assert codes.flags.c_contiguous and codes.flags.writeable
            got.append((start, codes.copy()))
        facts = reader.facts()
    assert [s for s, _ in got] == [0, 4, 8]
    np.testing.assert_array_equal(np.concatenate([c for _, c in got]), raw)
    np.testing.assert_array_equal(np.concatenate([c for _, c in got]),
                                  read_wfm(path).frames())
    assert facts["hash"] == "blake3:" + blake3.blake3(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("codec,chunks", [("blosc", (1, 4, 33)), ("zstd", (1, 4, 33)),
                                          ("blosc", (2, 4, 33)), ("blosc", (1, 4, 11))])
def test_a_few_frames_read_without_dask_equal_zarrs_and_keep_the_fill_value(tmp_path, codec,
                                                                            chunks):
    """``read_frames`` (a figure's frames): the chunk files holding them decoded here for
    Blosc, zarr's own reading for other codecs; a chunk never written is the fill value."""
    from zarr.codecs import BloscCodec, ZstdCodec

    from ratag_xr.store.chunks import read_frames

    compressor = BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle") if (
        codec == "blosc") else ZstdCodec(level=1)
    rng = np.random.default_rng(9)
    data = rng.integers(-900, 900, size=(2, 14, 33)).astype(np.int16)
    arr = zarr.create_array(store=str(tmp_path / "s.zarr"), name="w", shape=data.shape,
                            chunks=chunks, dtype="int16", fill_value=-7,
                            compressors=[compressor])
    arr[:, :12] = data[:, :12]  # the last chunk (frames 12, 13) of each set never written
    slots = np.array([0, 3, 5, 11, 12, 13])
    for row in range(2):
        got = read_frames(tmp_path / "s.zarr", "w", row, slots)
        np.testing.assert_array_equal(got, arr[row][slots])
        np.testing.assert_array_equal(got[:4], data[row, slots[:4]])
        assert (got[4:] == -7).all()
