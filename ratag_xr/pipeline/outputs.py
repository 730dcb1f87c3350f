"""Export and plot stages: §10 files and figures from the stored labeled results.

Both read only the results store (and, for the waveform validation figure, ten frames
per set from the waveform store); nothing is recomputed.  The export stage records the
lineage it exported in the results store, so a rerun with unchanged stages skips it.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from ratag_xr import plots
from ratag_xr.export import export_run, export_set
from ratag_xr.io.atomic import atomic_save_figure, remove_stale_temps
from ratag_xr.pipeline.context import Run, versions
from ratag_xr.pipeline.results import Results, load_results
from ratag_xr.store import open_set, store_state

N_VALIDATION_FRAMES = 10


def _merged(run: Run) -> Results:
    return load_results(run.out)


def output_lineage(run: Run, results: Results) -> dict:
    """Lineage written into every JSON: config, versions, stage hashes, manifest hash."""
    stages = {name: lin["hash"] for name, lin in results.lineage.items()}
    manifest = next((lin.get("manifest_hash") for lin in results.lineage.values()), None)
    body = {"config": run.config.to_dict(), "versions": versions(), "stages": stages,
            "manifest_hash": manifest}
    body["hash"] = hashlib.sha256(json.dumps(body, sort_keys=True, default=str)
                                  .encode()).hexdigest()
    return body


def _export_params(run: Run, dt: float) -> dict:
    c = run.config
    return {"n_pedestal": c.prepare.n_pedestal, "ma_window": c.prepare.ma_window,
            "bs_threshold": c.integrate.bs_threshold, "dt": dt, "width_s2": c.integrate.width_s2,
            "method": c.prepare.s2_method, "xray": {
                "bs_threshold": c.xray.bs_threshold, "ts2_tol": c.xray.ts2_tol,
                "max_area_s2": c.xray.max_area_s2, "min_s2_sep": c.xray.min_s2_sep,
                "min_s1_sep": c.xray.min_s1_sep}}


def _sample_spacing(run: Run) -> dict[str, float]:
    """Sample spacing (µs) of each set, from its store node."""
    state = store_state(run.store)
    out = {}
    for name, info in state["sets"].items():
        key = state["nodes"][info["node"]]["key"]
        out[name] = key["x_spacing"] * 1e6
    return out


def _clean_outputs(run: Run, names) -> None:
    for folder in (run.plots_dir, *(run.out / str(n) for n in names)):
        remove_stale_temps(folder)


def export_outputs(run: Run) -> list[Path]:
    """Write every §10 data file; skipped when the exported lineage is unchanged."""
    results = _merged(run)
    _clean_outputs(run, results.sets.set.values)
    lineage = output_lineage(run, results)
    root = zarr.open_group(store=str(run.results), mode="a")
    if not run.force and root.attrs.get("exported", {}).get("hash") == lineage["hash"] \
            and all((run.out / name / "s2_results.json").exists()
                    for name in results.sets.set.values):
        return []
    dt = _sample_spacing(run)
    paths = []
    for name in results.sets.set.values:
        paths += export_set(run.out, str(name), results.sets, results.frames,
                            _export_params(run, dt[str(name)]), lineage)
    paths += export_run(run.out, run.run_id, results.sets, results.run, results.frames, lineage)
    root.attrs["exported"] = {"hash": lineage["hash"]}
    return paths


def validation_frames(run: Run, set_name: str, n: int = N_VALIDATION_FRAMES) -> xr.Dataset:
    """``n`` randomly chosen individual valid frames of a set (reproducible per set name),
    in pedestal-subtracted mV as the analysis sees them."""
    ds = open_set(run.store, set_name)
    rng = np.random.default_rng(zlib.crc32(set_name.encode()))
    pick = np.sort(rng.choice(ds.sizes["frame"], size=min(n, ds.sizes["frame"]), replace=False))
    frames = ds[["waveform"]].isel(frame=pick).load()
    n_ped = run.config.prepare.n_pedestal
    pedestal = frames.waveform.isel(time=slice(0, n_ped)).mean("time")
    frames["waveform"] = (frames.waveform - pedestal).assign_attrs(
        units="mV", long_name="PMT signal, pedestal-subtracted")
    return frames


def save_integration_plots(run: Run, client=None) -> list[Path]:
    """Per-set S2 histograms and waveform validation figures, and S2 area vs drift field."""
    results = _merged(run)
    sets, folder = results.sets, run.plots_dir
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in (str(s) for s in sets.set.values):
        fig = plots.plot_s2_histogram(sets, name, run.run_id,
                                      exclude_index=run.config.integrate.exclude_index)
        paths.append(atomic_save_figure(folder / f"{name}_s2_histogram.png", fig))
        if int(sets.n_frames.sel(set=name)) > 0:
            fig = plots.plot_waveform_validation(validation_frames(run, name),
                                                 sets.sel(set=name), run.run_id)
            paths.append(atomic_save_figure(folder / f"{name}_waveform_validation.png", fig))
    fig = plots.plot_s2_vs_drift(sets, run.run_id)
    paths.append(atomic_save_figure(folder / f"{run.run_id}_s2_vs_drift.png", fig))
    return paths


def save_run_plots(run: Run) -> list[Path]:
    """Combined X-ray histogram, normalised S2 vs drift, diffusion and recombination."""
    results = _merged(run)
    sets, rds, folder = results.sets, results.run, run.plots_dir
    folder.mkdir(parents=True, exist_ok=True)
    figures = {
        "xray_histogram": plots.plot_xray_histogram(
            rds, run.run_id, exclude_index=run.config.calibrate.xray_exclude_index),
        "s2_vs_drift_normalized": plots.plot_s2_vs_drift(sets, run.run_id, normalized=True),
        "diffusion_analysis": plots.plot_diffusion(sets, rds, run.run_id),
        "recombination": plots.plot_recombination(sets, run.run_id),
    }
    return [atomic_save_figure(folder / f"{run.run_id}_{kind}.png", fig)
            for kind, fig in figures.items()]


def plot_outputs(run: Run, client=None) -> list[Path]:
    """Every figure of §10; skipped when the plotted lineage is unchanged and all exist."""
    results = _merged(run)
    _clean_outputs(run, results.sets.set.values)
    lineage = output_lineage(run, results)
    root = zarr.open_group(store=str(run.results), mode="a")
    expected = [run.plots_dir / f"{run.run_id}_{kind}.png" for kind in (
        "xray_histogram", "s2_vs_drift", "s2_vs_drift_normalized", "diffusion_analysis")]
    expected += [run.plots_dir / f"{n}_s2_histogram.png" for n in results.sets.set.values]
    if not run.force and root.attrs.get("plotted", {}).get("hash") == lineage["hash"] \
            and all(p.exists() for p in expected):
        return []
    paths = save_integration_plots(run, client) + save_run_plots(run)
    root.attrs["plotted"] = {"hash": lineage["hash"]}
    return paths
