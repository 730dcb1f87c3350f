"""The sections of the run report, each a function of the labeled results (and of the files
the report links) returning HTML.  No I/O here: :func:`ratag_xr.report.write_report`
gathers the files and writes the page.

Variables are looked up by name and may be missing (a live page before the first fit, a
stage that has not run): a missing value shows as "–".  Per-isotope results are found by
their ``isotope`` dimension, whichever stage provides them; every ``*_reason`` variable that
holds a text is a failure shown with its reason.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import xarray as xr

from ratag_xr.report.html import (
    MISSING,
    Cell,
    duration,
    esc,
    finite,
    fixed,
    href,
    key_values,
    num,
    pm,
    table,
)
from ratag_xr.vocabulary import GAIN_OWN as OWN_GAIN

#: figure name (file name after ``<set>_`` / ``<run_id>_``) -> what it shows, in page order
FIGURE_CAPTIONS = {
    "s2_histogram": "ion S2 area histogram with its fit, mean ± ci95",
    "waveform_validation": "10 random frames with the S1 time and the S2 window (±σ bands)",
    "alpha_spectrum": "alpha spectrum, isotope ranges",
    "xray_histogram": "combined X-ray S2 area histogram with its fit and the gain g_S2",
    "s2_vs_drift": "ion S2 area against drift field (ci95 bars)",
    "s2_vs_drift_normalized": "ion S2 area over X-ray area against drift field (ci95 bars)",
    "s2_vs_drift_isotopes": "ion S2 area against drift field per isotope (ci95 bars)",
    "recombination": "recombination fraction r against drift field",
    "diffusion_analysis": "S2 duration variance: longitudinal diffusion D_L",
    "alpha_calibration": "alpha calibration: fitted peak positions against reference energies",
}
#: labels of the known failure reasons (others: the variable's long name)
REASONS = {
    "s1_reason": "S1 time not found",
    "s2_window_reason": "S2 window statistic failed",
    "s2_fit_reason": "ion S2 fit failed",
    "xray_fit_reason": "X-ray calibration fit failed",
    "diffusion_reason": "diffusion fit failed",
}
ISOTOPE_DIM = "isotope"


# ---------------------------------------------------------------- value access


def _get(ds: xr.Dataset | None, name: str, **where):
    """Plain value of ``name`` (selected by ``where``), NaN when absent."""
    if ds is None or name not in ds.variables:
        return math.nan
    var = ds[name]
    where = {k: v for k, v in where.items() if k in var.dims}
    if where:
        var = var.sel(where)
    return var.values.item() if var.ndim == 0 else var.values


def _text(ds, name: str, **where) -> str:
    return _reason(_get(ds, name, **where))


def _reason(value) -> str:
    """A recorded reason as text; "" for none (also NaN/None: a set a stage has not
    reached yet, when results of stages that saw different sets are merged)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _flag(ds, name: str, **where) -> bool | None:
    value = _get(ds, name, **where)
    return None if isinstance(value, float) and math.isnan(value) else bool(value)


def set_names(results) -> list[str]:
    sets = getattr(results, "sets", None)
    if sets is None or "set" not in sets.coords:
        return []
    return [str(s) for s in sets["set"].values]


def _wbr(name: str) -> str:
    """A long name that may break after its underscores."""
    return esc(name).replace("_", "_<wbr>")


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _units(var: xr.DataArray) -> str:
    """A variable's units as shown: ``cm^-3`` as cm⁻³, ``1`` as "count" or "dimensionless"."""
    units = str(var.attrs.get("units", ""))
    if var.dtype.kind == "b" or var.dtype.kind in "OUT":
        return ""  # yes/no, texts
    if units in ("1", ""):
        return "count" if re.search(r"(^|_)n_", str(var.name)) else "dimensionless"
    return re.sub(r"\^(-?\d+)", lambda m: m.group(1).translate(_SUPERSCRIPT), units)


