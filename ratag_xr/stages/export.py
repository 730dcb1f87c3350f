"""Stage ``export``: the JSON/NPY files of ALGORITHMS.md §10 and ``frames.parquet``.

It reads only the stored results of the analysis stages; the parameters written into the
JSON files are those of the features that computed the exported values, so what a file
says it used is what was used.  The alpha outputs (§14: the alpha columns of
``frames.parquet``, ``isotopes`` in ``s2_results.json``, ``<run_id>_alpha_calibration.json``)
are written only for a run with alpha data.
"""

from __future__ import annotations

import hashlib
import json

from ratag_xr.export import export_alpha, export_run, export_set, isotope_results
from ratag_xr.features import FEATURES, select
from ratag_xr.io.atomic import remove_stale_temps
from ratag_xr.pipeline.context import versions
from ratag_xr.pipeline.results import Results, has_alpha, merge_parts
from ratag_xr.stages import Stage, StageResult, register
from ratag_xr.stages.isotopes import FRAMES as ISOTOPE_LABELS
from ratag_xr.store import store_state

ANALYSIS = ("prepare", "frames", "integrate", "classify", "calibrate", "alpha", "isotopes")


def alpha_columns() -> list[str]:
    """The per-frame variables of the alpha channel: the alpha features' outputs and the
    isotope labels (left out of ``frames.parquet`` for a run without alpha data)."""
    return [o for f in select(channel="alpha") for o in f.output_names] + list(ISOTOPE_LABELS)


def output_lineage(lineages: dict) -> dict:
    """The lineage written into every JSON: the config values the results depend on (by
    section), package versions, each stage's lineage hash and the input manifest hash."""
    config: dict = {}
    for lin in lineages.values():
        for key, value in lin.get("config", {}).items():
            section, name = key.split(".")
            config.setdefault(section, {})[name] = value
    manifest = next((lin["input"]["manifest"] for lin in lineages.values() if "input" in lin),
                    None)
    body = {"config": config, "versions": versions(),
            "stages": {name: lin["hash"] for name, lin in lineages.items()},
            "manifest_hash": manifest}
    body["hash"] = hashlib.sha256(json.dumps(body, sort_keys=True, default=str)
                                  .encode()).hexdigest()
    return body


def feature_params(output: str, config) -> dict:
    """The parameter values (by kernel argument name) of the feature providing ``output``."""
    feature = next(f for f in FEATURES.values() if output in f.output_names)
    return {p.arg: config.get(p.key) for p in feature.params}


def sample_spacing(store) -> dict[str, float]:
    """Sample spacing (µs) of each set, from its store node."""
    state = store_state(store)
    return {name: state["nodes"][info["node"]]["key"]["x_spacing"] * 1e6
            for name, info in state["sets"].items()}


def compute(ctx) -> StageResult:
    results = Results(**merge_parts({s: {p: ctx.load(s, p) for p in ("sets", "frames", "run")}
                                     for s in ANALYSIS}), lineage=ctx.upstream_lineages())
    names = [str(n) for n in results.sets.set.values]
    for folder in (ctx.run.plots_dir, *(ctx.run.out / n for n in names)):
        remove_stale_temps(folder)
    lineage = output_lineage(results.lineage)
    config = ctx.config.full
    s2 = feature_params("s2_area", config) | {
        k: ctx.config.get(f"integrate.{k}") for k in ("width_s2", "n_sigma_start",
                                                       "n_sigma_end")}
    xray = feature_params("xray_code", config)
    dt = sample_spacing(ctx.run.store)
    alpha = has_alpha(results.run)
    frames = results.frames if alpha else results.frames.drop_vars(
        [n for n in alpha_columns() if n in results.frames])
    paths = []
    for name in names:
        isotopes = isotope_results(results.sets, results.run, name) if alpha else None
        paths += export_set(ctx.run.out, name, results.sets, frames,
                            s2 | {"dt": dt[name]}, lineage, xray_params=xray | {"dt": dt[name]},
                            isotopes=isotopes)
    paths += export_run(ctx.run.out, ctx.run_id, results.sets, results.run, frames, lineage)
    if alpha:
        paths += export_alpha(ctx.run.out, ctx.run_id, results.run, lineage)
    return StageResult(files=paths)


STAGE = register(Stage(
    name="export",
    version=4,
    reads=tuple(f"stage:{s}" for s in ANALYSIS) + (
        "features:pass1", "features:pass2", "config:integrate.width_s2",
        "config:integrate.n_sigma_start", "config:integrate.n_sigma_end", "config:run.run_id"),
    compute=compute,
    files=("<set>/s2_areas.npy", "<set>/s2_results.json", "<set>/xray_areas.npy",
           "<set>/xray_results.json", "<set>/frames.parquet",
           "plots/<run_id>_xray_areas_combined.npy", "plots/<run_id>_xray_metadata.json",
           "plots/<run_id>_diffusion_analysis.json",
           "plots/<run_id>_alpha_calibration.json"),
    doc="the JSON/NPY files of every set and of the run, and every frame's results in "
        "frames.parquet (§10, §14)",
))
