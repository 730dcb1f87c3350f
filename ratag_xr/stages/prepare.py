"""Stage ``prepare`` (ALGORITHMS.md §1–§4, §7): fields and transport, S1 time, pass 1.

Per set: fields, reduced fields, drift speed and time (§1) and the S1 time from
frame-chunk means (§3).  Then the feature giving each frame's S2 crossings (§4, or the
clean timing of §15 with ``prepare.s2_timing: clean``) runs over every frame, and the
per-set S2 window statistics are reduced from the crossings; the per-frame results of
every feature come from the ``frames`` stage.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from ratag_xr.driver import frame_scaling
from ratag_xr.params import Param, at_least, increasing, nonneg, one_of
from ratag_xr.physics.s1 import estimate_t_s1
from ratag_xr.physics.s2_window import s2_window_stats
from ratag_xr.physics.transport import reduced_field, set_transport
from ratag_xr.pipeline.frames import compute_pass, first_frames
from ratag_xr.stages import Stage, StageResult, register
from ratag_xr.store import store_state
from ratag_xr.vocabulary import describe

TRANSPORT = ("drift_field", "EL_field", "gas_density", "red_drift_field", "red_EL_field",
             "speed_drift", "time_drift")
S1 = ("t_s1", "t_s1_std", "s1_success", "s1_reason")
WINDOW = ("t_s2_start_mean", "t_s2_start_std", "t_s2_end_mean", "t_s2_end_std",
          "s2_duration_mean", "s2_duration_std", "n_s2_frames", "n_s2_durations",
          "s2_window_success", "s2_window_reason")

#: The feature whose per-frame S2 crossings the window statistics reduce.
CROSSINGS = "s2_window_xray"

PARAMS = (
    Param("prepare.s1_batches", 5, int, "", "frame chunks averaged for the S1 estimate",
          checks=(at_least(1),)),
    Param("prepare.s1_min_height", 0.001, float, "mV", "S1 peak minimum height",
          checks=(nonneg,)),
    Param("prepare.s1_min_distance", 200, int, "samples", "S1 peak minimum distance",
          checks=(at_least(1),)),
    Param("prepare.s1_sigma_threshold", 1.0, float, "", "S1 candidates kept within this "
          "many std of their mean", checks=(nonneg,)),
    Param("prepare.s1_hist_bins", 50, int, "", "bins of the S1 candidate histogram",
          checks=(at_least(1),)),
    Param("prepare.estimate_s2_windows", True, bool, "", "reduce the per-set S2 window "
          "statistics (false: integration uses the fallback window)"),
    Param("prepare.s2_method", "percentile", str, "", "per-set statistic of the S2 start, "
          "end and duration", checks=(one_of("percentile", "mad", "std"),)),
    Param("prepare.s2_duration_cuts", (5.0, 25.0), tuple[float, ...], "µs", "durations used "
          "for the duration statistic", checks=(increasing,)),
    Param("prepare.s2_min_values", 10, int, "", "minimum values for a per-set statistic",
          checks=(at_least(1),)),
    Param("prepare.s1_frames", None, int | None, "frames", "estimate t_s1 from each set's "
          "first N frames in frame order (null: all frames)", checks=(at_least(1),)),
    Param("prepare.s2_window_frames", None, int | None, "frames", "reduce the S2 window "
          "statistics from each set's first N frames (null: all frames); with s1_frames "
          "set too, every later raw byte is read once (README: estimates from the first "
          "frames)",
          checks=(at_least(1),)),
)


def estimate_frames(config) -> int | None:
    """Frames from the start of each set that ``prepare`` reads (None: all): with both
    estimates limited, the analysis reads the rest of each raw file once, with ingest."""
    s1, s2 = config.get("prepare.s1_frames"), config.get("prepare.s2_window_frames")
    return None if s1 is None or s2 is None else max(s1, s2)


def _labeled(values: dict, set_names) -> xr.Dataset:
    ds = xr.Dataset({k: ("set", np.asarray(v)) for k, v in values.items()},
                    coords={"set": list(set_names)})
    return describe(ds, list(values))


def transport_table(store, run_cfg, names) -> xr.Dataset:
    """§1 per set of ``names``: gate/anode voltages, fields, reduced fields, density, drift
    speed and time (``run_cfg``: the ``run`` section; its ``el_field``, when given, is the
    EL field of every set instead of the one from the set name's voltages)."""
    state = store_state(store)
    gate = np.array([state["sets"][n]["gate"] for n in names], dtype=float)
    anode = np.array([state["sets"][n]["anode"] for n in names], dtype=float)
    values = set_transport(gate, anode, pressure_bar=run_cfg.pressure,
                           temperature_k=run_cfg.temperature,
                           drift_gap_cm=run_cfg.drift_gap, el_gap_cm=run_cfg.el_gap)
    values["gas_density"] = np.full(len(names), values["gas_density"])
    if run_cfg.el_field is not None:
        values["EL_field"] = np.full(len(names), float(run_cfg.el_field))
        values["red_EL_field"] = reduced_field(values["EL_field"], values["gas_density"])
    ds = _labeled(values, names)
    ds = ds.assign_coords(gate=("set", gate), anode=("set", anode))
    return describe(ds, ["gate", "anode"]).set_coords(list(TRANSPORT))


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


def s1_table(batches: dict, names, cfg) -> xr.Dataset:
    """§3 per set from the batch means (``cfg``: the ``prepare`` section)."""
    rows = {k: [] for k in S1}
    for name in names:
        if name not in batches:
            res_t, res_std, ok, reason = np.nan, np.nan, False, "no valid frames"
        else:
            means, time = batches[name]
            res = estimate_t_s1(means, time, min_height=cfg.s1_min_height,
                                min_distance=cfg.s1_min_distance,
                                sigma_threshold=cfg.s1_sigma_threshold,
                                n_hist_bins=cfg.s1_hist_bins)
            res_t, res_std, ok, reason = res.t_s1, res.t_s1_std, bool(res.success), res.reason
        rows["t_s1"].append(res_t)
        rows["t_s1_std"].append(res_std)
        rows["s1_success"].append(ok)
        rows["s1_reason"].append(reason or "")
    return _labeled(rows, names)


def window_table(frames: xr.Dataset, cfg) -> xr.Dataset:
    """§4 per set from the per-frame crossings (``cfg``: the ``prepare`` section); with
    ``estimate_s2_windows`` false every statistic is NaN, saying why."""
    rows: dict[str, list] = {k: [] for k in WINDOW}
    for name in frames.set.values:
        f = frames.sel(set=name)
        valid = f.valid.values
        n_crossing = int(np.isfinite(f.s2_start.values[valid]).sum())
        if not cfg.estimate_s2_windows:
            for key in WINDOW[:6]:
                rows[key].append(np.nan)
            rows["n_s2_frames"].append(n_crossing)
            rows["n_s2_durations"].append(0)
            rows["s2_window_success"].append(False)
            rows["s2_window_reason"].append("not estimated (prepare.estimate_s2_windows is "
                                            "false)")
            continue
        stats = s2_window_stats(f.s2_start.values[valid], f.s2_end.values[valid],
                                f.s2_duration.values[valid], method=cfg.s2_method,
                                duration_cuts=tuple(cfg.s2_duration_cuts),
                                min_values=cfg.s2_min_values)
        for key in WINDOW[:6]:
            rows[key].append(getattr(stats, key))
        rows["n_s2_frames"].append(n_crossing)
        rows["n_s2_durations"].append(int(stats.duration.n))
        rows["s2_window_success"].append(bool(stats.window_success))
        reasons = [f"{part}: {r.reason}" for part, r in
                   (("start", stats.start), ("end", stats.end), ("duration", stats.duration))
                   if not r.success]
        rows["s2_window_reason"].append("; ".join(reasons))
    return _labeled(rows, frames.set.values)


def compute(ctx) -> StageResult:
    cfg = ctx.config.prepare
    sets = transport_table(ctx.run.store, ctx.config.run, ctx.sets)
    nodes = ctx.nodes()
    batches = s1_batch_means(first_frames(nodes, cfg.s1_frames), cfg.s1_batches,
                             cfg.n_pedestal, ctx.client)
    sets = sets.merge(s1_table(batches, sets.set.values, cfg))
    crossings = compute_pass(first_frames(nodes, cfg.s2_window_frames), CROSSINGS,
                             ctx.config.full, ctx.client, per_set=sets,
                             label="prepare: S2 crossings of every frame",
                             progress=ctx.progress)
    sets = sets.merge(window_table(crossings, cfg))
    sets.attrs.update(run_id=ctx.run_id, s2_window_method=cfg.s2_method,
                      s2_timing=cfg.s2_timing, s2_max_gap=cfg.s2_max_gap,
                      pressure=ctx.config.run.pressure,
                      temperature=ctx.config.run.temperature,
                      el_field_source="run.el_field" if ctx.config.run.el_field is not None
                      else "set name")
    return StageResult(sets=sets)


STAGE = register(Stage(
    name="prepare",
    version=5,
    reads=("waveforms", f"feature:{CROSSINGS}", "config:run.pressure", "config:run.temperature",
           "config:run.sets", "config:run.exclude", "config:run.el_field",
           "config:run.drift_gap", "config:run.el_gap", "config:run.run_id"),
    params=PARAMS,
    provides={"sets": ("gate", "anode", *TRANSPORT, *S1, *WINDOW)},
    compute=compute,
    input_frames=estimate_frames,
    doc="fields, reduced fields, drift speed and time per set; S1 time from frame-chunk "
        "means; the S2 crossings of every frame and the per-set S2 window statistics "
        "(§1–§4)",
))
