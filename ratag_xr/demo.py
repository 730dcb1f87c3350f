"""``ratag-xr demo``: simulate a small run, analyse it into every output, and compare
what the pipeline recovered with the simulator's ground truth."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ratag_xr.cluster import close_client, make_client
from ratag_xr.config import Config
from ratag_xr.io.owned import remove_simulated_run
from ratag_xr.pipeline import load_results
from ratag_xr.pipeline.results import load_stage
from ratag_xr.pipeline.summary import run_failed, summary_table
from ratag_xr.runner import run_pipeline
from ratag_xr.simulate import SimConfig, simulate_run
from ratag_xr.stages.calibrate import diffusion

#: 5 sets x 8 files x 70 frames at 2 GS/s int8: ~185 MB, ~20 accepted X-rays per set.
DEMO_CONFIG = SimConfig(files_per_set=8)


def _row(label, truth, got, err=None, unit=""):
    got_text = "-" if got is None or not np.isfinite(got) else f"{got:.4g}"
    if err is not None and np.isfinite(err):
        got_text += f" ± {err:.2g}"
    return f"  {label:<42} {truth:>10.4g} {got_text:>20} {unit}"


def truth_table(truth: dict, results, clean=None) -> str:
    """Truth vs recovered, per set and per run.  ``clean``: the ``prepare`` results with
    ``prepare.s2_timing: clean`` (§15), whose S2 duration spreads and D_L are printed next
    to the reference ones."""
    sets, run = results.sets, results.run
    lines = [f"  {'quantity':<42} {'truth':>10} {'recovered':>20}"]
    for t in truth["sets"]:
        name = t["name"]
        s = sets.sel(set=name)
        lines.append(f" {name}")
        lines.append(_row("t_s1", t["t_s1"], float(s.t_s1), unit="µs"))
        lines.append(_row("drift time", t["time_drift"], float(s.time_drift), unit="µs"))
        lines.append(_row("S2 start (median of frames)", t["t_s2_start"],
                          float(s.t_s2_start_mean), float(s.t_s2_start_std), "µs"))
        lines.append(_row("S2 duration spread sigma_t (reference)", t["sigma_t"],
                          float(s.s2_duration_std), unit="µs"))
        if clean is not None:
            lines.append(_row("S2 duration spread sigma_t (clean, §15)", t["sigma_t"],
                              float(clean.s2_duration_std.sel(set=name)), unit="µs"))
        lines.append(_row("mean ion S2 area (truth: unclipped)", t["ion_area_mean"],
                          float(s.s2_area_mean), float(s.s2_area_ci95), "mV·µs"))
        lines.append(_row("recombination r", t["recombination"], float(s.r), float(s.r_err)))
    lines.append(" run")
    lines.append(_row("X-ray mean area (truth: unclipped)", truth["xray_area_mean"],
                      float(run.A_x_mean), float(run.A_x_ci95), "mV·µs"))
    lines.append(_row("g_S2", truth["g_s2"], float(run.g_S2), float(run.g_S2_err),
                      "mV·µs/electron"))
    lines.append(_row("D_L (longitudinal, reference timing)", truth["D_L"], float(run.D_L),
                      float(run.D_L_err), "mm²/µs"))
    if clean is not None:
        fit = diffusion(clean)[2]
        lines.append(_row("D_L (longitudinal, clean timing §15)", truth["D_L"], fit.D_L,
                          fit.D_L_err, "mm²/µs"))
    lines.append("  Areas: §5/§7 clip the smoothed signal below 0.8 mV, so recovered areas sit "
                 "~10 % (ion) and ~4 % (X-ray)\n  under the unclipped truth; r and g_S2 inherit "
                 "that. X-ray frames (20 % of frames here) widen the S2\n  duration spread "
                 "and so D_L: with the reference timing an X-ray after t_s1 + 0.75 t_drift is "
                 "the S2\n  start. Clean timing (prepare.s2_timing: clean) skips X-rays that end "
                 "more than 1 µs before the ion\n  S2, not those that overlap it (X-rays "
                 "absorbed in the last ~5 µs of drift); "
                 "tests/test_pipeline_closure.py\n  checks D_L on a run without X-rays.")
    return "\n".join(lines)


def _tag_table(got, true, names) -> list[str]:
    lines = [f"  {'isotope':<9} {'truth frames':>12} {'tagged':>7} {'tagged right':>13}"]
    for name in names:
        mine = got == name
        right = np.mean(true[mine] == name) if mine.any() else np.nan
        lines.append(f"  {name:<9} {int(np.sum(true == name)):>12} {int(mine.sum()):>7} "
                     f"{right:>13.1%}")
    tagged = got != "untagged"
    has = true != ""
    lines.append(f"  {'all':<9} {int(has.sum()):>12} {int(tagged.sum()):>7} "
                 f"{np.mean(got[tagged] == true[tagged]):>13.1%}   ({np.mean(tagged[has]):.1%} "
                 "of the frames with an alpha tagged)")
    return lines


def isotope_table(truth: dict, frames_truth: dict, results) -> str:
    """Truth vs recovered per isotope: tagging, calibrated peak energies, per-isotope mean
    ion S2 areas (the simulator draws the ion S2 independently of the isotope: each
    isotope's truth is its set's)."""
    run, sets, frames = results.run, results.sets, results.frames
    isotopes = list(truth["alpha"]["isotopes"])
    names = [str(n) for n in run.isotope.values]
    got, true = [], []
    for i, set_name in enumerate(frames_truth["set_names"]):
        fr = frames.sel(set=set_name)
        labels = np.asarray(fr.isotope.values)[np.asarray(fr.valid.values, dtype=bool)]
        index = frames_truth["alpha_isotope"][frames_truth["set_index"] == i]
        if labels.size != index.size:
            return "  (the frames analysed are not the simulated ones: no isotope comparison)"
        got.append(labels.astype(str))
        true.append(np.array([isotopes[k] if k >= 0 else "" for k in index], dtype=object))
    got, true = np.concatenate(got), np.concatenate(true)
    lines = [" tagging (labels of the frames vs the simulated isotope)", *_tag_table(
        got, true, names)]
    lines.append(" calibrated peak energies (E(x0), order "
                 f"{int(run.alpha_cal_order_used)}) vs the reference energies")
    for name in names:
        p = run.sel(isotope=name)
        ref, got = float(p.alpha_peak_ref_energy), float(p.alpha_peak_energy)
        lines.append(_row(f"{name} [MeV]", ref, got, unit=f"({1e3 * (got - ref):+.1f} keV)"))
    lines.append(" mean ion S2 area per isotope [mV·µs] (the simulator draws the ion S2 "
                 "independently of the isotope:\n  each isotope's truth is its set's, "
                 "unclipped; 'all frames' is the set's own fit)")
    lines.append("  " + f"{'set':<28}{'truth':>7}{'all frames':>15}"
                 + "".join(f"{n:>15}" for n in names))
    for entry in truth["sets"]:
        s = sets.sel(set=entry["name"])
        cells = []
        for name in names:
            iso = s.sel(isotope=name)
            ok = bool(iso.iso_s2_fit_success)
            cells.append(f"{float(iso.iso_s2_area_mean):.3f} ± {float(iso.iso_s2_area_ci95):.3f}"
                         if ok else "failed")
        every = f"{float(s.s2_area_mean):.3f} ± {float(s.s2_area_ci95):.3f}"
        lines.append("  " + f"{entry['name']:<28}{entry['ion_area_mean']:>7.3f}{every:>15}"
                     + "".join(f"{c:>15}" for c in cells))
    lines.append("  Th228 and Ra224 lie 0.26 MeV apart: with the simulated resolution "
                 f"({1e3 * truth['alpha']['resolution_mev']:.0f} keV) and low-energy tail,\n"
                 "  some frames near their boundary carry the neighbour's label whatever the "
                 "method.")
    return "\n".join(lines)


def run_demo(out: Path, client_factory=None, config: SimConfig = DEMO_CONFIG, *,
             alpha: bool = False, naming: str | None = None) -> int:
    """Simulate into ``out``, run every stage, print the summary and truth tables.

    ``alpha``/``naming``: a two-channel run (see :class:`SimConfig`); the analysis is told
    the simulated channels (``run.channels``)."""
    out = Path(out)
    if alpha or naming:
        config = config.replace(alpha=alpha or config.alpha, naming=naming or config.naming)
    channels = {"pmt": config.pmt_channel or 1, "alpha": config.alpha_channel or 4}
    analysis = Config({"run": {"channels": channels}})
    run_dir = out / config.run_name
    remove_simulated_run(run_dir)  # refuses anything the simulator did not write
    t0 = time.perf_counter()
    print(f"simulating {len(config.sets)} sets x {config.files_per_set} files x "
          f"{config.frames_per_file} frames into {run_dir} ...", flush=True)
    simulate_run(out, config, progress=sys.stderr.isatty())
    t1 = time.perf_counter()
    # one client for both analyses below (a LocalCluster by default)
    client = client_factory() if client_factory else make_client()
    progress = sys.stderr.isatty()
    try:
        # the §15 clean S2 timing first (only its S2 statistics are kept), then every
        # stage with the defaults: what stays on disk is the reference analysis
        run_pipeline(run_dir, client=client, progress=progress, stages=("ingest", "prepare"),
                     config=analysis.replace({"prepare.s2_timing": "clean"}))
        clean = load_stage(run_dir / "results.zarr", "prepare", "sets")
        run_pipeline(run_dir, client=client, config=analysis, progress=progress)
    finally:
        close_client(client)
    t2 = time.perf_counter()
    results = load_results(run_dir)
    truth = json.loads((run_dir / "truth.json").read_text())
    print(summary_table(results))
    print("\ntruth vs recovered")
    print(truth_table(truth, results, clean))
    if "alpha" in truth:
        print("\ntruth vs recovered per isotope")
        print(isotope_table(truth, dict(np.load(run_dir / "truth_frames.npz")), results))
    outputs = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")
                     if p.suffix in (".json", ".npy", ".png", ".html") and "zarr" not in str(p))
    print(f"\n{len(outputs)} output files under {run_dir} (results store: "
          f"{run_dir / 'results.zarr'}, waveforms: {run_dir / 'waveforms.zarr'})")
    print(f"run report: {run_dir / 'report.html'} (open it in a browser)")
    print(f"simulation {t1 - t0:.1f} s, analysis {t2 - t1:.1f} s")
    problems = run_failed(results)
    for problem in problems:
        print(f"ratag-xr: run failed: {problem}", file=sys.stderr)
    return 1 if problems else 0
