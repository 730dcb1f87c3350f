"""The one list of figures (:data:`FIGURES`, ALGORITHMS.md §10, §14) and how one is drawn.

Each figure says its file name, whether it is drawn per set or per run, the stages whose
stored results it draws and how.  A figure reads only those stages' stored parts
(:func:`figure_results`), so it comes out the same whenever it is drawn once they are
stored: by the ``plots`` stage, as soon as its stages are done (:mod:`ratag_xr.plots.helpers`
draws figures in processes of their own while later stages run), or by ``flag_plot``.

Imports no stage and no kernel: a figure helper process starts with this module only.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import dask
import numpy as np
import xarray as xr

from ratag_xr import plots
from ratag_xr.io.atomic import atomic_save_figure
from ratag_xr.pipeline.results import Results, has_alpha, load_stage, merge_parts
from ratag_xr.store.open import read_set_frames, set_frame_count

N_VALIDATION_FRAMES = 10


@dataclass(frozen=True)
class FigureSpec:
    """One figure: ``name`` (file ``<set>_<name>.png`` or ``<run_id>_<name>.png``),
    ``per`` ("set" or "run"), the stages whose results it draws, and ``draw(job, results,
    set_name)`` returning a :class:`matplotlib.figure.Figure` (None: nothing to draw);
    ``when(results)``, if given, says whether the run has what the figure shows (the
    alpha figures: a run with alpha data), from the results of the stages ``when_reads``
    (default: ``needs``).  ``after``: stages it is drawn after without reading their
    results (the waveform figure reads the store, which the ``frames`` stage completes
    when it reads the raw files once)."""

    name: str
    per: str
    needs: tuple[str, ...]
    draw: Callable
    when: Callable | None = None
    when_reads: tuple[str, ...] | None = None
    after: tuple[str, ...] = ()

    @property
    def waits_for(self) -> frozenset[str]:
        """Every stage that must be stored before the figure is drawn."""
        return frozenset(self.needs) | frozenset(self.after)

    def applies(self, results: Results) -> bool:
        return self.when is None or bool(self.when(results))

    @property
    def condition(self) -> tuple[Callable, tuple[str, ...]] | None:
        """What decides :meth:`applies` (the same for figures with the same condition)."""
        return None if self.when is None else (self.when, self.when_reads or self.needs)


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
    if set_frame_count(job.store, name) == 0:  # a set without one valid frame
        return None
    return plots.plot_waveform_validation(validation_frames(job.store, name, job.n_pedestal),
                                          res.sets.sel(set=name), job.run_id)


def _run_has_alpha(res: Results) -> bool:
    return has_alpha(res.run)


FIGURES = (
    # the slowest first (it reads waveforms), so it is not the last task to start
    FigureSpec("waveform_validation", "set", ("prepare",), _validation, after=("frames",)),
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
    FigureSpec("recombination", "run", ("prepare", "calibrate"),
               lambda job, res, _: plots.plot_recombination(res.sets, job.run_id)),
    # §14: only for a run with alpha data
    FigureSpec("alpha_spectrum", "set", ("alpha", "isotopes"),
               lambda job, res, name: plots.plot_alpha_spectrum_set(res.sets, res.run, name,
                                                                    job.run_id),
               when=_run_has_alpha, when_reads=("alpha",)),
    FigureSpec("alpha_spectrum", "run", ("alpha",),
               lambda job, res, _: plots.plot_alpha_spectrum(res.run, job.run_id),
               when=_run_has_alpha, when_reads=("alpha",)),
    FigureSpec("alpha_calibration", "run", ("alpha",),
               lambda job, res, _: plots.plot_alpha_calibration(res.run, job.run_id),
               when=_run_has_alpha, when_reads=("alpha",)),
    FigureSpec("s2_vs_drift_isotopes", "run", ("prepare", "integrate", "alpha", "isotopes"),
               lambda job, res, _: plots.plot_s2_vs_drift_isotopes(res.sets, job.run_id),
               when=_run_has_alpha, when_reads=("alpha",)),
)


def figure_path(job: FigureJob, spec: FigureSpec, set_name: str | None) -> Path:
    stem = set_name if spec.per == "set" else job.run_id
    return job.plots_dir / f"{stem}_{spec.name}.png"


def figure_spec(name: str, set_name: str | None) -> FigureSpec:
    """The figure ``name`` drawn per set (``set_name`` given) or per run."""
    per = "run" if set_name is None else "set"
    for spec in FIGURES:
        if spec.name == name and spec.per == per:
            return spec
    raise KeyError(f"no figure {name!r} drawn per {per}")


def figure_results(results: Path, needs) -> Results:
    """The stored ``sets`` and ``run`` parts of the stages ``needs``, merged (later stages
    win on a clash); no per-frame part (the figures do not draw one)."""
    parts = merge_parts({s: {p: load_stage(results, s, p) for p in ("sets", "run")}
                         for s in needs})
    return Results(sets=parts["sets"], run=parts["run"], frames=xr.Dataset(), lineage={})


def draw_figure(job: FigureJob, name: str, set_name: str | None,
                results: Path) -> list[str]:
    """Draw one figure from the stored results at ``results`` and save it atomically;
    the file written (none when the run has nothing the figure shows).  What it reads
    lazily (waveforms) is read right here, not as tasks of a cluster."""
    spec = figure_spec(name, set_name)
    res = figure_results(results, spec.needs)
    if not spec.applies(res):
        return []
    with dask.config.set(scheduler="synchronous"):
        fig = spec.draw(job, res, set_name)
    if fig is None:
        return []
    job.plots_dir.mkdir(parents=True, exist_ok=True)
    return [str(atomic_save_figure(figure_path(job, spec, set_name), fig))]


def job_fields(job: FigureJob) -> dict:
    """``job`` as plain JSON values (what travels to a figure helper)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(job).items()}


def job_from_fields(fields: dict) -> FigureJob:
    return FigureJob(**{**fields, "plots_dir": Path(fields["plots_dir"]),
                        "store": Path(fields["store"])})
