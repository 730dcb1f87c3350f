"""The stage functions of the Python API: thin wrappers over the runner.

Each takes a run directory, a YAML run config or a :class:`~ratag_xr.pipeline.context.Run`
(keywords given are applied to a copy of it), runs its stage and the ones it reads (each
reused while its lineage is unchanged) and returns the stage's labeled results.  Every
keyword either enters the lineage (the analysis flags are config values, e.g.
``estimate_s2_windows`` is ``prepare.estimate_s2_windows``) or only says what to do
(``flag_plot``, ``force``, ``client``).
"""

from __future__ import annotations

import xarray as xr

from ratag_xr.errors import ConfigError
from ratag_xr.pipeline.context import open_analysis
from ratag_xr.pipeline.results import Results, load_results, load_stage


def _run(run, names, inputs=None):
    from ratag_xr.runner import run_stages

    run_stages(run, names, inputs=inputs)


def _plot(run, available) -> None:
    from ratag_xr.stages.plots import figure_job, render

    render(figure_job(run, run.config), load_results(run.out), available)


def prepare_run(run, estimate_s2_windows: bool | None = None, nfiles: int | None = None, *,
                out=None, config=None, client=None, force: bool | None = None) -> xr.Dataset:
    """Ingest (incrementally), then §1–§4 per set; returns the labeled per-set dataset.

    ``estimate_s2_windows`` (default: the config's ``prepare.estimate_s2_windows``) False
    skips the per-set S2 window statistics (integration then uses the fallback window).
    """
    run = open_analysis(run, out=out, config=config, client=client, nfiles=nfiles,
                        force=force,
                        overrides={"prepare.estimate_s2_windows": estimate_s2_windows})
    _run(run, ["prepare"])
    return load_stage(run.results, "prepare", "sets")


def run_ion_integration(run, use_estimated_s2_windows: bool | None = None,
                        flag_plot: bool = True, *, out=None, config=None, client=None,
                        force: bool | None = None) -> xr.Dataset:
    """§5–§6 for every set; returns the per-set dataset (windows, fit results, histograms).

    Runs (or reuses) ``prepare`` first.  ``use_estimated_s2_windows`` (default: the config's
    ``integrate.use_estimated_s2_windows``) False integrates in the fallback window.  With
    ``flag_plot`` the per-set histograms, the waveform validation figures and S2 area vs
    drift field are drawn.
    """
    run = open_analysis(run, out=out, config=config, client=client, force=force,
                        overrides={"integrate.use_estimated_s2_windows":
                                   use_estimated_s2_windows})
    _run(run, ["integrate"])
    if flag_plot:
        _plot(run, ("prepare", "frames", "integrate"))
    return load_stage(run.results, "integrate", "sets")


def run_xray_classification(run, *, out=None, config=None, client=None,
                            force: bool | None = None) -> xr.Dataset:
    """Per-set X-ray outcome counts (runs or reuses ``prepare``)."""
    run = open_analysis(run, out=out, config=config, client=client, force=force)
    _run(run, ["classify"])
    return load_stage(run.results, "classify", "sets")


def run_calibration_analysis(run, ion_fitted_areas: xr.Dataset | None = None,
                             flag_plot: bool = True, save_plots: bool = True, *, out=None,
                             config=None, client=None, force: bool | None = None):
    """§8–§9; returns ``(run_dataset, sets_dataset)``.

    ``ion_fitted_areas``: the per-set dataset of :func:`run_ion_integration` to calibrate
    (its content, hashed, stands in the lineage for the stored ion fits); by default the
    stored ``integrate`` results (computed or reused first).  With ``flag_plot`` and
    ``save_plots`` the run-level figures are drawn.
    """
    run = open_analysis(run, out=out, config=config, client=client, force=force)
    inputs = None
    if ion_fitted_areas is not None:
        needed = {"s2_area_mean", "s2_area_ci95"}
        if not isinstance(ion_fitted_areas, xr.Dataset) or not needed <= set(
                ion_fitted_areas.variables):
            raise ConfigError(f"ion_fitted_areas must be the per-set Dataset of "
                              f"run_ion_integration (with {sorted(needed)})")
        inputs = {"integrate": {"sets": ion_fitted_areas}}
    _run(run, ["calibrate"], inputs=inputs)
    if flag_plot and save_plots:
        _plot(run, ("prepare", "frames", "integrate", "calibrate"))
    return load_stage(run.results, "calibrate", "run"), load_stage(run.results, "calibrate",
                                                                   "sets")


def run_isotope_analysis(run, flag_plot: bool = True, *, out=None, config=None, client=None,
                         force: bool | None = None) -> tuple[xr.Dataset, xr.Dataset]:
    """§12–§14 for a two-channel run: the alpha spectrum, its calibration and the isotope
    ranges, every frame's isotope and the per-isotope ion S2 results; returns
    ``(alpha_run_dataset, isotope_sets_dataset)`` (dims ``isotope`` and ``(set,
    isotope)``).  With ``flag_plot`` the alpha figures are drawn (none for a run without
    alpha data)."""
    run = open_analysis(run, out=out, config=config, client=client, force=force)
    _run(run, ["isotopes"])
    if flag_plot:
        _plot(run, ("prepare", "frames", "integrate", "calibrate", "alpha", "isotopes"))
    return load_stage(run.results, "alpha", "run"), load_stage(run.results, "isotopes", "sets")


__all__ = ["Results", "load_results", "prepare_run", "run_calibration_analysis",
           "run_ion_integration", "run_isotope_analysis", "run_xray_classification"]