def _value_html(value, var_name: str = "") -> str | Cell:
    if isinstance(value, bool | np.bool_):
        bad = not value and var_name.endswith("success")
        return Cell("yes" if value else "no", "bad" if bad else "")
    if isinstance(value, str):
        return Cell(esc(value) if value else MISSING, "text")
    return num(value)


# ---------------------------------------------------------------- failures


def without_empty_alpha(results):
    """``results`` without what the alpha and isotopes stages provide when the run has no
    alpha data (a PMT-only run: those stages record only "no alpha frames")."""
    from ratag_xr.pipeline.results import has_alpha
    from ratag_xr.stages import STAGES

    run = getattr(results, "run", None)
    if run is None or "alpha_n_frames" not in run or has_alpha(run):
        return results
    alpha = {v for name in ("alpha", "isotopes") for names in STAGES[name].provides.values()
             for v in names}

    def strip(ds):
        if ds is None:
            return None
        ds = ds.drop_vars([v for v in ds.data_vars if v in alpha])
        used = {d for v in ds.data_vars.values() for d in v.dims}
        return ds.drop_dims([d for d in ds.dims if d not in used])
    return replace(results, sets=strip(results.sets), run=strip(run))


def failures(results, progress: dict | None = None) -> list[tuple[str, str, str]]:
    """Every recorded failure: (where, what, reason)."""
    out = []
    sets = getattr(results, "sets", None)
    if sets is not None:
        for name in [v for v in sets.data_vars if str(v).endswith("_reason")]:
            var = sets[name]
            what = REASONS.get(name, str(var.attrs.get("long_name", name)))
            if var.dims == ("set",):
                for s, reason in zip(var["set"].values, var.values, strict=True):
                    if _reason(reason):
                        out.append((str(s), what, _reason(reason)))
            elif set(var.dims) == {"set", ISOTOPE_DIM}:
                v = var.transpose("set", ISOTOPE_DIM)
                for i, s in enumerate(v["set"].values):
                    for j, iso in enumerate(v[ISOTOPE_DIM].values):
                        if _reason(v.values[i, j]):
                            out.append((f"{s}, {iso}", what, _reason(v.values[i, j])))
    run = getattr(results, "run", None)
    if run is not None:
        for name in [v for v in run.data_vars if str(v).endswith("_reason")]:
            var = run[name]
            what = REASONS.get(name, str(var.attrs.get("long_name", name)))
            if var.ndim == 0:
                if _reason(var.values.item()):
                    out.append(("run", what, _reason(var.values.item())))
            elif var.ndim == 1:
                labels = var[var.dims[0]].values if var.dims[0] in var.coords else range(
                    var.size)
                for label, reason in zip(labels, var.values, strict=True):
                    if _reason(reason):
                        out.append((f"run, {label}", what, _reason(reason)))
    for path in (progress or {}).get("incomplete", ()):
        out.append((str(path), "file never completed", "left out of the analysis: its size "
                    "stayed below what its header declares"))
    return out


def failures_section(results, progress: dict | None = None) -> str:
    found = failures(results, progress)
    if not found:
        return ('<section id="failures"><h2>Failures</h2><p class="banner good">No step '
                "failed: every recorded fit and estimate succeeded.</p></section>")
    items = "\n".join(f'<li><span class="where">{esc(where)}</span> — {esc(what)}: '
                      f"{esc(reason)}</li>" for where, what, reason in found)
    return (f'<section id="failures"><h2>Failures ({len(found)})</h2>'
            f'<div class="banner bad">{len(found)} step(s) could not be done; the run went on '
            f'without them.<ul class="failures">{items}</ul></div></section>')


# ---------------------------------------------------------------- run and sets


