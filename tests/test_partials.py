"""Per-set statistics reduced from per-block partial results (ratag_xr.pipeline.partials):
equal to numpy on all the values at once, and computed from the stored frames part
block by block, never loading it whole."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

from ratag_xr.config import Config
from ratag_xr.pipeline import results as results_module
from ratag_xr.pipeline import run_pipeline
from ratag_xr.pipeline.partials import combined_histogram, set_histograms, set_maxima
from ratag_xr.pipeline.results import load_stage, open_stage
from ratag_xr.simulate import SimConfig, simulate_run
from ratag_xr.stages.integrate import fit_table


def _values(seed=3, n_sets=3, n_frames=1000):
    rng = np.random.default_rng(seed)
    values = rng.normal(1.0, 0.8, (n_sets, n_frames))
    values[rng.random(values.shape) < 0.1] = np.nan
    values[0, :5] = [0.0, 4.0, -1e-12, 4.0 + 1e-12, 2.0]  # on and just past the edges
    valid = rng.random(values.shape) < 0.9
    return values, valid


def _labeled(values, valid, frame_chunk=None):
    data = values if frame_chunk is None else da.from_array(values, chunks=(1, frame_chunk))
    mask = valid if frame_chunk is None else da.from_array(valid, chunks=(2, frame_chunk // 2))
    coords = {"set": [f"s{i}" for i in range(values.shape[0])]}
    return (xr.DataArray(data, dims=("set", "frame"), coords=coords),
            xr.DataArray(mask, dims=("set", "frame"), coords=coords))


@pytest.mark.parametrize("frame_chunk", [None, 1000, 97, 10])
def test_block_histograms_equal_numpy_on_all_values(frame_chunk):
    values, valid = _values()
    ranges = [(0.0, 4.0, 100), (-1.0, 3.0, 7), (0.5, 0.6, 250)]
    v, k = _labeled(values, valid, frame_chunk)
    counts = set_histograms(v, k, ranges)
    assert counts.shape == (3, 250) and counts.dtype == np.int64
    for i, (lo, hi, nb) in enumerate(ranges):
        kept = values[i][valid[i]]
        expected = np.histogram(kept[np.isfinite(kept)], bins=nb, range=(lo, hi))[0]
        np.testing.assert_array_equal(counts[i, :nb], expected)
        assert not counts[i, nb:].any()
    assert counts[0].sum() > 0 and counts[2].sum() > 0
    total = combined_histogram(v, k, (0.0, 4.0, 40))
    kept = values[valid]
    np.testing.assert_array_equal(
        total, np.histogram(kept[np.isfinite(kept)], bins=40, range=(0.0, 4.0))[0])
    maxima = set_maxima(v, k)
    np.testing.assert_array_equal(
        maxima, [np.nanmax(np.where(valid[i], values[i], np.nan)) for i in range(3)])


def test_maxima_of_a_set_without_values_is_minus_infinity():
    values, valid = _values(n_sets=2, n_frames=50)
    valid[1] = False
    v, k = _labeled(values, valid, 7)
    assert set_maxima(v, k)[1] == -np.inf
    assert not set_histograms(v, k, [(0, 1, 5), (0, 1, 5)])[1].any()


@pytest.mark.parametrize("auto", [False, True])
def test_fit_table_is_the_same_lazy_or_in_memory_and_loads_nothing(auto):
    rng = np.random.default_rng(11)
    values = np.abs(rng.normal(2.0, 0.3, (2, 3000)))
    values[:, ::10] = np.nan
    valid = np.ones_like(values, dtype=bool)
    valid[1, 2500:] = False
    cfg = Config().replace({"integrate.auto_range": auto}).integrate
    eager = fit_table(*_labeled(values, valid), ["s0", "s1"], cfg)
    lazy_v, lazy_k = _labeled(values, valid, 250)
    lazy = fit_table(lazy_v, lazy_k, ["s0", "s1"], cfg)
    xr.testing.assert_identical(lazy, eager)
    assert isinstance(lazy_v.data, da.Array) and isinstance(lazy_k.data, da.Array)
    assert int(lazy.n_frames.sel(set="s1")) == 2500
    assert int(lazy.n_area_nan.sel(set="s0")) == 300
    edges = lazy.s2_area_hist_edges.values[0]
    if auto:  # a robust range around the peak, not the configured 0 .. 4
        assert 0.5 < edges[0] < 2.0 < edges[-1] < 3.5
    else:
        assert (edges[0], edges[-1]) == (0.0, 4.0)


RUN = SimConfig(sets=((100, 1600), (200, 1700)), files_per_set=2, frames_per_file=40,
                sampling_rate_gs=1.0, record_start_us=-4.0, record_end_us=25.0,
                xray_fraction=0.3, seed=8)


STAGES = ("ingest", "prepare", "frames", "integrate", "classify", "calibrate")
AUTO = {"integrate.auto_range": True}


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, client):
    """A run analysed twice: with frames parts stored in blocks of 16 frames (80 per set,
    so every statistic is reduced from lazy blocks) and as stored by default (one block:
    in memory); returns both results stores."""
    root = tmp_path_factory.mktemp("partials")
    run_dir = simulate_run(root / "raw", RUN, progress=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(results_module, "FRAME_BLOCK", 16)
        run_pipeline(run_dir, out=root / "blocks", client=client, progress=False,
                     config=Config().replace(AUTO), stages=STAGES)
    run_pipeline(run_dir, out=root / "whole", client=client, progress=False,
                 config=Config().replace(AUTO), stages=STAGES)
    return root / "blocks" / "results.zarr", root / "whole" / "results.zarr"


@pytest.fixture(scope="module")
def small_blocks(analysed):
    return analysed[0]


def test_lazy_blocks_give_the_results_of_the_part_in_memory(analysed):
    blocks, whole = analysed
    for stage, part in (("integrate", "sets"), ("classify", "sets"), ("calibrate", "run"),
                        ("calibrate", "sets")):
        xr.testing.assert_identical(load_stage(blocks, stage, part),
                                    load_stage(whole, stage, part))


def test_stored_frames_part_is_in_blocks_and_opens_lazily(small_blocks, monkeypatch):
    group = zarr.open_group(str(small_blocks), path="frames/frames", mode="r")
    assert group["s2_area"].chunks == (2, 16)
    assert group["xray_area"].shape == (2, 80)
    assert isinstance(open_stage(small_blocks, "frames", "frames").s2_area.data, np.ndarray)
    monkeypatch.setattr(results_module, "FRAME_BLOCK", 16)  # more than one block: lazy
    frames = open_stage(small_blocks, "frames", "frames")
    assert isinstance(frames.s2_area.data, da.Array)
    assert frames.s2_area.data.numblocks == (1, 5)
    assert isinstance(frames.valid.data, da.Array)  # the per-frame coordinates too
    assert frames.valid.data.numblocks == (1, 5)


def test_stages_reduce_the_stored_blocks_to_numpys_statistics(small_blocks):
    """The histograms and counts the stages stored equal numpy's on all the loaded values."""
    frames = load_stage(small_blocks, "frames", "frames")
    ion = load_stage(small_blocks, "integrate", "sets")
    classify = load_stage(small_blocks, "classify", "sets")
    run = load_stage(small_blocks, "calibrate", "run")
    valid = frames.valid.values
    for i, name in enumerate(frames.set.values):
        areas = frames.s2_area.values[i][valid[i]]
        edges = ion.s2_area_hist_edges.sel(set=name).values
        edges = edges[np.isfinite(edges)]
        expected = np.histogram(areas[np.isfinite(areas)], bins=edges.size - 1,
                                range=(edges[0], edges[-1]))[0]
        got = ion.s2_area_hist.sel(set=name).values[: edges.size - 1]
        np.testing.assert_array_equal(got, expected)
        assert expected.sum() > 20
        assert int(ion.n_frames.sel(set=name)) == valid[i].sum() == 80
        accepted = int(classify.n_xray_accepted.sel(set=name))
        assert accepted == int(np.isfinite(frames.xray_area.values[i][valid[i]]).sum()) > 0
    xray = frames.xray_area.values[valid]
    edges = run.xray_hist_edges.values
    np.testing.assert_array_equal(
        run.xray_hist.values,
        np.histogram(xray[np.isfinite(xray)], bins=edges.size - 1, range=(edges[0], edges[-1]))[0])


