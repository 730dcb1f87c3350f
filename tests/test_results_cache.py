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