def run_section(results) -> str:
    run, sets = getattr(results, "run", None), getattr(results, "sets", None)
    names = set_names(results)
    rows = []
    ok = _flag(run, "xray_fit_success")
    note = (f"σ = {fixed(_get(run, 'A_x_sigma'), 3)} mV·µs, "
            f"{num(_get(run, 'xray_n_entries'))} X-rays fitted, "
            f"χ²/ndf = {fixed(_get(run, 'xray_chi2_ndf'), 2)}")
    if ok is False:
        note = f'<span class="bad">fit failed: {esc(_text(run, "xray_fit_reason"))}</span>'
    rows.append(("X-ray S2 area A<sub>x</sub> ± ci95",
                 pm(_get(run, "A_x_mean"), _get(run, "A_x_ci95"), "mV·µs"), note))
    source = _text(run, "g_S2_source")
    gain_note = "A<sub>x</sub> / N<sub>e,exp</sub>"
    if source and source != OWN_GAIN:
        gain_note = (f"from {esc(source)}"
                     + (f" (its lineage {esc(_text(run, 'g_S2_source_lineage')[:12])})"
                        if _text(run, "g_S2_source_lineage") else "")
                     + "; this run's X-ray fit: "
                     + pm(_get(run, "g_S2_own"), _get(run, "g_S2_own_err"), "mV·µs/electron"))
    rows.append(("S2 gain g<sub>S2</sub> ± ci95",
                 pm(_get(run, "g_S2"), _get(run, "g_S2_err"), "mV·µs/electron"), gain_note))
    attrs = run.attrs if run is not None else {}
    recoil = ""
    if "e_recoil" in attrs:
        recoil = (f"; r is against E<sub>R</sub> / W = {num(attrs['e_recoil'])} eV / "
                  f"{num(attrs.get('w_value'))} eV"
                  + (f" ({esc(str(attrs['e_recoil_source']))})"
                     if attrs.get("e_recoil_source") else ""))
    rows.append(("expected electrons N<sub>e,exp</sub>",
                 f"{num(_get(run, 'N_e_exp'))} electrons",
                 f"E<sub>x</sub> / W = {num(attrs.get('e_xray'))} eV / "
                 f"{num(attrs.get('w_value'))} eV{recoil}"))
    dok = _flag(run, "diffusion_success")
    dnote = (f"longitudinal, from σ² of the S2 duration against t<sub>drift</sub>/v²; "
             f"χ²/ndf = {fixed(_get(run, 'diffusion_chi2_ndf'), 2)}")
    if dok is False:
        dnote = f'<span class="bad">fit failed: {esc(_text(run, "diffusion_reason"))}</span>'
    rows.append(("diffusion D<sub>L</sub> ± 1σ",
                 pm(_get(run, "D_L"), _get(run, "D_L_err"), "mm²/µs"), dnote))
    rows.append(("σ<sub>0</sub>² ± 1σ", pm(_get(run, "sigma0_sq"), _get(run, "sigma0_sq_err"),
                                           "µs²"), "S2 duration variance at zero drift"))
    sattrs = sets.attrs if sets is not None else {}
    rows.append(("gas", f"{num(sattrs.get('pressure'))} bar, {num(sattrs.get('temperature'))} K",
                 "pressure, temperature"))
    total = _get(sets, "n_frames")
    frames = int(np.nansum(total)) if np.size(total) and finite(np.nansum(total)) else math.nan
    rows.append(("sets, frames", f"{len(names)} sets, {num(frames)} frames",
                 "valid frames of every set"))
    return '<section id="run"><h2>Run results</h2>' + key_values(rows) + "</section>"


def _s1_cell(row) -> Cell | str:
    if _flag(row, "s1_success") is False:
        return Cell("not found", "bad", _text(row, "s1_reason"))
    return pm(_get(row, "t_s1"), _get(row, "t_s1_std"))


def _window_cell(row) -> Cell | str:
    start, end = _get(row, "s2_window_start"), _get(row, "s2_window_end")
    if not (finite(start) and finite(end)):
        return Cell(MISSING, "bad" if _flag(row, "s2_window_success") is False else "",
                    _text(row, "s2_window_reason"))
    text = f"{fixed(start, 2)} – {fixed(end, 2)}"
    if _flag(row, "s2_window_estimated") is False:
        return Cell(f"{text} <small>fallback</small>", "num",
                    _text(row, "s2_window_reason") or "the fallback window (not estimated)")
    return text


