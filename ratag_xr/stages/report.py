"""Stage ``report``: ``OUT/report.html``, the run on one page (:mod:`ratag_xr.report`).

It reads every stage registered before it (so per-isotope results, or any stage added
later, appear without a change here): their per-set and per-run results, their lineages,
and the files they recorded, of which it shows every figure and links every JSON, NPY and
parquet file.  The page is recorded as the stage's file: a deleted or altered report is
written again on the next run.
"""

from __future__ import annotations

from ratag_xr.pipeline.results import Results, merge_parts, stored_files
from ratag_xr.report import REPORT_NAME, write_report
from ratag_xr.stages import STAGES, Stage, StageResult, register

#: every stage before this one, in run order
READS = tuple(STAGES)


def compute(ctx) -> StageResult:
    parts = {s: {p: ctx.load(s, p) for p in ("sets", "run")} for s in READS}
    merged = merge_parts(parts)
    results = Results(sets=merged["sets"], run=merged["run"], frames=merged["frames"],
                      lineage=ctx.upstream_lineages())
    files = [rec["path"] for s in READS for rec in stored_files(ctx.run.results, s)]
    path = write_report(ctx.run.out, results, files=files, run_id=ctx.run_id)
    return StageResult(files=[path])


STAGE = register(Stage(
    name="report",
    version=2,
    reads=tuple(f"stage:{s}" for s in READS) + ("config:run.run_id",),
    compute=compute,
    files=(REPORT_NAME,),
    doc="report.html: the run and set tables, every figure, links to every JSON file, the "
        "failures and the lineage on one page",
))
