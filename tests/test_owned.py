"""What ratag_xr may remove: its own stores, also with 0-d arrays (the run results)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ratag_xr.errors import OwnershipError
from ratag_xr.io.owned import check_removable, remove_store
from ratag_xr.pipeline.results import save_stage


def test_a_results_store_with_scalar_results_is_removable(tmp_path):
    results = tmp_path / "results.zarr"
    run = xr.Dataset({"D_L": 0.05, "xray_hist": ("xray_bin", np.arange(3))})
    save_stage(results, "calibrate", {"hash": "x"}, run=run)
    assert (results / "calibrate" / "run" / "D_L" / "c").is_file()  # a 0-d array's chunk
    assert check_removable(results, "results") == results
    (results / "calibrate" / "notes.txt").write_text("mine")
    with pytest.raises(OwnershipError, match="notes.txt"):
        check_removable(results, "results")
    (results / "calibrate" / "notes.txt").unlink()
    (results / "calibrate" / "c").write_text("not beside an array's metadata")
    with pytest.raises(OwnershipError, match="calibrate/c"):
        check_removable(results, "results")
    (results / "calibrate" / "c").unlink()
    assert remove_store(results, "results") and not results.exists()