def _area_cell(row) -> Cell | str:
    if _flag(row, "s2_fit_success") is False:
        return Cell("fit failed", "bad", _text(row, "s2_fit_reason"))
    return pm(_get(row, "s2_area_mean"), _get(row, "s2_area_ci95"))


SET_COLUMNS = (
    ("set", ""), ("E<sub>drift</sub>", "V/cm"),
    ("E<sub>EL</sub>", "V/cm"), ("t<sub>drift</sub>", "µs"), ("t<sub>S1</sub> ± spread", "µs"),
    ("S2 window", "µs"), ("frames", "count"), ("A<sub>ion</sub> ± ci95", "mV·µs"),
    ("X-rays accepted / events", "count"),
    ("r ± ci95", "dimensionless"), ("A<sub>ion</sub> / A<sub>x</sub> ± ci95", "dimensionless"),
)


def sets_section(results, links: dict[str, tuple[str, str]]) -> str:
    """The per-set table; ``links``: set -> (relative path, version) of its s2_results.json."""
    sets = getattr(results, "sets", None)
    rows = []
    for name in set_names(results):
        row = sets.sel(set=name)
        label = esc(name)
        if name in links:
            label = f'<a href="{href(*links[name])}">{label}</a>'
        acc, events = _get(row, "n_xray_accepted"), _get(row, "n_xray_events")
        rows.append([
            Cell(label, "name", f"gate {num(_get(row, 'gate'))} V, anode "
                                f"{num(_get(row, 'anode'))} V"),
            fixed(_get(row, "drift_field"), 1), fixed(_get(row, "EL_field"), 1),
            fixed(_get(row, "time_drift"), 2), _s1_cell(row), _window_cell(row),
            num(_get(row, "n_frames")), _area_cell(row),
            f"{num(acc)} / {num(events)}",
            pm(_get(row, "r"), _get(row, "r_err")),
            pm(_get(row, "norm_A_ion"), _get(row, "norm_A_ion_err")),
        ])
    if not rows:
        return '<section id="sets"><h2>Sets</h2><p class="meta">No set analysed yet.</p></section>'
    note = ("<p class=\"meta\">Uncertainties are 95 % confidence half-widths (ion and X-ray fits "
            "for r and A<sub>ion</sub>/A<sub>x</sub>); t<sub>S1</sub> ± its spread over the "
            "sampled frame chunks. A set name links to its <code>s2_results.json</code>; hover "
            "a red cell for its reason.</p>")
    return ('<section id="sets"><h2>Sets</h2>' + table(SET_COLUMNS, rows, cls="sets") + note
            + all_values(results) + "</section>")


def all_values(results) -> str:
    """Every per-set value (one row per variable), folded away."""
    sets = getattr(results, "sets", None)
    names = set_names(results)
    if not names:
        return ""
    rows = []
    for var_name in sorted(sets.variables, key=str):
        var = sets[var_name]
        if var.dims != ("set",) or var_name == "set":
            continue
        label = Cell(f'{esc(var.attrs.get("long_name", var_name))} '
                     f"<code>{esc(var_name)}</code>", "text")
        rows.append([label, Cell(esc(_units(var)), "text"),
                     *(_value_html(v.item() if hasattr(v, "item") else v, str(var_name))
                       for v in var.values)])
    header = [("quantity", ""), ("units", "")] + [(_wbr(n), "") for n in names]
    return ("<details><summary>Every per-set value</summary>"
            + table(header, rows, cls="values") + "</details>")


# ---------------------------------------------------------------- isotopes


def _paired(ds: xr.Dataset, names: list[str]) -> list[tuple[str, str | None]]:
    """(variable, its uncertainty variable or None), uncertainty variables folded in."""
    taken, out = set(), []
    for name in names:
        partners = ([name[:-5] + "_ci95"] if name.endswith("_mean") else []) + [
            f"{name}_ci95", f"{name}_err"]
        partner = next((p for p in partners if p in names and p != name), None)
        out.append((name, partner))
        if partner:
            taken.add(partner)
    return [(n, p) for n, p in out if n not in taken]


