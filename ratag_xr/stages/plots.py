"""Stage ``plots``: every figure of ALGORITHMS.md §10 and §14
(:data:`~ratag_xr.plots.figures.FIGURES`).

A figure is drawn from the stored results of the stages it needs, so it is the same
whoever draws it and when:

- the command's figure helpers (:mod:`ratag_xr.plots.helpers`, processes of their own)
  when it has them: the runner makes a :class:`FigureRound` before the first stage and
  asks for each figure as soon as its stages are stored, so most figures are drawn while
  the later stages compute, and the stage waits for the rest;
- otherwise one task per figure on the cluster (each reads the stored results in place);
- without a cluster (``flag_plot`` of the Python API), one after the other.
"""

from __future__ import annotations

import uuid
from concurrent.futures import Future
from pathlib import Path

import zarr

from ratag_xr.cluster import os_errors_returned, task_result
from ratag_xr.io.atomic import remove_stale_temps
from ratag_xr.plots.figures import (
    FIGURES,
    FigureJob,
    FigureSpec,
    draw_figure,
    figure_results,
    job_fields,
)
from ratag_xr.stages import Stage, StageResult, register

ANALYSIS = ("prepare", "frames", "integrate", "classify", "calibrate", "alpha", "isotopes")


def figure_job(run, config) -> FigureJob:
    """The :class:`FigureJob` of a run (``config``: the run config or a stage's view)."""
    return FigureJob(run_id=config.run.run_id or run.run_dir.name, plots_dir=run.plots_dir,
                     store=run.store, n_pedestal=config.prepare.n_pedestal,
                     exclude_index=config.integrate.exclude_index,
                     xray_exclude_index=config.calibrate.xray_exclude_index)


def _set_names(results: Path, stage: str) -> list[str] | None:
    """The sets of a stage's stored per-set result (None: it has none), read from its
    ``set`` coordinate alone."""
    try:
        names = zarr.open_array(store=str(results), path=f"{stage}/sets/set", mode="r")[:]
    except FileNotFoundError:
        return None
    return [str(s) for s in names]


def _figures(results: Path, available, names=None) -> list[tuple[FigureSpec, str | None]]:
    """Every figure whose stages are all in ``available`` and whose results have what it
    shows (:meth:`FigureSpec.applies`), in :data:`FIGURES` order: a per-set figure for
    each set of the first of its stages with a per-set result.  ``names``: a cache (of
    :func:`_set_names` by stage, and of each figure condition's outcome)."""
    names = {} if names is None else names
    out = []
    for spec in FIGURES:
        if not spec.waits_for <= set(available):
            continue
        condition = spec.condition
        if condition is not None and condition not in names:  # decided once per condition
            names[condition] = spec.applies(figure_results(results, condition[1]))
        if condition is not None and not names[condition]:
            continue
        if spec.per != "set":
            out.append((spec, None))
            continue
        for stage in spec.needs:
            if stage not in names:
                names[stage] = _set_names(results, stage)
            if names[stage] is not None:
                out.extend((spec, s) for s in names[stage])
                break
    return out


class FigureRound:
    """The figures of one ``plots`` stage, each asked of the figure helpers once every
    stage it draws is stored (:meth:`stages_done`); :meth:`paths` waits for them all."""

    def __init__(self, job: FigureJob, results: Path, helpers):
        self.job, self.results, self.helpers = job, Path(results), helpers
        self._asked: dict[tuple[str, str, str | None], Future] = {}
        self._names: dict = {}  # sets of each stored stage, whether each figure applies
        job.plots_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(job.plots_dir)

    def stages_done(self, done) -> None:
        """Ask for every figure not yet asked for whose stages are all in ``done``."""
        for spec, s in _figures(self.results, done, self._names):
            key = (spec.name, spec.per, s)
            if key not in self._asked:
                self._asked[key] = self.helpers.submit(
                    {"job": job_fields(self.job), "figure": spec.name, "set": s,
                     "results": str(self.results)})

    def paths(self, available) -> list[Path]:
        """The files of every figure of ``available`` (asked for now if not yet), in
        :data:`FIGURES` order; an error of any figure raised here."""
        self.stages_done(available)
        return [Path(p) for spec, s in _figures(self.results, available, self._names)
                for p in self._asked[(spec.name, spec.per, s)].result()]


def render(job: FigureJob, results: Path, available, client=None) -> list[Path]:
    """Draw every figure whose stages are in ``available`` from the stored results at
    ``results``: one task each on ``client``, else one after the other here."""
    job.plots_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(job.plots_dir)
    todo = _figures(Path(results), available)
    if client is None:
        return [Path(p) for spec, s in todo
                for p in draw_figure(job, spec.name, s, Path(results))]
    futures = [client.submit(os_errors_returned, draw_figure, job, spec.name, s,
                             Path(results), pure=False,
                             key=f"figure-{spec.name}-{s or job.run_id}-{uuid.uuid4().hex[:6]}")
               for spec, s in todo]
    return [Path(p) for future in futures for p in task_result(future)]


def compute(ctx) -> StageResult:
    figures = ctx.figures
    if figures is not None:
        return StageResult(files=figures.paths(ANALYSIS))
    return StageResult(files=render(figure_job(ctx.run, ctx.config), ctx.run.results,
                                    ANALYSIS, ctx.client))


STAGE = register(Stage(
    name="plots",
    version=5,
    reads=tuple(f"stage:{s}" for s in ANALYSIS) + (
        "waveforms", "config:prepare.n_pedestal", "config:integrate.exclude_index",
        "config:calibrate.xray_exclude_index", "config:run.run_id"),
    compute=compute,
    files=tuple(f"plots/<{'set' if f.per == 'set' else 'run_id'}>_{f.name}.png"
                for f in FIGURES),
    doc="every diagnostic figure (150 DPI PNG), drawn from the stored results of the "
        "stages each needs: in figure helper processes as soon as those stages are done, "
        "else one task each; the alpha figures for a run with alpha data (§10, §14)",
))
