"""Export and plot stages: §10 files and figures from the stored labeled results.

Both read only the results store (and, for the waveform validation figure, ten frames
per set from the waveform store); nothing is recomputed.  The export stage records the
lineage it exported in the results store, so a rerun with unchanged stages skips it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zlib
from pathlib import Path

import dask
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
    results = load_results(run.out)
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


def _histogram_figure(run: Run, name: str, results: Results) -> list[Path]:
    """The S2 area histogram of one set (a task: runs on a worker when there is a cluster)."""
    fig = plots.plot_s2_histogram(results.sets, name, run.run_id,
                                  exclude_index=run.config.integrate.exclude_index)
    return [atomic_save_figure(run.plots_dir / f"{name}_s2_histogram.png", fig)]


def _validation_figure(run: Run, name: str, results: Results) -> list[Path]:
    """The waveform validation figure of one set, if it has frames (a task)."""
    sets = results.sets
    if int(sets.n_frames.sel(set=name)) == 0:
        return []
    fig = plots.plot_waveform_validation(validation_frames(run, name), sets.sel(set=name),
                                         run.run_id)
    return [atomic_save_figure(run.plots_dir / f"{name}_waveform_validation.png", fig)]


def _set_jobs(names) -> list[tuple]:
    """Figure jobs of the sets, the slowest (reading waveforms) first."""
    return [(_validation_figure, n) for n in names] + [(_histogram_figure, n) for n in names]


def _run_figure(run: Run, kind: str, results: Results) -> list[Path]:
    """One run-level figure (a task)."""
    sets, rds = results.sets, results.run
    make = {
        "s2_vs_drift": lambda: plots.plot_s2_vs_drift(sets, run.run_id),
        "xray_histogram": lambda: plots.plot_xray_histogram(
            rds, run.run_id, exclude_index=run.config.calibrate.xray_exclude_index),
        "s2_vs_drift_normalized": lambda: plots.plot_s2_vs_drift(sets, run.run_id,
                                                                 normalized=True),
        "diffusion_analysis": lambda: plots.plot_diffusion(sets, rds, run.run_id),
        "recombination": lambda: plots.plot_recombination(sets, run.run_id),
    }[kind]
    return [atomic_save_figure(run.plots_dir / f"{run.run_id}_{kind}.png", make())]


INTEGRATION_FIGURES = ("s2_vs_drift",)
RUN_FIGURES = ("xray_histogram", "s2_vs_drift_normalized", "diffusion_analysis",
               "recombination")


def _render(run: Run, jobs: list[tuple], client=None, results: Results | None = None
            ) -> list[Path]:
    """Render figure jobs ``(function, argument)``, one Dask task each on a cluster:
    matplotlib is serial, and rendering on the driver alone capped the run's scaling.
    The (small) per-set and per-run results are loaded once and shipped to the tasks."""
    if results is None:
        results = load_results(run.out)
    results = Results(sets=results.sets, run=results.run, frames=xr.Dataset(),
                      lineage=results.lineage)
    run.plots_dir.mkdir(parents=True, exist_ok=True)
    if client is None:
        return [p for fn, arg in jobs for p in fn(run, arg, results)]
    portable = dataclasses.replace(run, client=None)
    shared = client.scatter(results, broadcast=True)
    futures = [client.submit(_figure_task, fn, portable, arg, shared, pure=False)
               for fn, arg in jobs]
    return [p for paths in client.gather(futures) for p in paths]


def _figure_task(fn, run: Run, arg, results: Results) -> list[Path]:
    """A figure job on a worker: what it reads lazily (waveforms, coordinates) is read
    right here, not sent back to the cluster as tasks of their own."""
    with dask.config.set(scheduler="synchronous"):
        return fn(run, arg, results)


def save_integration_plots(run: Run, client=None) -> list[Path]:
    """Per-set S2 histograms and waveform validation figures, and S2 area vs drift field."""
    names = [str(s) for s in load_results(run.out).sets.set.values]
    jobs = _set_jobs(names) + [(_run_figure, k) for k in INTEGRATION_FIGURES]
    return _render(run, jobs, client)


def save_run_plots(run: Run, client=None) -> list[Path]:
    """Combined X-ray histogram, normalised S2 vs drift, diffusion and recombination."""
    return _render(run, [(_run_figure, k) for k in RUN_FIGURES], client)


def plot_outputs(run: Run, client=None) -> list[Path]:
    """Every figure of §10; skipped when the plotted lineage is unchanged and all exist."""
    results = load_results(run.out)
    _clean_outputs(run, results.sets.set.values)
    lineage = output_lineage(run, results)
    root = zarr.open_group(store=str(run.results), mode="a")
    expected = [run.plots_dir / f"{run.run_id}_{kind}.png"
                for kind in INTEGRATION_FIGURES + RUN_FIGURES]
    expected += [run.plots_dir / f"{n}_s2_histogram.png" for n in results.sets.set.values]
    if not run.force and root.attrs.get("plotted", {}).get("hash") == lineage["hash"] \
            and all(p.exists() for p in expected):
        return []
    names = [str(s) for s in results.sets.set.values]
    jobs = _set_jobs(names) + [(_run_figure, k) for k in INTEGRATION_FIGURES + RUN_FIGURES]
    paths = _render(run, jobs, client, results)
    root.attrs["plotted"] = {"hash": lineage["hash"]}
    return paths
