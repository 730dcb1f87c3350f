"""Run preparation (ALGORITHMS.md §1–§4): fields and transport, S1 time, S2 windows.

One pass over every frame (``pass1``) gives the S2 window crossings and, fused into
the same pass, the X-ray classification of §7 (stored with this stage, summarised by
:func:`ratag_xr.pipeline.xray.run_xray_classification`).
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from ratag_xr.cluster import managed_client
from ratag_xr.driver import frame_scaling
from ratag_xr.physics.s1 import estimate_t_s1
from ratag_xr.physics.s2_window import s2_window_stats
from ratag_xr.physics.transport import set_transport
from ratag_xr.pipeline.context import Run, lineage, open_analysis, with_units
from ratag_xr.pipeline.frames import analysis_nodes, compute_pass, set_order
from ratag_xr.pipeline.results import load_stage, save_stage
from ratag_xr.store import ingest, store_state

TRANSPORT_UNITS = {
    "drift_field": ("V/cm", "drift field"),
    "EL_field": ("V/cm", "electroluminescence field"),
    "gas_density": ("cm^-3", "gas number density"),
    "red_drift_field": ("Td", "reduced drift field"),
    "red_EL_field": ("Td", "reduced electroluminescence field"),
    "speed_drift": ("mm/µs", "electron drift speed"),
    "time_drift": ("µs", "electron drift time across the drift gap"),
}
PREPARE_UNITS = {
    "t_s1": ("µs", "S1 time"),
    "t_s1_std": ("µs", "S1 time spread"),
    "s1_success": ("1", "S1 time found"),
    "s1_reason": ("1", "why the S1 time was not found"),
    "t_s2_start_mean": ("µs", "S2 start, set centre"),
    "t_s2_start_std": ("µs", "S2 start, set spread"),
    "t_s2_end_mean": ("µs", "S2 end, set centre"),
    "t_s2_end_std": ("µs", "S2 end, set spread"),
    "s2_duration_mean": ("µs", "S2 duration, set centre"),
    "s2_duration_std": ("µs", "S2 duration, set spread"),
    "n_s2_frames": ("1", "frames with an S2 crossing"),
    "n_s2_durations": ("1", "S2 durations inside the duration cuts"),
    "s2_window_success": ("1", "S2 start and end statistics succeeded"),
    "s2_window_reason": ("1", "why an S2 statistic failed"),
}


def _labeled(values: dict, set_names, units: dict) -> xr.Dataset:
    ds = xr.Dataset({k: ("set", np.asarray(v)) for k, v in values.items()},
                    coords={"set": list(set_names)})
    return with_units(ds, units)


def transport_table(store, run: Run) -> xr.Dataset:
    """§1 per set: gate/anode voltages, fields, reduced fields, density, drift speed and time."""
    state = store_state(store)
    names = set_order(store)
    gate = np.array([state["sets"][n]["gate"] for n in names], dtype=float)
    anode = np.array([state["sets"][n]["anode"] for n in names], dtype=float)
    p = run.config.run
    values = set_transport(gate, anode, pressure_bar=p.pressure, temperature_k=p.temperature,
                           drift_gap_cm=p.drift_gap, el_gap_cm=p.el_gap)
    values["gas_density"] = np.full(len(names), values["gas_density"])
    ds = _labeled(values, names, TRANSPORT_UNITS)
    ds = ds.assign_coords(gate=("set", gate, {"units": "V", "long_name": "gate voltage"}),
                          anode=("set", anode, {"units": "V", "long_name": "anode voltage"}))
    return ds.set_coords(list(TRANSPORT_UNITS))


def _frame_value(value, set_index: int, frame: int) -> float:
    """A :func:`~ratag_xr.driver.frame_scaling` value (a float or a (set, frame) array with
    length 1 along the dims it lacks) for one frame."""
    if np.ndim(value) == 0:
        return float(value)
    return float(value[min(set_index, value.shape[0] - 1), min(frame, value.shape[1] - 1)])


def s1_batch_means(nodes: dict, n_batches: int, n_pedestal: int, client) -> dict[str, tuple]:
    """Per set: (mean waveforms of ``n_batches`` frame chunks in mV, pedestal-subtracted; time).

    The chunks are spread evenly over the set's valid frames; only their frames are read.
    """
    jobs, times = {}, {}
    for ds in nodes.values():
        wf = ds.waveform
        # one scale per node, or per frame (constant within a chunk: a chunk is one file)
        scales, offsets = frame_scaling(wf.transpose(..., "time"))
        chunk = int(ds.attrs.get("frames_per_chunk", 1))
        for i, name in enumerate(ds.set.values):
            valid = np.flatnonzero(ds.valid.values[i])
            if valid.size == 0:
                continue
            chunk_ids = np.unique(valid // chunk)
            pick = chunk_ids[np.unique(np.linspace(0, chunk_ids.size - 1, n_batches).round()
                                       .astype(int))]
            means = []
            for c in pick:
                frames = valid[(valid >= c * chunk) & (valid < (c + 1) * chunk)]
                scale = _frame_value(scales, i, frames[0])
                offset = _frame_value(offsets, i, frames[0])
                block = wf.data[i, frames[0]: frames[-1] + 1]
                if np.issubdtype(block.dtype, np.integer):  # codes: no NaN, no float copy
                    mean = block.mean(axis=0, dtype=np.float64)
                else:  # a frame of NaN samples (float curves) must not blank its chunk
                    mean = da.nanmean(block.astype("float64"), axis=0)
                means.append(mean * scale + offset)
            jobs[str(name)] = means
            times[str(name)] = ds.time.values
    computed = client.compute(jobs).result() if client is not None else jobs
    out = {}
    for name, means in computed.items():
        arr = np.asarray(means)
        arr = arr - arr[:, :n_pedestal].mean(axis=1, keepdims=True)
        out[name] = (arr, times[name])
    return out


def _s1_table(batches: dict, names, params) -> xr.Dataset:
    rows = {"t_s1": [], "t_s1_std": [], "s1_success": [], "s1_reason": []}
    for name in names:
        if name not in batches:
            rows["t_s1"].append(np.nan)
            rows["t_s1_std"].append(np.nan)
            rows["s1_success"].append(False)
            rows["s1_reason"].append("no valid frames")
            continue
        means, time = batches[name]
        res = estimate_t_s1(means, time, min_height=params.s1_min_height,
                            min_distance=params.s1_min_distance,
                            sigma_threshold=params.s1_sigma_threshold,
                            n_hist_bins=params.s1_hist_bins)
        rows["t_s1"].append(res.t_s1)
        rows["t_s1_std"].append(res.t_s1_std)
        rows["s1_success"].append(bool(res.success))
        rows["s1_reason"].append(res.reason or "")
    return _labeled(rows, names, PREPARE_UNITS)


def _window_table(frames: xr.Dataset, params) -> xr.Dataset:
    rows: dict[str, list] = {k: [] for k in (
        "t_s2_start_mean", "t_s2_start_std", "t_s2_end_mean", "t_s2_end_std",
        "s2_duration_mean", "s2_duration_std", "n_s2_frames", "n_s2_durations",
        "s2_window_success",
        "s2_window_reason")}
    for name in frames.set.values:
        f = frames.sel(set=name)
        valid = f.valid.values
        stats = s2_window_stats(f.s2_start.values[valid], f.s2_end.values[valid],
                                f.s2_duration.values[valid], method=params.s2_method,
                                duration_cuts=tuple(params.s2_duration_cuts),
                                min_values=params.s2_min_values)
        for key in ("t_s2_start_mean", "t_s2_start_std", "t_s2_end_mean", "t_s2_end_std",
                    "s2_duration_mean", "s2_duration_std"):
            rows[key].append(getattr(stats, key))
        rows["n_s2_frames"].append(int(np.isfinite(f.s2_start.values[valid]).sum()))
        rows["n_s2_durations"].append(int(stats.duration.n))
        rows["s2_window_success"].append(bool(stats.window_success))
        reasons = [f"{part}: {r.reason}" for part, r in
                   (("start", stats.start), ("end", stats.end), ("duration", stats.duration))
                   if not r.success]
        rows["s2_window_reason"].append("; ".join(reasons))
    return _labeled(rows, frames.set.values, PREPARE_UNITS)


def _pass1_params(run: Run) -> dict:
    p, x = run.config.prepare, run.config.xray
    return {"n_pedestal": p.n_pedestal, "ma_window": p.ma_window,
            "threshold_s2": p.threshold_s2, "s2_clip": p.s2_clip, "ts2_tol": x.ts2_tol,
            "bs_threshold": x.bs_threshold, "max_area_s2": x.max_area_s2,
            "min_s2_sep": x.min_s2_sep, "min_s1_sep": x.min_s1_sep}


def prepare_run(run, estimate_s2_windows: bool = True, nfiles: int | None = None, *,
                out=None, config=None, client=None, force: bool = False) -> xr.Dataset:
    """Ingest (incrementally), then §1–§4 per set; returns the labeled per-set dataset.

    ``run`` is a run directory, a YAML run config or a :class:`Run`.  Results are stored in
    ``OUT/results.zarr`` (stage ``prepare``) and reused while the raw files, the
    configuration and the package versions are unchanged.  ``estimate_s2_windows=False``
    skips the per-set S2 window statistics (integration then uses the fallback window).
    """
    run = open_analysis(run, out=out, config=config, client=client, nfiles=nfiles, force=force)
    with managed_client(run.client) as cl:
        ingest(run.run_dir, run.store, config=run.config, nfiles=run.nfiles, client=cl)
        lin = lineage(run, "prepare", ("run", "prepare", "xray"))
        lin["estimate_s2_windows"] = estimate_s2_windows
        if run.reuse("prepare", lin):
            return load_stage(run.results, "prepare", "sets")
        sets = transport_table(run.store, run)
        nodes = analysis_nodes(run.store, run.nfiles)
        batches = s1_batch_means(nodes, run.config.prepare.s1_batches,
                                 run.config.prepare.n_pedestal, cl)
        sets = sets.merge(_s1_table(batches, sets.set.values, run.config.prepare))
        frames = compute_pass(nodes, "pass1", _pass1_params(run), cl, per_set=sets,
                              per_set_names=("t_s1", "time_drift"),
                              label="prepare: pass 1 over the frames", progress=run.progress)
        if estimate_s2_windows:
            sets = sets.merge(_window_table(frames, run.config.prepare))
        sets.attrs.update(run_id=run.run_id, s2_window_method=run.config.prepare.s2_method,
                          pressure=run.config.run.pressure,
                          temperature=run.config.run.temperature)
        save_stage(run.results, "prepare", lin, sets=sets, frames=frames)
        run.computed.add("prepare")
    return sets