def test_alpha_spectrum_and_xray_counts_are_the_same_lazy_or_in_memory():
    from ratag_xr.stages.alpha import spectrum_part
    from ratag_xr.stages.classify import xray_counts
    from ratag_xr.vocabulary import XrayOutcome

    rng = np.random.default_rng(4)
    shape = (2, 500)
    energy = rng.uniform(0.0, 10.0, shape)
    energy[rng.random(shape) < 0.2] = np.nan
    codes = rng.choice([int(o) for o in XrayOutcome], size=shape)
    valid = rng.random(shape) < 0.9

    def frames(chunk):
        wrap = (lambda a: a) if chunk is None else (lambda a: da.from_array(a, chunks=(2, chunk)))
        ds = xr.Dataset({"alpha_energy_sca": (("set", "frame"), wrap(energy)),
                         "xray_code": (("set", "frame"), wrap(codes))},
                        coords={"set": ["a", "b"]})
        return ds.assign_coords(valid=(("set", "frame"), wrap(valid)))

    cfg = Config().alpha
    eager, lazy = spectrum_part(frames(None), None, cfg), spectrum_part(frames(37), None, cfg)
    xr.testing.assert_identical(lazy, eager)
    assert int(eager.alpha_n_frames) == int((valid & np.isfinite(energy)).sum())
    kept = energy[valid]
    edges = eager.alpha_spectrum_edges.values
    np.testing.assert_array_equal(eager.alpha_spectrum.values, np.histogram(
        kept[np.isfinite(kept)], bins=edges.size - 1, range=(edges[0], edges[-1]))[0])
    counted = xray_counts(frames(37))
    xr.testing.assert_identical(counted, xray_counts(frames(None)))
    for o in XrayOutcome:
        assert int(counted[o.count_name].sel(set="b")) == int(((codes[1] == o) & valid[1]).sum())