def isotopes_section(results) -> str:
    """Per set and isotope: every variable with an ``isotope`` dimension (none: no section)."""
    sets = getattr(results, "sets", None)
    if sets is None:
        return ""
    names = [str(v) for v in sets.data_vars
             if ISOTOPE_DIM in sets[v].dims and set(sets[v].dims) <= {"set", ISOTOPE_DIM}
             and not str(v).endswith("_reason")]
    if not names or ISOTOPE_DIM not in sets.dims:
        return ""
    columns = _paired(sets, names)
    header = [("set", ""), ("isotope", "")]
    for name, partner in columns:
        var = sets[name]
        label = esc(var.attrs.get("long_name", name))
        if partner:
            label += " ± " + ("ci95" if partner.endswith("_ci95") else "err")
        header.append((label, _units(var)))
    rows = []
    labels = sets[ISOTOPE_DIM].values if ISOTOPE_DIM in sets.coords else range(
        sets.sizes[ISOTOPE_DIM])
    for s in set_names(results):
        for k, iso in enumerate(labels):
            where = {"set": s, ISOTOPE_DIM: iso}
            row = [Cell(esc(s) if k == 0 else "", "name"), Cell(esc(iso), "text")]
            for name, partner in columns:
                value = _get(sets, name, **where)
                if partner:
                    row.append(pm(value, _get(sets, partner, **where)))
                else:
                    row.append(_value_html(value, name))
            rows.append(row)
    return ('<section id="isotopes"><h2>Per isotope</h2>' + table(header, rows, cls="isotopes")
            + "</section>")


# ---------------------------------------------------------------- progress (live)


def _when(value, now: datetime) -> datetime:
    if value is None:
        return now
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value).astimezone()
    return datetime.fromisoformat(str(value))


def _clock(start: datetime, seconds: float) -> str:
    """The time ``seconds`` after ``start``: ``14:32``, with the date when another day."""
    end = start + timedelta(seconds=seconds)
    return end.strftime("%H:%M" if end.date() == start.date() else "%Y-%m-%d %H:%M")


def set_eta(entry: dict) -> float:
    """Seconds to the expected file count: ``eta_s`` if given, else from the rate."""
    if entry.get("eta_s") is not None:
        return float(entry["eta_s"])
    expected, files = entry.get("expected_files"), entry.get("files", 0)
    rate = entry.get("rate_files_per_min")
    if expected is None:
        return math.nan
    if files >= expected:
        return 0.0
    if not finite(rate) or float(rate) <= 0:
        return math.nan
    return (expected - files) / float(rate) * 60.0


def progress_section(progress: dict, now: datetime) -> str:
    updated = _when(progress.get("updated"), now)
    rows = []
    total_files = total_frames = 0
    for name, entry in progress.get("sets", {}).items():
        files, frames = int(entry.get("files", 0)), int(entry.get("frames", 0))
        total_files, total_frames = total_files + files, total_frames + frames
        expected = entry.get("expected_files")
        eta = set_eta(entry)
        done = expected is not None and files >= expected
        finish = _clock(updated, eta) if finite(eta) and not done else MISSING
        rows.append([Cell(esc(name), "name"),
                     f"{files} / {expected}" if expected is not None else f"{files}",
                     num(frames), fixed(entry.get("rate_files_per_min"), 1),
                     "done" if done else duration(eta), finish])
    run_eta = progress.get("eta_s")
    expected = [e.get("expected_files") for e in progress.get("sets", {}).values()]
    if expected and None not in expected:
        total_files = f"{total_files} / {sum(expected)}"
    rows.append([Cell("<b>run</b>", "text"), f"<b>{total_files}</b>",
                 f"<b>{num(total_frames)}</b>", MISSING,
                 duration(run_eta) if run_eta is not None else MISSING,
                 _clock(updated, float(run_eta)) if finite(run_eta) else MISSING])
    header = (("set", ""), ("files so far / expected", "count"), ("frames", "count"),
              ("acquisition rate", "files/min"), ("time to expected files", "h min s"),
              ("expected end", "local time"))
    return ('<section id="progress"><h2>Acquisition progress</h2>'
            f'<p class="meta">updated {esc(updated.strftime("%Y-%m-%d %H:%M:%S %Z").strip())}'
            "</p>"
            + table(header, rows, cls="progress") + "</section>")


