"""The run report ``OUT/report.html``: one page with everything a run produced.

Run and set tables (fields, t_s1, S2 window, mean area ± ci95, X-rays accepted, r, and the
per-isotope results where the results hold them), every figure, links to every JSON file,
the failures with their reasons and the lineage (stage hashes, every config value read).
Plain HTML with an inline style sheet: no script, no network, no server; every link is
relative, so the output folder can be moved or copied and the page still works.

``ratag-xr run`` writes it through the ``report`` stage; a follower of an acquisition
(``ratag-xr watch``) calls :func:`write_report` with its current results and a
``progress`` mapping: the page then shows the acquisition's progress and reloads itself.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ratag_xr.errors import ReportError
from ratag_xr.io.atomic import atomic_write_text
from ratag_xr.report import sections
from ratag_xr.report.html import CSS, esc

__all__ = ["REPORT_NAME", "OutputFile", "output_files", "render_report", "write_report"]

REPORT_NAME = "report.html"
#: reload period (s) of the live page unless ``progress["refresh_s"]`` says otherwise
REFRESH_S = 10
#: suffixes of the files the report links (PNG figures are shown, the others listed)
LINKED = (".png", ".json", ".npy", ".parquet")


@dataclass(frozen=True)
class OutputFile:
    """A file the report links: ``path`` relative to OUT (``/``-separated), its size in
    bytes, a version token that changes when the file does, and a PNG's pixel size."""

    path: str
    size: int
    version: str
    width: int | None = None
    height: int | None = None


def _png_size(path: Path) -> tuple[int | None, int | None]:
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) == 24 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    return None, None


def output_files(out, paths=None, set_names=()) -> list[OutputFile]:
    """The files of ``out`` the report links: ``paths`` (relative to ``out`` or inside it),
    or by default every PNG, JSON, NPY and parquet file in ``out/plots`` and in each set's
    folder.  Files that do not exist (any more) and hidden files are left out."""
    out = Path(out)
    if paths is None:
        folders = [out / "plots", *(out / n for n in set_names)]
        paths = [p for folder in folders if folder.is_dir() for p in sorted(folder.iterdir())]
    found = {}
    for p in paths:
        p = Path(p)
        full = p if p.is_absolute() else out / p
        try:
            rel = full.relative_to(out)
        except ValueError:
            raise ReportError(out / REPORT_NAME, f"{full} is not inside the output folder; "
                              "the report links only files beside it") from None
        if (full.suffix.lower() not in LINKED or not full.is_file()
                or any(part.startswith(".") for part in rel.parts)):
            continue
        st = full.stat()
        width, height = _png_size(full) if full.suffix.lower() == ".png" else (None, None)
        found[rel.as_posix()] = OutputFile(rel.as_posix(), st.st_size,
                                           f"{st.st_mtime_ns:x}{st.st_size:x}", width, height)
    return [found[k] for k in sorted(found)]


