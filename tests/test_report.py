"""The run report ``OUT/report.html``: written by ``run`` (stage ``report``), its numbers the
results', every figure and JSON file linked by a relative link to a file that is there,
failures with their reasons, the live variant's progress table and reload; and in a real
browser (headless Chromium), every figure loads."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import struct
import subprocess
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from ratag_xr.errors import ReportError
from ratag_xr.pipeline import load_results, open_analysis, run_pipeline
from ratag_xr.pipeline.results import stored_files
from ratag_xr.report import write_report
from ratag_xr.runner import run_stages
from ratag_xr.simulate import SimConfig, simulate_run

SIM = SimConfig(sets=((150, 1650), (300, 1800), (450, 1950)), files_per_set=2,
                frames_per_file=40, sampling_rate_gs=1.0, record_start_us=-4.0,
                record_end_us=26.0, xray_fraction=0.9, seed=8)
#: a set of 6 frames: too few for the S2 window statistics and the ion fit
TOO_FEW = "FieldScan_Gate600_Anode2100"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


needs_chromium = pytest.mark.skipif(
    chromium() is None, reason="Chromium absent: the report is not checked in a browser "
    "(apt-get install chromium; .ci/run installs it when run as root)")


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, client):
    root = tmp_path_factory.mktemp("report")
    run_dir = simulate_run(root / "raw", SIM, progress=False)
    few = simulate_run(root / "few", SIM.replace(sets=((600, 2100),), files_per_set=1,
                                                 frames_per_file=6, seed=9), progress=False)
    shutil.move(str(few / TOO_FEW), run_dir / TOO_FEW)
    out = root / "out"
    run_pipeline(run_dir, out=out, client=client, progress=False)
    return run_dir, out, load_results(out)


class Links(HTMLParser):
    """The links, images and meta tags of a page."""

    def __init__(self):
        super().__init__()
        self.href, self.src, self.meta, self.ids = [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "a" and "href" in a:
            self.href.append(a["href"])
        if tag == "img":
            self.src.append(a["src"])
        if tag == "meta":
            self.meta.append(a)
        if tag in ("script", "link", "iframe", "object", "embed"):
            raise AssertionError(f"the report has a <{tag}>")


def parse(page: Path) -> Links:
    links = Links()
    links.feed(page.read_text())
    return links


def target(link: str) -> str:
    """The file a relative link names (the ``?v=`` version dropped)."""
    parts = urlsplit(link)
    assert not parts.scheme and not parts.netloc and not link.startswith("/"), link
    return unquote(parts.path)


def pm(value, err) -> str:
    """value ± err as a physicist writes it: err to two significant digits."""
    d = max(0, 1 - math.floor(math.log10(err)))
    return f"{value:.{d}f} ± {err:.{d}f}"


def test_run_writes_the_report_and_rewrites_a_deleted_one(analysed, client):
    run_dir, out, _ = analysed
    page = out / "report.html"
    assert page.is_file()
    lines: list[str] = []
    run = open_analysis(run_dir, out=out, client=client)
    run.progress = False
    run_stages(run, ["report"], say=lines.append)
    assert "stage report: reused (lineage unchanged)" in lines
    page.unlink()
    lines.clear()
    run_stages(run, ["report"], say=lines.append)
    assert any(line.startswith("stage report: computed (output missing: report.html)")
               for line in lines), lines
    assert page.is_file()
    assert [r["path"] for r in stored_files(out / "results.zarr", "report")] == ["report.html"]


def test_the_page_holds_the_results_and_links_every_file(analysed, tmp_path):
    _, out, res = analysed
    page = out / "report.html"
    text = page.read_text()
    links = parse(page)
    # every figure shown (and opened full size by a click), every JSON/NPY/parquet linked
    pngs = sorted(r["path"] for r in stored_files(out / "results.zarr", "plots"))
    exported = sorted(r["path"] for r in stored_files(out / "results.zarr", "export"))
    assert len(pngs) == 2 * 4 + 5 and all(p.endswith(".png") for p in pngs)
    assert sorted(target(s) for s in links.src) == pngs
    linked = {target(h) for h in links.href if not h.startswith("#")}
    assert set(pngs) <= linked and set(exported) <= linked
    assert sum(p.endswith(".json") for p in exported) == 2 * 4 + 2  # + xray_metadata, diffusion
    for rel in linked:
        assert (out / rel).is_file(), rel
    # no absolute path, no network, nothing that reloads
    for where in (str(out), str(out.parent), str(Path.home())):
        assert where not in text
    assert "http://" not in text and "https://" not in text
    assert not [m for m in links.meta if m.get("http-equiv") == "refresh"]
    assert "progress" not in links.ids and "Acquisition progress" not in text
    assert "final</span>" in text
    # the numbers, with units in the headers
    sets, run = res.sets, res.run
    for name in map(str, sets.set.values):
        s = sets.sel(set=name)
        assert name in text
        assert f"{float(s.drift_field):.1f}" in text and f"{float(s.time_drift):.2f}" in text
        assert f"{int(s.n_xray_accepted)} / {int(s.n_xray_events)}" in text
        if name == TOO_FEW:
            continue
        assert pm(float(s.s2_area_mean), float(s.s2_area_ci95)) in text, name
        assert pm(float(s.r), float(s.r_err)) in text, name
        assert pm(float(s.t_s1), float(s.t_s1_std)) in text, name
        assert f"{float(s.s2_window_start):.2f} – {float(s.s2_window_end):.2f}" in text
    assert f"{pm(float(run.A_x_mean), float(run.A_x_ci95))} mV·µs" in text
    assert f"{pm(float(run.D_L), float(run.D_L_err))} mm²/µs" in text
    for unit in ("V/cm", "µs", "mV·µs", "mV·µs/electron", "electrons"):
        assert unit in text
    # the failures of the small set, with their reasons
    few = sets.sel(set=TOO_FEW)
    assert not bool(few.s2_fit_success)
    failures = text.split('id="failures"', 1)[1].split("</section>", 1)[0]
    assert "Failures (" in failures
    assert html.escape(str(few.s2_fit_reason.item())) in failures
    assert html.escape(str(few.s2_window_reason.item())) in failures
    assert "fit failed" in text.split('id="sets"', 1)[1]
    # the lineage: every stage's hash, the config values read, readable
    lineage = text.split('id="lineage"', 1)[1]
    for stage, lin in res.lineage.items():
        if stage != "report":
            assert lin["hash"][:16] in lineage, stage
    assert "<code>integrate.bin_cuts</code>" in lineage and "[0.0, 4.0]" in lineage


def _copy_outputs(out: Path, dest: Path) -> Path:
    """The output folder without its stores, elsewhere: the page must work there too."""
    shutil.copytree(out, dest, ignore=shutil.ignore_patterns("*.zarr", "*.jsonl", ".*"))
    return dest


PROGRESS = {
    "live": True,
    "refresh_s": 5,
    "updated": datetime(2026, 3, 12, 10, 0, 0),
    "sets": {
        "FieldScan_Gate150_Anode1650": {"files": 2, "frames": 80, "expected_files": 2,
                                        "rate_files_per_min": 12.0},
        "FieldScan_Gate300_Anode1800": {"files": 1, "frames": 40, "expected_files": 4,
                                        "rate_files_per_min": 0.1},
        "FieldScan_Gate900_Anode2400": {"files": 0, "frames": 0, "expected_files": 400},
    },
    "incomplete": ["FieldScan_Gate150_Anode1650/RUN1_20260312_Gate150_Anode1650_P3_0002.wfm"],
}


def test_live_page_shows_progress_and_reloads_the_final_one_does_not(analysed, tmp_path):
    _, out, res = analysed
    copy = _copy_outputs(out, tmp_path / "moved")
    page = write_report(copy, res, progress=PROGRESS)
    text = page.read_text()
    links = parse(page)
    assert [m["content"] for m in links.meta if m.get("http-equiv") == "refresh"] == ["5"]
    assert "live</span>" in text and "reloads every 5 s" in text
    progress = text.split('id="progress"', 1)[1].split("</section>", 1)[0]
    assert "2 / 2" in progress and "done" in progress
    assert "1 / 4" in progress and "30 min 00 s" in progress  # 3 files at 0.1 files/min
    assert "10:30" in progress  # the expected end of that set
    assert "FieldScan_Gate900_Anode2400" in progress and "0 / 400" in progress
    assert "<b>3 / 406</b>" in progress  # the run: files so far / expected
    assert "files/min" in progress and "12.0" in progress
    assert "never completed" in text and "P3_0002.wfm" in text
    for link in links.src + [h for h in links.href if not h.startswith("#")]:
        assert (copy / target(link)).is_file(), link
    final = write_report(copy, res, progress=dict(PROGRESS, live=False))
    text = final.read_text()
    assert not [m for m in parse(final).meta if m.get("http-equiv") == "refresh"]
    assert 'id="progress"' not in text and "final</span>" in text
    assert "never completed" in text  # the file left out stays reported
    with pytest.raises(ReportError, match=r"report\.html: progress\['sets'\]"):
        write_report(copy, res, progress={"live": True, "sets": {"x": 3}})
    # a live page whose fits have not reached the last set yet: no false failure
    from ratag_xr.pipeline.results import Results, load_stage, merge_parts

    parts = {stage: {p: load_stage(out / "results.zarr", stage, p) for p in ("sets", "run")}
             for stage in ("prepare", "frames", "integrate", "classify", "calibrate")}
    for stage in ("integrate", "classify", "calibrate"):
        parts[stage]["sets"] = parts[stage]["sets"].isel(set=slice(0, 2))
    merged = merge_parts(parts)
    partial = Results(sets=merged["sets"], run=merged["run"], frames=merged["frames"],
                      lineage={})
    text = write_report(copy, partial, progress=PROGRESS).read_text()
    failures = text.split('id="failures"', 1)[1].split("</section>", 1)[0]
    assert "nan" not in failures.lower() and "FieldScan_Gate450_Anode1950" not in failures
    assert "FieldScan_Gate600_Anode2100" in failures  # prepare's reason for that set
    # nothing analysed yet: the page still says what is known
    early = write_report(tmp_path / "early", None, progress=PROGRESS).read_text()
    assert "No set analysed yet" in early and "1 / 4" in early


PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.map.call(document.images, function (img) {
    return {src: img.getAttribute("src"), complete: img.complete,
            width: img.naturalWidth, height: img.naturalHeight};
  });
  var out = document.createElement("pre");
  out.id = "image-check";
  out.textContent = JSON.stringify(images);
  document.body.appendChild(out);
});
</script>"""