# ---------------------------------------------------------------- figures and files


def _figure(fig, caption: str, wide: bool) -> str:
    link = href(fig.path, fig.version)
    size = f' width="{fig.width}" height="{fig.height}"' if fig.width and fig.height else ""
    name = fig.path.rsplit("/", 1)[-1]
    return (f'<figure{" class=wide" if wide else ""}><a href="{link}">'
            f'<img src="{link}"{size} alt="{esc(caption)}"></a>'
            f'<figcaption>{esc(caption)} · <a href="{link}">{_wbr(name)}</a></figcaption>'
            "</figure>")


def _figure_kind(stem: str, prefix: str) -> str:
    return stem[len(prefix) + 1:] if stem.startswith(prefix + "_") else stem


def _order(kind: str) -> tuple:
    known = list(FIGURE_CAPTIONS)
    return (known.index(kind) if kind in known else len(known), kind)


def figures_section(figures: list, names: list[str], run_id: str) -> str:
    """Run figures first, then each set's, in :data:`FIGURE_CAPTIONS` order; a figure more
    than twice as wide as high takes a whole row.  Each opens full size when clicked."""
    per_set: dict[str, list] = {n: [] for n in names}
    run_figs = []
    for fig in figures:
        stem = fig.path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        owner = max((n for n in names if stem.startswith(n + "_")), key=len, default=None)
        (per_set[owner] if owner else run_figs).append(
            (_figure_kind(stem, owner or run_id), fig))

    def grid(items):
        items = sorted(items, key=lambda kf: _order(kf[0]))
        return '<div class="figures">' + "\n".join(
            _figure(f, FIGURE_CAPTIONS.get(k, k.replace("_", " ")),
                    bool(f.width and f.height and f.width > 2 * f.height))
            for k, f in items) + "</div>"

    if not figures:
        return ('<section id="figures"><h2>Figures</h2><p class="meta">No figure yet.</p>'
                "</section>")
    parts = ['<section id="figures"><h2>Figures</h2><p class="meta">Click a figure to open it '
             "full size (150 DPI PNG).</p>"]
    if run_figs:
        parts.append(f"<h3>Run {esc(run_id)}</h3>" + grid(run_figs))
    for name in names:
        if per_set[name]:
            parts.append(f'<h3 id="set-{esc(name)}">{_wbr(name)}</h3>' + grid(per_set[name]))
    return "\n".join(parts) + "</section>"


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{max(n, 1) / 1e3:.1f} kB"


def files_section(files: list, names: list[str]) -> str:
    """Links to every output file that is not a figure: JSON first, by run and by set."""
    def group_of(path: str) -> str:
        head = path.split("/", 1)[0]
        return head if head in names else "run"

    def key(f):
        return (0 if f.path.endswith(".json") else 1, f.path)

    groups: dict[str, list] = {}
    for f in files:
        groups.setdefault(group_of(f.path), []).append(f)
    if not groups:
        return ""
    parts = ['<section id="files"><h2>Files</h2><p class="meta">Every JSON file the run wrote, '
             "and its arrays (NPY: mV·µs areas in frame order) and per-frame tables "
             "(parquet); links are relative to this folder.</p>"]
    for group in ["run", *names]:
        if group not in groups:
            continue
        items = "".join(f'<li><a href="{href(f.path, f.version)}">{_wbr(f.path)}</a> '
                        f'<span class="meta">({_size(f.size)})</span></li>'
                        for f in sorted(groups[group], key=key))
        parts.append(f"<h3>{esc(group) if group == 'run' else _wbr(group)}</h3>"
                     f'<ul class="files">{items}</ul>')
    return "\n".join(parts) + "</section>"