def test_each_reduction_reads_the_blocks_one_at_a_time():
    """A counting block source: every computed block is one stored block, each read once
    per reduction round (auto range: maxima, fine histogram, histogram)."""
    values, valid = _values(n_sets=2, n_frames=400)
    seen = []

    def source(block, block_info=None):
        seen.append(block.shape)
        return block

    lazy = da.from_array(values, chunks=(2, 50)).map_blocks(source, dtype=float,
                                                             meta=np.empty((0, 0)))
    v = xr.DataArray(lazy, dims=("set", "frame"), coords={"set": ["s0", "s1"]})
    k = xr.DataArray(valid, dims=("set", "frame"), coords={"set": ["s0", "s1"]})
    cfg = Config().replace({"integrate.auto_range": True}).integrate
    table = fit_table(v, k, ["s0", "s1"], cfg)
    assert set(seen) == {(2, 50)}
    assert len(seen) == 3 * 8
    assert int(table.n_frames.sel(set="s1")) == valid[1].sum()


def test_names_in_another_order_or_a_subset_and_misaligned_masks():
    values, valid = _values()
    v, k = _labeled(values, valid, 97)
    cfg = Config().integrate
    table = fit_table(v, k, ["s2", "s0"], cfg)
    assert list(table.set.values) == ["s2", "s0"]
    kept = values[2][valid[2]]
    np.testing.assert_array_equal(table.s2_area_hist.sel(set="s2").values, np.histogram(
        kept[np.isfinite(kept)], bins=100, range=(0.0, 4.0))[0])
    with pytest.raises(ValueError):  # a mask of other sets is refused, not mixed up
        set_histograms(v, k.isel(set=[2, 1, 0]).assign_coords(set=["s0", "s1", "s3"]),
                       [(0, 1, 5)] * 3)


def test_no_frames_and_no_sets():
    empty = xr.DataArray(np.empty((2, 0)), dims=("set", "frame"), coords={"set": ["a", "b"]})
    none = xr.zeros_like(empty, dtype=bool)
    np.testing.assert_array_equal(set_maxima(empty, none), [-np.inf, -np.inf])
    cfg = Config().replace({"integrate.auto_range": True}).integrate
    table = fit_table(empty, none, ["a", "b"], cfg)
    assert (table.n_frames.values == 0).all() and not table.s2_area_hist.values.any()
    no_sets = empty.isel(set=slice(0, 0))
    counts = combined_histogram(no_sets, none.isel(set=slice(0, 0)), (0.0, 1.0, 7))
    np.testing.assert_array_equal(counts, np.zeros(7, dtype=np.int64))
