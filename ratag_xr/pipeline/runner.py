"""Run every stage in order, and the per-set summary table printed at the end."""

from __future__ import annotations

import sys

import numpy as np

from ratag_xr.cluster import managed_client
from ratag_xr.errors import ConfigError
from ratag_xr.io.lock import output_lock
from ratag_xr.pipeline.context import Run, open_analysis

STAGES = ("ingest", "prepare", "integrate", "classify", "calibrate", "export", "plots")


def run_pipeline(target, *, out=None, config=None, client=None, nfiles=None, stages=None,
                 force: bool = False, rebuild: bool = False, wait: bool = True,
                 progress: bool = True) -> Run:
    """Run ``stages`` (default: all) of a run; returns the :class:`Run` handle.

    ``client`` is a ``distributed.Client`` or a cluster spec (``local``, ``slurm``, ``pbs``,
    ``tcp://host:port``); by default the run config's ``cluster`` section decides.
    ``rebuild`` deletes the waveform store first (only if ratag_xr made it).  The output
    folder is locked for the whole call: another command on it waits (``wait=False``:
    refuses with a :class:`~ratag_xr.errors.BusyError`).
    """
    from ratag_xr.pipeline.calibrate import run_calibration_analysis
    from ratag_xr.pipeline.integrate import run_ion_integration
    from ratag_xr.pipeline.outputs import export_outputs, plot_outputs
    from ratag_xr.pipeline.prepare import prepare_run
    from ratag_xr.pipeline.xray import run_xray_classification
    from ratag_xr.store import ingest

    run = open_analysis(target, out=out, config=config, nfiles=nfiles, force=force)
    run.progress = progress
    stages = tuple(stages or STAGES)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; stages are {list(STAGES)}")
    cluster = run.config.cluster
    spec = client if client is not None else cluster.spec
    with output_lock(run.out, wait=wait), \
            managed_client(spec, workers=cluster.workers, threads=cluster.threads,
                           memory=cluster.memory, jobs=cluster.jobs) as cl:
        run.client = cl
        if "ingest" in stages:
            _say(str(ingest(run.run_dir, run.store, config=run.config, nfiles=run.nfiles,
                            rebuild=rebuild, client=cl, progress=progress)))
        steps = [("prepare", lambda: prepare_run(run)),
                 ("integrate", lambda: run_ion_integration(run, flag_plot=False)),
                 ("classify", lambda: run_xray_classification(run)),
                 ("calibrate", lambda: run_calibration_analysis(run, flag_plot=False)),
                 ("export", lambda: export_outputs(run)),
                 ("plots", lambda: plot_outputs(run, cl))]
        for name, step in steps:
            if name in stages:
                _say(f"stage {name} ...")
                step()
    return run


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _fmt(value, spec=".3g") -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "-" if not np.isfinite(value) else format(value, spec)


def summary_table(results) -> str:
    """Per-set table: fields, t_s1, S2 window, mean area ± ci95, X-rays accepted, r."""
    sets = results.sets
    head = (f"{'set':<34} {'E_drift':>8} {'E_EL':>8} {'t_s1':>7} {'S2 window [µs]':>16} "
            f"{'A_ion ± ci95 [mV·µs]':>22} {'X acc':>6} {'r':>7}")
    lines = [head, "-" * len(head)]
    for name in sets.set.values:
        s = sets.sel(set=name)

        def get(var, s=s):
            return s[var].item() if var in s else float("nan")

        window = f"{_fmt(get('s2_window_start'), '.2f')}–{_fmt(get('s2_window_end'), '.2f')}"
        area = f"{_fmt(get('s2_area_mean'), '.4f')} ± {_fmt(get('s2_area_ci95'), '.4f')}"
        lines.append(f"{str(name):<34} {_fmt(s.drift_field.item(), '.1f'):>8} "
                     f"{_fmt(s.EL_field.item(), '.1f'):>8} {_fmt(get('t_s1'), '.3f'):>7} "
                     f"{window:>16} {area:>22} {_fmt(get('n_xray_accepted'), '.0f'):>6} "
                     f"{_fmt(get('r'), '.3f'):>7}")
        for var in ("s1_reason", "s2_window_reason", "s2_fit_reason"):
            if var in s and str(s[var].item()):
                lines.append(f"    {var}: {s[var].item()}")
    run = results.run
    if "g_S2" in run:
        lines.append(f"A_x = {_fmt(run.A_x_mean.item(), '.4f')} ± "
                     f"{_fmt(run.A_x_ci95.item(), '.4f')} mV·µs   g_S2 = "
                     f"{_fmt(run.g_S2.item(), '.4g')} mV·µs/e   D_L = "
                     f"{_fmt(run.D_L.item(), '.4g')} ± {_fmt(run.D_L_err.item(), '.2g')} mm²/µs")
    return "\n".join(lines)


def run_failed(results) -> list[str]:
    """Why the run as a whole failed (empty when it did not)."""
    problems = []
    sets = results.sets
    if "s2_fit_success" in sets and not bool(sets.s2_fit_success.any()):
        problems.append("no set has a successful ion S2 fit")
    run = results.run
    if "xray_fit_success" in run and not bool(run.xray_fit_success.item()):
        problems.append(f"X-ray calibration failed: {run.xray_fit_reason.item()}")
    return problems