# ---------------------------------------------------------------- lineage


def _json(value) -> str:
    return esc(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str))


def lineage_section(lineage: dict) -> str:
    """Stage versions and hashes, every config value read (with units, who reads it, and
    whether it differs from its default), the features, the input and package versions."""
    from ratag_xr.params import PARAMS

    if not lineage:
        return ""
    stages = []
    for name, lin in lineage.items():
        inp = lin.get("input") or {}
        stages.append([Cell(esc(name), "text"), num(lin.get("version")),
                       Cell(f"<code>{esc(str(lin.get('hash', ''))[:16])}</code>", "num",
                            str(lin.get("hash", ""))),
                       Cell(esc(", ".join(lin.get("upstream", {})) or MISSING), "text"),
                       Cell(f"<code>{esc(str(inp['manifest'])[:16])}</code>" if inp else MISSING,
                            "num", str(inp.get("manifest", "")))])
    config: dict[str, tuple] = {}
    features: dict[str, dict] = {}
    for name, lin in lineage.items():
        for key, value in lin.get("config", {}).items():
            config.setdefault(key, (value, []))[1].append(name)
        for fname, info in lin.get("features", {}).items():
            features[fname] = info
            for key, value in info.get("params", {}).items():
                config.setdefault(key, (value, []))
                config[key][1].append(f"{fname} feature")
    rows = []
    for key in sorted(config):
        value, readers = config[key]
        param = PARAMS.get(key)
        default = getattr(param, "default", None)
        changed = param is not None and json.dumps(value, default=str) != json.dumps(
            list(default) if isinstance(default, tuple) else default, default=str)
        rows.append([Cell(f"<code>{esc(key)}</code>", "text"),
                     Cell(f"<code>{_json(value)}</code>", "num changed" if changed else "num"),
                     Cell(esc(getattr(param, "units", "") or MISSING), "text"),
                     Cell(esc(", ".join(dict.fromkeys(readers))), "text"),
                     Cell(("<b>set</b> (default " + _json(default) + ")") if changed
                          else "default", "note"),
                     Cell(esc(getattr(param, "doc", "")), "note")])
    feats = [[Cell(esc(n), "text"), Cell(esc(i.get("pass", "")), "text"), num(i.get("version")),
              Cell(f"<code>{esc(i.get('source', ''))}</code>", "num")]
             for n, i in sorted(features.items())]
    first = next(iter(lineage.values()))
    versions = ", ".join(f"{esc(k)} {esc(v)}" for k, v in sorted(first.get("versions",
                                                                           {}).items()))
    inputs = next((lin["input"] for lin in lineage.values() if lin.get("input")), None)
    parts = ['<section id="lineage"><h2>Lineage</h2><p class="meta">What these results depend '
             "on. A stage is recomputed when its hash changes: its version, a config value it "
             "reads, a feature, an upstream stage or the raw files.</p>",
             table((("stage", ""), ("version", ""), ("lineage hash", "sha256, first 16"),
                    ("reads stages", ""), ("raw-file manifest", "sha256, first 16")), stages,
                   cls="lineage")]
    if inputs:
        nfiles = inputs.get("nfiles")
        parts.append(f"<p>Input: {len(inputs.get('sets', []))} set(s)"
                     + (f", test mode: the first {esc(nfiles)} file(s) of each set"
                        if nfiles else ", every ingested file") + ".</p>")
    parts.append("<h3>Configuration</h3>" + table(
        (("key", ""), ("value", ""), ("units", ""), ("read by", ""), ("vs default", ""),
         ("meaning", "")), rows, cls="config"))
    if feats:
        parts.append("<h3>Per-frame features</h3>" + table(
            (("feature", ""), ("pass", ""), ("version", ""), ("kernel source", "hash")), feats))
    parts.append(f"<p class=\"meta\">Package versions: {versions}.</p></section>")
    return "\n".join(parts)