def images_in_browser(page: Path, profile: Path) -> list[dict]:
    """Every image of ``page`` as headless Chromium loaded it: a copy of the page beside it
    (so its relative links resolve) gets a small script that lists each image's natural
    size once the page has loaded; ``--dump-dom`` prints the result."""
    probe = page.with_name(f"probe-{page.name}")
    text = re.sub(r'<meta http-equiv="refresh"[^>]*>', "", page.read_text())
    probe.write_text(text.replace("</body>", PROBE + "</body>"))
    try:
        proc = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                               "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                              capture_output=True, text=True, timeout=180)
    finally:
        probe.unlink()
    found = re.search(r'<pre id="image-check">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no image check in Chromium's DOM (exit {proc.returncode}): " \
                  f"{proc.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def png_size(path: Path) -> tuple[int, int]:
    with open(path, "rb") as f:
        return struct.unpack(">II", f.read(24)[16:24])


@needs_chromium
def test_every_figure_loads_in_chromium(analysed, tmp_path):
    _, out, res = analysed
    copy = _copy_outputs(out, tmp_path / "moved")
    write_report(copy, res, progress=PROGRESS)  # the live variant, in a moved folder
    for folder in (out, copy):
        page = folder / "report.html"
        images = images_in_browser(page, tmp_path / f"profile-{folder.name}")
        assert len(images) == len(parse(page).src) == 13, folder
        for img in images:
            assert img["complete"] and img["width"] > 0, img
            assert (img["width"], img["height"]) == png_size(folder / target(img["src"])), img
    # the check sees a figure that does not load
    gone = target(parse(copy / "report.html").src[0])
    (copy / gone).unlink()
    broken = [img for img in images_in_browser(copy / "report.html", tmp_path / "profile-gone")
              if img["width"] == 0]
    assert [target(img["src"]) for img in broken] == [gone]


def test_an_s1_not_found_and_per_isotope_results_are_shown(analysed, tmp_path):
    """Values another stage may provide (per-isotope fits, by their ``isotope`` dimension)
    and a set whose S1 was not found, put into the real results."""
    import numpy as np
    import xarray as xr

    from ratag_xr.pipeline.results import Results
    from ratag_xr.report.sections import without_empty_alpha

    _, out, res = analysed
    res = without_empty_alpha(res)  # this PMT-only run's (empty) alpha results left out
    assert "isotope" not in res.sets.dims and "alpha_n_frames" not in res.run
    sets = res.sets.copy()
    name = "FieldScan_Gate300_Anode1800"
    sets["s1_success"] = sets.s1_success.where(sets.set != name, False)
    sets["s1_reason"] = sets.s1_reason.where(sets.set != name, "no peak at t < 0 in any of "
                                                                "the 5 chunk means")
    isotopes = ["Th228", "Ra224", "untagged"]
    shape = (sets.sizes["set"], len(isotopes))
    mean = np.linspace(1.0, 3.0, shape[0] * shape[1]).reshape(shape)
    fit_ok = np.ones(shape, dtype=bool)
    fit_ok[0, 1] = False
    reason = np.full(shape, "", dtype=object)
    reason[0, 1] = "only 4 Ra224 frames, need >= 20"
    coords = {"set": sets.set.values, "isotope": isotopes}
    sets = sets.assign(
        isotope_s2_area_mean=xr.DataArray(mean, coords, ("set", "isotope"),
                                          attrs={"units": "mV·µs", "long_name": "fitted mean "
                                                 "ion S2 area per isotope"}),
        isotope_s2_area_ci95=xr.DataArray(mean / 50, coords, ("set", "isotope"),
                                          attrs={"units": "mV·µs"}),
        isotope_fit_success=xr.DataArray(fit_ok, coords, ("set", "isotope")),
        isotope_fit_reason=xr.DataArray(reason, coords, ("set", "isotope"),
                                        attrs={"long_name": "why the isotope fit failed"}),
        isotope_n_frames=xr.DataArray(np.full(shape, 40), coords, ("set", "isotope"),
                                      attrs={"units": "1"}))
    copy = _copy_outputs(out, tmp_path / "copy")
    text = write_report(copy, Results(sets=sets, run=res.run, frames=xr.Dataset(),
                                      lineage=res.lineage)).read_text()
    failures = text.split('id="failures"', 1)[1].split("</section>", 1)[0]
    assert "S1 time not found: no peak at t &lt; 0 in any of the 5 chunk means" in failures
    assert "Th228" not in failures
    assert "Anode1650, Ra224</span> — why the isotope fit failed: only 4 Ra224" in failures
    table = text.split('id="sets"', 1)[1].split("</table>", 1)[0]
    assert "not found</td>" in table
    section = text.split('id="isotopes"', 1)[1].split("</section>", 1)[0]
    assert "fitted mean ion S2 area per isotope ± ci95" in section and "mV·µs" in section
    assert f"{mean[1, 2]:.3f} ± {mean[1, 2] / 50:.3f}" in section
    assert section.count("<tr>") == 1 + shape[0] * shape[1]
    assert '<td class="bad">no</td>' in section  # the failed isotope fit
    assert 'href="#isotopes"' in text
