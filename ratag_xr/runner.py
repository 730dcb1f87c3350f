"""The one stage runner: lock, client, lineage, reuse, ``--force``, saving, progress.

:func:`run_stages` runs the stages asked for and every stage they read, in order, on one
:class:`~ratag_xr.pipeline.context.Run`:

1. it holds the output folder's lock for the whole call (:mod:`ratag_xr.io.lock`);
2. it ingests new raw files when asked (the only step that looks at the raw folder);
3. it checks the config against the run (record lengths, set names) before any pass;
4. per stage, it computes the lineage from the stage's declaration (:func:`lineage`) and
   reuses the stored result when the lineage is the same and every file the stage wrote
   is still there unaltered; otherwise it computes the stage and saves it;
5. it starts the Dask client the first time a stage (or ingest) needs one, once per call,
   and not at all when everything is reused;
6. it says one line per stage: ``computed`` or ``reused``, and why.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ratag_xr import features as feature_registry
from ratag_xr.cluster import LazyClient
from ratag_xr.errors import ConfigError, RatagError, StoreError
from ratag_xr.io.lock import output_lock
from ratag_xr.params import PARAMS, check_against_data, warnings_against_data
from ratag_xr.pipeline.context import Run, manifest_hash, versions
from ratag_xr.pipeline.frames import analysis_nodes, monitor_order, set_order
from ratag_xr.pipeline.results import (
    load_stage,
    open_stage,
    save_stage,
    stored_files,
    stored_lineage,
    stored_parts,
)
from ratag_xr.stages import PARTS, STAGES, ConfigView, Stage, StageResult, closure
from ratag_xr.store.manifest import content_hash


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- lineage


def _digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def dataset_hash(ds) -> str:
    """Content hash of a (small) dataset given to a stage instead of a stored result."""
    digest = hashlib.sha256()
    for name in sorted(ds.variables):
        var = ds[name]
        digest.update(name.encode())
        digest.update(repr(var.dims).encode())
        digest.update(var.values.astype(str).tobytes() if var.dtype.kind in "OUT"
                      else var.values.tobytes())
    return digest.hexdigest()


def lineage(stage: Stage, run: Run, upstream: dict[str, str]) -> dict:
    """What ``stage``'s result depends on, from its declaration: its version, the package
    versions, every config value it reads (its own parameters and its features'), the
    features' versions and kernel sources, the upstream lineage hashes, for a stage
    that reads the waveforms, the input manifest and the test-mode file count, and what
    it reads from other runs (``Stage.external``).  ``hash`` changes when any of them
    does."""
    config = run.config
    body = {"stage": stage.name, "version": stage.version, "versions": versions(),
            "config": {k: config.get(k) for k in stage.config_keys()},
            "features": feature_registry.lineage(stage.features(), config),
            "upstream": dict(upstream)}
    if stage.reads_waveforms or stage.reads_monitors:
        sets = set_order(run.store, config.run) if stage.reads_waveforms else []
        if stage.reads_monitors:  # the alpha monitor sets' files (§11)
            sets = sets + monitor_order(run.store, config.run)
        first = stage.input_frames(config) if stage.input_frames else None
        body["input"] = {"sets": sets, "manifest": manifest_hash(run, sets, first),
                         "nfiles": run.nfiles, "first_frames": first}
    if stage.external is not None:  # results of other runs it reads (another run's g_S2)
        body["external"] = stage.external(config)
    body["hash"] = _digest(body)
    return body


def _plain(value):
    """``value`` as it reads back from the stored JSON (tuples become lists)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _changes(old: dict | None, new: dict) -> str:
    """Why a stored lineage is not the new one, in a few words."""
    if old is None:
        return "no stored result"
    new = _plain(new)
    reasons = []
    if old.get("version") != new["version"]:
        reasons.append(f"stage version {old.get('version')} -> {new['version']}")
    oc, nc = old.get("config", {}), new["config"]
    unset = "(unset)"
    changed = [k for k in sorted(set(nc) | set(oc)) if oc.get(k, unset) != nc.get(k, unset)]
    if changed:
        shown = ", ".join(f"{k} {oc.get(k, unset)!r} -> {nc.get(k, unset)!r}"
                          for k in changed[:3])
        reasons.append("config " + shown + (" ..." if len(changed) > 3 else ""))
    of, nf = old.get("features", {}), new["features"]
    names = [n for n in sorted(set(of) | set(nf)) if of.get(n) != nf.get(n)]
    if names:
        reasons.append(f"feature(s) {', '.join(names)} changed")
    if old.get("upstream") != new["upstream"]:
        reasons.append("upstream " + ", ".join(
            n for n in new["upstream"] if old.get("upstream", {}).get(n) != new["upstream"][n]
        ) + " changed")
    if old.get("input") != new.get("input"):
        reasons.append("raw files changed")
    oe, ne = old.get("external") or {}, new.get("external") or {}
    moved = [k for k in sorted(set(oe) | set(ne)) if oe.get(k) != ne.get(k)]
    if moved:
        reasons.append(f"external {', '.join(moved)} changed")
    if old.get("versions") != new["versions"]:
        reasons.append("package versions changed")
    return "; ".join(reasons) or "lineage changed"


# ---------------------------------------------------------------- written files


def file_record(out: Path, path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.relative_to(out)), "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "hash": content_hash(path)}


def _files_problem(out: Path, records: list[dict]) -> str | None:
    """None when every recorded file is there unaltered, else what is wrong."""
    for rec in records:
        path = out / rec["path"]
        if not path.is_file():
            return f"output missing: {rec['path']}"
        st = path.stat()
        if st.st_size != rec["size"]:
            return f"output altered: {rec['path']}"
        if st.st_mtime_ns != rec["mtime_ns"] and content_hash(path, rec["hash"]) != rec["hash"]:
            return f"output altered: {rec['path']}"
    return None


# ---------------------------------------------------------------- what compute sees


@dataclass
class StageContext:
    """What a stage's ``compute`` gets: the run, its declared config, its inputs."""

    run: Run
    stage: Stage
    config: ConfigView
    progress: bool
    _client: LazyClient
    _inputs: dict = field(default_factory=dict)  # stage -> {part: dataset} given directly
    _lineages: dict = field(default_factory=dict)
    #: the stored result of this stage differs only by new raw files: it may be added to
    appendable: bool = False
    #: the command's :class:`~ratag_xr.stages.plots.FigureRound` (figures drawn in helper
    #: processes as their stages are stored), or None
    figures: object | None = None

    def previous(self, part: str):
        """This stage's own stored ``part`` when :attr:`appendable` (else None)."""
        return load_stage(self.run.results, self.stage.name, part) if self.appendable \
            else None

    @property
    def client(self):
        """The Dask client (started on first use)."""
        return self._client.get()

    @property
    def client_factory(self):
        """``client`` as a callable, for what starts the cluster only if it needs it."""
        return self._client.get

    @property
    def run_id(self) -> str:
        return self.config.run.run_id or self.run.run_dir.name

    def load(self, stage: str, part: str):
        """A part (sets, frames, run) of a stage this one reads (None if not stored)."""
        return self._read(stage, part, load_stage)

    def open(self, stage: str, part: str):
        """A part of a stage this one reads, opened lazily (Dask arrays of its stored
        blocks: :mod:`ratag_xr.pipeline.partials` reduces them block by block), or the
        dataset given directly; None if not stored."""
        return self._read(stage, part, open_stage)

    def _read(self, stage: str, part: str, reader):
        """``part`` of ``stage`` as given directly, else ``reader``'s of the stored one."""
        if stage not in self.stage.upstream:
            raise RatagError(f"stage {self.stage.name!r} loads results of {stage!r} without "
                             f"declaring it (add 'stage:{stage}' to its reads)")
        given = self._inputs.get(stage, {})
        if part in given:
            return given[part]
        return reader(self.run.results, stage, part)

    def upstream_lineages(self) -> dict:
        return {name: self._lineages[name] for name in self.stage.upstream}

    def nodes(self):
        """The store's nodes (raw codes) for the per-frame passes."""
        if not self.stage.reads_waveforms:
            raise RatagError(f"stage {self.stage.name!r} reads the waveforms without "
                             "declaring it (add 'waveforms' to its reads)")
        return analysis_nodes(self.run.store, self.run.nfiles, self.sets)

    @property
    def sets(self) -> list[str]:
        """The sets analysed: the store's, chosen by ``run.sets`` / ``run.exclude``."""
        return set_order(self.run.store, self.run.config.run)


def _allowed_keys(stage: Stage) -> set[str]:
    return set(stage.config_keys()) | {k for k, p in PARAMS.items() if not p.lineage}


def _check_provided(stage: Stage, result: StageResult) -> None:
    """The stage returned what it promised (each part's variables), nothing else."""
    parts = result.parts()
    for part in PARTS:
        promised = set(stage.provided(part))
        ds = parts.get(part)
        if not promised and ds is None:
            continue
        if ds is None:
            raise RatagError(f"stage {stage.name!r} promised {part} {sorted(promised)} and "
                             "returned none")
        if part == "frames":  # feature outputs; the store's labels come along as coords
            got = set(ds.data_vars)
        else:
            got = set(ds.data_vars) | {c for c in ds.coords if c not in ds.dims}
        if got != promised:
            raise RatagError(f"stage {stage.name!r}: {part} promised {sorted(promised)}, "
                             f"returned {sorted(got)} (missing {sorted(promised - got)}, "
                             f"undeclared {sorted(got - promised)})")


# ---------------------------------------------------------------- the runner


def run_facts(run: Run) -> dict:
    """What the config is checked against: the analysed sets and their record lengths
    (``alpha_samples``: the alpha record of each set and monitor set that has one) and
    sample spacings (``dt_us``), and the output root (``out``)."""
    from ratag_xr.store import store_state

    state = store_state(run.store)
    sets = set_order(run.store, run.config.run)
    places = {**{n: state["sets"][n] for n in sets},
              **{n: state["monitors"][n] for n in monitor_order(run.store, run.config.run)}}
    alpha_keys = {n: state["nodes"][p["node"]].get("alpha_key") for n, p in places.items()}
    return {"sets": sets, "out": str(run.out),
            "n_samples": {n: int(state["nodes"][state["sets"][n]["node"]]["key"]["n_samples"])
                          for n in sets},
            "dt_us": {n: float(state["nodes"][state["sets"][n]["node"]]["key"]["x_spacing"])
                      * 1e6 for n in sets},
            "alpha_samples": {n: int(k["n_samples"]) for n, k in alpha_keys.items() if k}}


def _check_store(run: Run) -> None:
    from ratag_xr.store import store_state
    from ratag_xr.store.ingest import check_made_with

    check_made_with(dict(store_state(run.store)), run.config, run.store)


def run_stages(run: Run, names, *, ingest: bool = True, rebuild: bool = False,
               wait: bool = True, inputs: dict | None = None, say=_say,
               figures=None) -> dict[str, str]:
    """Run the stages ``names`` and the ones they read (see the module doc); returns each
    stage's outcome ("computed" or "reused").

    ``inputs`` gives a stage's input directly instead of the stored one (stage -> part ->
    dataset, e.g. the ion fits of :func:`~ratag_xr.pipeline.run_calibration_analysis`);
    its content hash replaces that stage's lineage hash upstream.

    ``figures``: :class:`~ratag_xr.plots.helpers.FigureHelpers` started by the caller
    (closed here).  When the ``plots`` stage is to be computed, each figure is asked of
    them as soon as the stages it draws are stored.
    """
    from ratag_xr.store import ingest as ingest_files

    order = closure(names)
    inputs = inputs or {}
    lazy = LazyClient(run.client, **_cluster_kwargs(run))
    outcome: dict[str, str] = {}
    with output_lock(run.out, wait=wait, say=say):
        try:
            if ingest:
                summary = ingest_files(run.run_dir, run.store, config=run.config,
                                       nfiles=run.nfiles, rebuild=rebuild, client=lazy.get,
                                       progress=run.progress,
                                       copy_frames=read_once_frames(run.config, order),
                                       accept=run.accept)
                say(str(summary))
            if not run.store.exists():
                raise StoreError(f"{run.store}: no waveform store (ingest the run first)")
            _check_store(run)
            facts = run_facts(run)
            check_against_data(run.config, facts)
            for text in warnings_against_data(run.config, facts):
                say(f"warning: {text}")
            hashes: dict[str, str] = {}
            lineages: dict[str, dict] = {}
            round_ = _figure_round(run, order, figures, inputs)
            if round_ is None and figures is not None:
                figures.close()  # nothing to draw: free their cores now
            for name in order:
                stage = STAGES[name]
                lin = _stage_lineage(run, stage, hashes, inputs)
                stored = stored_lineage(run.results, name)
                why = _reuse_problem(run, stage, stored, lin)
                appendable = (why is not None and stage.incremental and not run.force
                              and _only_input_changed(stored, lin))
                if why is None:
                    say(f"stage {name}: reused (lineage unchanged)")
                    outcome[name] = "reused"
                else:
                    t0 = time.perf_counter()
                    _compute(run, stage, lin, lazy, inputs, lineages, appendable,
                             round_ if name == "plots" else None)
                    how = "; new files added to the stored result" if appendable else ""
                    say(f"stage {name}: computed ({why}{how}) in "
                        f"{time.perf_counter() - t0:.1f} s")
                    outcome[name] = "computed"
                hashes[name] = lin["hash"]
                lineages[name] = lin
                if round_ is not None:
                    round_.stages_done(lineages)
        finally:
            if figures is not None:
                figures.close()
            lazy.close()
    return outcome


def _figure_round(run: Run, order, figures, inputs):
    """A :class:`~ratag_xr.stages.plots.FigureRound` on ``figures`` when the ``plots``
    stage of ``order`` is to be computed from stored results (none are given), else
    None."""
    if figures is None or "plots" not in order or inputs:
        return None
    from ratag_xr.stages.plots import FigureRound, figure_job

    lin = planned_lineages(run, order)["plots"]
    if _reuse_problem(run, STAGES["plots"], stored_lineage(run.results, "plots"), lin) is None:
        return None
    return FigureRound(figure_job(run, run.config), run.results, figures)


def read_once_frames(config, order) -> int | None:
    """The frames ingest copies before the analysis (None: every file): with both
    estimates limited (``prepare.s1_frames``, ``prepare.s2_window_frames``) and the
    ``frames`` stage to run, only the files holding each set's first frames; the frames
    stage reads the rest once."""
    from ratag_xr.stages.prepare import estimate_frames

    return estimate_frames(config) if "frames" in order else None


#: ``cluster.processes: auto`` uses worker processes from this much raw data on
PROCESSES_FROM_BYTES = 2e9


def _raw_bytes(run_dir: Path) -> int:
    try:
        return sum(p.stat().st_size for p in Path(run_dir).glob("*/*") if
                   p.suffix.lower() == ".wfm")
    except OSError:
        return 0


def _cluster_kwargs(run: Run) -> dict:
    c = run.config.cluster
    processes = {"true": True, "false": False}.get(c.processes)
    if processes is None:
        processes = _raw_bytes(run.run_dir) >= PROCESSES_FROM_BYTES
    return {"workers": c.workers, "threads": c.threads, "memory": c.memory, "jobs": c.jobs,
            "processes": processes}


def _stage_lineage(run: Run, stage: Stage, hashes: dict[str, str], inputs: dict) -> dict:
    """:func:`lineage` of ``stage``, its upstream hashes from ``hashes`` (of the stages
    before it) or from the content of a given input."""
    upstream = {u: "given:" + dataset_hash(next(iter(inputs[u].values()))) if u in inputs
                else hashes[u] for u in stage.upstream}
    return lineage(stage, run, upstream)


def plan_stages(run: Run, names) -> dict[str, str | None]:
    """What :func:`run_stages` would do now, computing and ingesting nothing: per stage (the
    ones named and those they read, in run order) None when its stored result would be
    reused, else why it would be computed.  A lineage never depends on a computed result,
    so the plan is exact for the store as it is (new raw files are not looked at)."""
    return {name: _reuse_problem(run, STAGES[name], stored_lineage(run.results, name), lin)
            for name, lin in planned_lineages(run, names).items()}


def planned_lineages(run: Run, names) -> dict[str, dict]:
    """The lineage each stage of ``names`` (and of those they read, in run order) has for
    the run's config and store as they are now (nothing is computed)."""
    if not run.store.exists():
        raise StoreError(f"{run.store}: no waveform store (ingest the run first)")
    hashes: dict[str, str] = {}
    out: dict[str, dict] = {}
    for name in closure(names):
        out[name] = _stage_lineage(run, STAGES[name], hashes, {})
        hashes[name] = out[name]["hash"]
    return out


def _reuse_problem(run: Run, stage: Stage, stored: dict | None, lin: dict) -> str | None:
    """None when the stored result of ``stage`` can be reused, else why not."""
    if run.force:
        return "--force"
    if stored is None or stored.get("hash") != lin["hash"]:
        return _changes(stored, lin)
    missing = [p for p in PARTS if stage.provided(p)
               and p not in stored_parts(run.results, stage.name)]
    if missing:
        return f"stored {', '.join(missing)} missing"
    return _files_problem(run.out, stored_files(run.results, stage.name))


def _only_input_changed(stored: dict | None, lin: dict) -> bool:
    """True when a stored lineage differs from ``lin`` in its raw-file input alone (new
    raw files arrived; nothing else changed): an incremental stage may then add to its
    stored result instead of starting over."""
    if stored is None:
        return False
    skip = {"input", "hash"}
    return {k: v for k, v in stored.items() if k not in skip} == _plain(
        {k: v for k, v in lin.items() if k not in skip})


def _compute(run: Run, stage: Stage, lin: dict, lazy: LazyClient, inputs: dict,
             lineages: dict, appendable: bool = False, figures=None) -> None:
    ctx = StageContext(run=run, stage=stage,
                       config=ConfigView(run.config, _allowed_keys(stage), stage.name),
                       progress=run.progress, _client=lazy, _inputs=inputs,
                       _lineages=lineages, appendable=appendable, figures=figures)
    result = stage.compute(ctx)
    _check_provided(stage, result)
    files = [file_record(run.out, Path(p)) for p in result.files]
    save_stage(run.results, stage.name, lin, client=lazy.get() if lazy.started else None,
               files=files, **result.parts())


# ---------------------------------------------------------------- the whole pipeline

#: What ``--stages`` accepts: ingest, then every registered stage in run order.
PIPELINE = ("ingest", *STAGES)


def run_pipeline(target, *, out=None, config=None, client=None, nfiles=None, stages=None,
                 force: bool = False, rebuild: bool = False, wait: bool = True,
                 progress: bool = True, figures=None) -> Run:
    """Run ``stages`` (default: all, ``ingest`` first) of a run; returns its :class:`Run`.

    ``client`` is a ``distributed.Client`` or a cluster spec (``local``, ``slurm``, ``pbs``,
    ``tcp://host:port``); by default the run config's ``cluster`` section decides, and the
    cluster is started only if a stage needs computing.  A stage asked for brings the
    stages it reads (reused when current).  ``rebuild`` deletes the waveform store first
    (only if ratag_xr made it).  The output folder is locked for the whole call: another
    command on it waits (``wait=False``: refuses with a :class:`~ratag_xr.errors.BusyError`).
    ``figures``: :class:`~ratag_xr.plots.helpers.FigureHelpers` to draw the figures in
    (closed when the call ends; see :func:`run_stages`).
    """
    from ratag_xr.pipeline.context import open_analysis

    run = open_analysis(target, out=out, config=config, client=client, nfiles=nfiles,
                        force=force)
    run.progress = progress
    if run.client is None:
        run.client = run.config.cluster.spec
    stages = tuple(stages or PIPELINE)
    unknown = [s for s in stages if s not in PIPELINE]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; stages are {list(PIPELINE)}")
    analysis = [s for s in stages if s != "ingest"]
    if analysis:
        run_stages(run, analysis, ingest="ingest" in stages, rebuild=rebuild, wait=wait,
                   figures=figures)
    elif "ingest" in stages:
        if figures is not None:
            figures.close()
        from ratag_xr.store import ingest as ingest_files

        lazy = LazyClient(run.client, **_cluster_kwargs(run))
        with output_lock(run.out, wait=wait):
            try:
                _say(str(ingest_files(run.run_dir, run.store, config=run.config,
                                      nfiles=run.nfiles, rebuild=rebuild, client=lazy.get,
                                      progress=progress)))
            finally:
                lazy.close()
    return run
