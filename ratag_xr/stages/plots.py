"""Stage ``plots``: every figure of ALGORITHMS.md §10 and §14, from :data:`FIGURES`.

:data:`FIGURES` is the one list of figures: each says its file name, whether it is drawn
per set or per run, which stages' results it needs and how it is drawn.  The stage draws
them all; ``flag_plot`` of the Python API draws those whose stages have run
(:func:`render`).  Each figure is one task on the cluster (matplotlib is serial): the
small per-set and per-run results are loaded once and shipped to the tasks; the
waveform validation figure reads its ten frames from the store in its task.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dask
import numpy as np
import xarray as xr

from ratag_xr import plots
from ratag_xr.cluster import os_errors_returned, task_result
from ratag_xr.io.atomic import atomic_save_figure, remove_stale_temps
from ratag_xr.pipeline.results import Results
from ratag_xr.stages import Stage, StageResult, register
from ratag_xr.stages.alpha import has_alpha
from ratag_xr.store import read_set_frames, set_frame_count

N_VALIDATION_FRAMES = 10


@dataclass(frozen=True)
class FigureSpec:
    """One figure: ``name`` (file ``<set>_<name>.png`` or ``<run_id>_<name>.png``),
    ``per`` ("set" or "run"), the stages whose results it draws, and ``draw(job, results,
    set_name)`` returning a :class:`matplotlib.figure.Figure` (None: nothing to draw);
    ``when(results)``, if given, says whether the run has what the figure shows (the
    alpha figures: a run with alpha data)."""

    name: str
    per: str
    needs: tuple[str, ...]
    draw: Callable
    when: Callable | None = None

    def applies(self, results: Results) -> bool:
        return self.when is None or bool(self.when(results))


@dataclass(frozen=True)
class FigureJob:
    """What a figure task needs to know of the run (small, travels to a worker)."""

    run_id: str
    plots_dir: Path
    store: Path
    n_pedestal: int
    exclude_index: int
    xray_exclude_index: int


def validation_frames(store, set_name: str, n_pedestal: int,
                      n: int = N_VALIDATION_FRAMES) -> xr.Dataset:
    """``n`` randomly chosen individual valid frames of a set (reproducible per set name),
    in pedestal-subtracted mV as the analysis sees them."""
    n_valid = set_frame_count(store, set_name)
    rng = np.random.default_rng(zlib.crc32(set_name.encode()))
    pick = np.sort(rng.choice(n_valid, size=min(n, n_valid), replace=False))
    frames = read_set_frames(store, set_name, pick)  # only the chunks holding them
    pedestal = frames.waveform.isel(time=slice(0, n_pedestal)).mean("time")
    frames["waveform"] = (frames.waveform - pedestal).assign_attrs(
        units="mV", long_name="PMT signal, pedestal-subtracted")
    return frames


def _validation(job: FigureJob, res: Results, name: str):
    if int(res.sets.n_frames.sel(set=name)) == 0:
        return None
    return plots.plot_waveform_validation(validation_frames(job.store, name, job.n_pedestal),
                                          res.sets.sel(set=name), job.run_id)


FIGURES = (
    # the slowest first (it reads waveforms), so it is not the last task to start
    FigureSpec("waveform_validation", "set", ("prepare", "integrate"), _validation),
    FigureSpec("s2_histogram", "set", ("integrate",),
               lambda job, res, name: plots.plot_s2_histogram(
                   res.sets, name, job.run_id, exclude_index=job.exclude_index)),
    FigureSpec("s2_vs_drift", "run", ("prepare", "integrate"),
               lambda job, res, _: plots.plot_s2_vs_drift(res.sets, job.run_id)),
    FigureSpec("xray_histogram", "run", ("calibrate",),
               lambda job, res, _: plots.plot_xray_histogram(
                   res.run, job.run_id, exclude_index=job.xray_exclude_index)),
    FigureSpec("s2_vs_drift_normalized", "run", ("prepare", "integrate", "calibrate"),
               lambda job, res, _: plots.plot_s2_vs_drift(res.sets, job.run_id,
                                                          normalized=True)),
    FigureSpec("diffusion_analysis", "run", ("prepare", "calibrate"),
               lambda job, res, _: plots.plot_diffusion(res.sets, res.run, job.run_id)),
    FigureSpec("recombination", "run", ("calibrate",),
               lambda job, res, _: plots.plot_recombination(res.sets, job.run_id)),
    # §14: only for a run with alpha data
    FigureSpec("alpha_spectrum", "set", ("alpha", "isotopes"),
               lambda job, res, name: plots.plot_alpha_spectrum_set(res.sets, res.run, name,
                                                                    job.run_id),
               when=lambda res: has_alpha(res.run)),
    FigureSpec("alpha_spectrum", "run", ("alpha",),
               lambda job, res, _: plots.plot_alpha_spectrum(res.run, job.run_id),
               when=lambda res: has_alpha(res.run)),
    FigureSpec("alpha_calibration", "run", ("alpha",),
               lambda job, res, _: plots.plot_alpha_calibration(res.run, job.run_id),
               when=lambda res: has_alpha(res.run)),
    FigureSpec("s2_vs_drift_isotopes", "run", ("prepare", "integrate", "isotopes"),
               lambda job, res, _: plots.plot_s2_vs_drift_isotopes(res.sets, job.run_id),
               when=lambda res: has_alpha(res.run)),
)


def figure_path(job: FigureJob, spec: FigureSpec, set_name: str | None) -> Path:
    stem = set_name if spec.per == "set" else job.run_id
    return job.plots_dir / f"{stem}_{spec.name}.png"


def _draw(job: FigureJob, name: str, set_name: str | None, results: Results) -> list[Path]:
    """One figure (a task): what it reads lazily (waveforms) is read right here, not sent
    back to the cluster as tasks of their own."""
    spec = next(f for f in FIGURES if f.name == name and (f.per == "set") == (set_name
                                                                                is not None))
    with dask.config.set(scheduler="synchronous"):
        fig = spec.draw(job, results, set_name)
    if fig is None:
        return []
    return [atomic_save_figure(figure_path(job, spec, set_name), fig)]


def render(job: FigureJob, results: Results, available, client=None) -> list[Path]:
    """Draw every figure whose stages are in ``available``; one task each on ``client``."""
    names = [str(s) for s in results.sets.set.values]
    job.plots_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(job.plots_dir)
    small = Results(sets=results.sets, run=results.run, frames=xr.Dataset(),
                    lineage=results.lineage)
    todo = [(spec.name, s) for spec in FIGURES
            if set(spec.needs) <= set(available) and spec.applies(small)
            for s in (names if spec.per == "set" else [None])]
    if client is None:
        return [p for name, s in todo for p in _draw(job, name, s, small)]
    shared = client.scatter(small, broadcast=True)
    futures = [client.submit(os_errors_returned, _draw, job, name, s, shared, pure=False,
                             key=f"figure-{name}-{s or job.run_id}-{uuid.uuid4().hex[:6]}")
               for name, s in todo]
    return [p for future in futures for p in task_result(future)]


def figure_job(run, config) -> FigureJob:
    """The :class:`FigureJob` of a run (``config``: the run config or a stage's view)."""
    return FigureJob(run_id=config.run.run_id or run.run_dir.name, plots_dir=run.plots_dir,
                     store=run.store, n_pedestal=config.prepare.n_pedestal,
                     exclude_index=config.integrate.exclude_index,
                     xray_exclude_index=config.calibrate.xray_exclude_index)


ANALYSIS = ("prepare", "frames", "integrate", "classify", "calibrate", "alpha", "isotopes")


def compute(ctx) -> StageResult:
    from ratag_xr.pipeline.results import merge_parts

    results = Results(**merge_parts({s: {p: ctx.load(s, p) for p in ("sets", "run")}
                                     for s in ANALYSIS}), lineage=ctx.upstream_lineages())
    paths = render(figure_job(ctx.run, ctx.config), results, ANALYSIS, ctx.client)
    return StageResult(files=paths)


STAGE = register(Stage(
    name="plots",
    version=4,
    reads=tuple(f"stage:{s}" for s in ANALYSIS) + (
        "waveforms", "config:prepare.n_pedestal", "config:integrate.exclude_index",
        "config:calibrate.xray_exclude_index", "config:run.run_id"),
    compute=compute,
    files=tuple(f"plots/<{'set' if f.per == 'set' else 'run_id'}>_{f.name}.png"
                for f in FIGURES),
    doc="every diagnostic figure (150 DPI PNG), one task each; the alpha figures for a run "
        "with alpha data (§10, §14)",
))