def _check_progress(progress, where: Path) -> dict | None:
    if progress is None:
        return None
    if not isinstance(progress, dict) or not isinstance(progress.get("sets", {}), dict):
        raise ReportError(where, "progress must be a mapping with a 'sets' mapping "
                          f"(set name -> counts), got {progress!r:.200}")
    for name, entry in progress.get("sets", {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("files", 0), int):
            raise ReportError(where, f"progress['sets'][{name!r}] must be a mapping with "
                              f"whole 'files' (and 'frames'), got {entry!r:.200}")
    refresh = progress.get("refresh_s", REFRESH_S)
    if not isinstance(refresh, int | float) or not refresh >= 1:
        raise ReportError(where, f"progress['refresh_s'] must be a number of seconds >= 1, "
                          f"got {refresh!r}")
    return progress


def render_report(results, files: list[OutputFile], *, run_id: str,
                  progress: dict | None = None, now: datetime | None = None) -> str:
    """The page as text (no I/O): ``results`` (a :class:`~ratag_xr.pipeline.Results`, or
    None before any), ``files`` from :func:`output_files`, ``progress`` as for
    :func:`write_report`."""
    from ratag_xr import __version__

    now = now or datetime.now().astimezone()
    results = sections.without_empty_alpha(results)
    live = bool(progress and progress.get("live"))
    names = sections.set_names(results)
    refresh = int(round(float(progress.get("refresh_s", REFRESH_S)))) if live else None
    figures = [f for f in files if f.path.lower().endswith(".png")]
    others = [f for f in files if not f.path.lower().endswith(".png")]
    s2_json = {n: (f.path, f.version) for f in others for n in names
               if f.path == f"{n}/s2_results.json"}
    lineage = getattr(results, "lineage", None) or {}
    status = ('<span class="badge live">live</span>' if live
              else '<span class="badge final">final</span>')
    written = now.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    nav = [("progress", "Progress")] if live else []
    nav += [("failures", "Failures"), ("run", "Run"), ("sets", "Sets")]
    isotopes = sections.isotopes_section(results)
    nav += [("isotopes", "Isotopes")] if isotopes else []
    nav += [("figures", "Figures"), ("files", "Files"), ("lineage", "Lineage")]
    body = [
        "<header>",
        f"<h1>{esc(run_id)} — run report {status}</h1>",
        f'<p class="meta">{len(names)} set(s) · written {esc(written)} by ratag_xr '
        f"{esc(__version__)}</p>",
        "<nav>" + "".join(f'<a href="#{a}">{t}</a>' for a, t in nav) + "</nav>",
    ]
    if live:
        body.append(f'<p class="banner live"><b>Acquisition in progress.</b> The numbers and '
                    f"figures are those of the files complete so far; this page reloads every "
                    f"{refresh} s.</p>")
    body.append("</header>")
    if live:
        body.append(sections.progress_section(progress, now))
    body += [sections.failures_section(results, progress), sections.run_section(results),
             sections.sets_section(results, s2_json), isotopes,
             sections.figures_section(figures, names, run_id),
             sections.files_section(others, names), sections.lineage_section(lineage),
             "<footer>Plain HTML: no script, no network; every link is relative to this "
             "folder. Units: times µs, areas mV·µs, fields V/cm; uncertainties as stated per "
             "column.</footer>"]
    head = ['<!DOCTYPE html>', '<html lang="en">', "<head>", '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">']
    if live:
        head.append(f'<meta http-equiv="refresh" content="{refresh}">')
    head += [f"<title>{esc(run_id)} — ratag_xr run report{' (live)' if live else ''}</title>",
             f"<style>{CSS}</style>", "</head>", "<body>"]
    return "\n".join(head + [b for b in body if b] + ["</body>", "</html>", ""])


def write_report(out, results, *, progress: dict | None = None, files=None,
                 run_id: str | None = None) -> Path:
    """Write ``out/report.html`` atomically from ``results``; returns its path.

    ``results``: a :class:`~ratag_xr.pipeline.Results` (``sets`` and ``run`` are shown;
    ``frames`` is not read, so an empty dataset will do; ``lineage``: stage -> lineage as
    stored), or None when nothing is analysed yet.  ``files``: the output files to link,
    relative to ``out`` (default: every PNG/JSON/NPY/parquet file in ``out/plots`` and in
    each set's folder, see :func:`output_files`).  ``run_id``: default the results'
    ``run_id`` attribute, else the folder's name.

    ``progress`` (optional), while a run is being acquired::

        {"live": True,               # the page shows the table below and reloads itself;
                                     # False or no progress: the final page (no reload)
         "refresh_s": 10,            # reload period, s (>= 1; default 10)
         "updated": datetime | ISO text | Unix seconds,   # when counted (default: now)
         "sets": {                   # per set, in the order to show
             "FieldScan_Gate100_Anode1600": {
                 "files": 12,                # complete files taken so far
                 "frames": 840,              # their frames
                 "expected_files": 400,      # optional: files the set will have
                 "rate_files_per_min": 11.8, # optional: recent acquisition rate
                 "eta_s": 1972.0,            # optional: s to expected_files (default:
             },                              # from the rate)
         },
         "eta_s": 15320.0,           # optional: s to the end of the whole run
         "incomplete": ["FieldScan_Gate100_Anode1600/RUN1_..._P3_7Wfm_Ch1.wfm"],
                                     # optional: files that never completed (listed as
        }                            # failures, on the final page too)

    Raises :class:`~ratag_xr.errors.ReportError` naming the report when ``progress`` or
    ``files`` do not fit.
    """
    out = Path(out)
    path = out / REPORT_NAME
    progress = _check_progress(progress, path)
    sets = getattr(results, "sets", None)
    names = sections.set_names(results)
    if run_id is None:
        run_id = str((sets.attrs.get("run_id") if sets is not None else None) or out.name)
    linked = output_files(out, files, names)
    text = render_report(results, linked, run_id=run_id, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, text)
