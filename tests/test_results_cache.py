"""Stored stage parts read once per process: a part read again is a copy from memory while
the stored one is unchanged, and the new one as soon as a stage is saved again."""

from __future__ import annotations

import shutil

import numpy as np
import xarray as xr

from ratag_xr.pipeline import results as R


def _sets(values):
    return xr.Dataset({"A_ion": ("set", np.asarray(values, dtype=float), {"units": "mV·µs"})},
                      coords={"set": ["a", "b"]})


def test_a_part_read_again_is_an_independent_copy(tmp_path):
    store = tmp_path / "results.zarr"
    R.save_stage(store, "integrate", {"hash": "1"}, sets=_sets([1.0, 2.0]))
    first = R.load_stage(store, "integrate", "sets")
    first["A_ion"][0] = -5.0  # a caller changing what it got
    first.attrs["x"] = 1
    again = R.load_stage(store, "integrate", "sets")
    np.testing.assert_array_equal(again.A_ion.values, [1.0, 2.0])
    assert "x" not in again.attrs and again.A_ion.attrs["units"] == "mV·µs"


def test_a_stage_saved_again_is_read_anew_at_once(tmp_path):
    store = tmp_path / "results.zarr"
    for k in range(6):  # saves within one second, same sizes; half with the same lineage
        R.save_stage(store, "integrate", {"hash": str(k % 2)}, sets=_sets([k, k + 1.0]))
        got = R.load_stage(store, "integrate", "sets")
        np.testing.assert_array_equal(got.A_ion.values, [k, k + 1.0])


def test_a_stage_removed_reads_as_none(tmp_path):
    store = tmp_path / "results.zarr"
    R.save_stage(store, "integrate", {"hash": "1"}, sets=_sets([1.0, 2.0]))
    assert R.load_stage(store, "integrate", "sets") is not None
    shutil.rmtree(store / "integrate")
    assert R.load_stage(store, "integrate", "sets") is None


def test_a_part_just_saved_reads_as_from_disk(tmp_path):
    """save_stage keeps what it wrote, decoded from the very bytes: the same dataset (values,
    dtypes, strings, attributes) as a fresh read of the files in another process would give."""
    store = tmp_path / "results.zarr"
    sets = _sets([1.5, np.nan]).assign(
        reason=("set", np.array(["ok", "no fit: too few entries"], dtype=str),
                {"units": "1"}),
        n=("set", np.array([3, 0], dtype=np.int64), {"units": "1"}),
        when=("set", np.array(["2026-03-12T09:00", "NaT"], dtype="datetime64[ns]")))
    R.save_stage(store, "integrate", {"hash": "1"}, sets=sets)
    kept = R.load_stage(store, "integrate", "sets")
    R._LOADED.clear()
    fresh = R.load_stage(store, "integrate", "sets")
    xr.testing.assert_identical(kept, fresh)
    assert {v: kept[v].dtype for v in kept.variables} == {v: fresh[v].dtype
                                                           for v in fresh.variables}
    assert list(kept.reason.values) == ["ok", "no fit: too few entries"]


def test_a_part_is_written_as_zarr_writes_it(tmp_path):
    """The files of a saved part are byte for byte those of ``Dataset.to_zarr``."""
    sets = _sets([1.0, 2.0]).assign(reason=("set", np.array(["a", "bc"], dtype=object)))
    R.save_stage(tmp_path / "results.zarr", "integrate", {"hash": "1"}, sets=sets)
    R._encodable(sets).to_zarr(str(tmp_path / "direct.zarr"), mode="w", zarr_format=3,
                               consolidated=False)
    saved, direct = tmp_path / "results.zarr" / "integrate" / "sets", tmp_path / "direct.zarr"
    names = sorted(str(p.relative_to(direct)) for p in direct.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(saved)) for p in saved.rglob("*") if p.is_file())
    assert len(names) >= 7
    for name in names:
        assert (saved / name).read_bytes() == (direct / name).read_bytes(), name
