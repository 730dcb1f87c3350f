"""Ingest: read every raw ``.wfm`` file once into the Zarr waveform store.

The driver (this process) plans: it discovers the run, reads headers (cheap), assigns
each new file to a node and to frame slots, and logs a ``planned`` manifest event.
Each file is then one Dask task that copies its frames chunk by chunk into its own
slots (no two tasks share a chunk, see :mod:`ratag_xr.store.layout`).  When a task
finishes, the driver writes the file's per-frame coordinates and only then logs ``ok``.

Kill-safety: an interrupted file keeps its ``planned`` slots and is rewritten whole on
the next run; an ``ok`` file is never touched again.  Memory: a task holds one chunk.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr

from ratag_xr.config import Config, polarity_sign
from ratag_xr.errors import IngestOrderError, OwnershipError, StoreError, WfmError
from ratag_xr.io.lock import writable_folder
from ratag_xr.io.owned import mark, remove_store, store_kind
from ratag_xr.io.wfm import read_wfm
from ratag_xr.store import layout as L
from ratag_xr.store.discover import RunLayout, SetLayout, discover_run
from ratag_xr.store.manifest import Manifest, content_hash, file_fingerprint
from ratag_xr.store.schema import create_node, grow_node, write_file_coords, write_set_coords


@dataclass
class FileTask:
    set_name: str
    path: Path
    node: str
    set_index: int
    slot0: int
    n_frames: int


@dataclass
class IngestSummary:
    """What an ingest did: files and frames written now, in total, and skipped."""

    store: Path
    files_written: int = 0
    frames_written: int = 0
    files_ok: int = 0
    frames_ok: int = 0
    bad: list[dict] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"store {self.store}: {self.files_written} file(s) / {self.frames_written} "
                 f"frame(s) ingested now; {self.files_ok} file(s) / {self.frames_ok} frame(s) "
                 f"in the store; {len(self.bad)} file(s) skipped"]
        lines += [f"  skipped {b['set']}/{b['file']}: {b['reason']}" for b in self.bad]
        return "\n".join(lines)


def default_store(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """``OUT/waveforms.zarr``; ``OUT`` defaults to the run directory.  An ``out`` ending in
    ``.zarr`` names the store itself."""
    out = Path(out if out is not None else run_dir)
    return out if out.suffix == ".zarr" else out / L.STORE_NAME


def open_store(store: Path) -> zarr.Group:
    """The waveform store at ``store``, created (and marked as ratag_xr's) if absent.

    An existing folder that is not a ratag_xr waveform store is refused: ingest never
    writes into someone else's folder.
    """
    if store.exists() and (store_kind(store) != "waveforms"):
        if store.is_dir() and not any(store.iterdir()):
            pass  # an empty folder: ours from now on
        else:
            raise OwnershipError(store, "not a ratag_xr waveform store; give --out a new "
                                 "folder (or an output root: the store is OUT/waveforms.zarr)")
    writable_folder(store.parent, "output folder")
    root = zarr.open_group(store=str(store), mode="a", zarr_format=3)
    if store_kind(store) != "waveforms":
        mark(root, "waveforms")
    return root


def _copy_file(task: FileTask, store: str, chunk: int) -> dict:
    """Dask task: copy one raw file's frames into its slots; return its per-frame facts."""
    arr = zarr.open_array(store=store, path=f"{task.node}/waveform", mode="r+")
    digest = content_hash(task.path)
    with read_wfm(task.path) as wfm:
        if wfm.n_frames != task.n_frames:
            raise WfmError(task.path, f"frame count changed since planning: expected "
                           f"{task.n_frames}, found {wfm.n_frames}")
        buffer = np.zeros((1, chunk, wfm.n_samples), dtype=wfm.raw_dtype)
        for start in range(0, wfm.n_frames, chunk):
            stop = min(start + chunk, wfm.n_frames)
            buffer[0, : stop - start] = wfm.raw[start:stop]
            buffer[0, stop - start:] = 0
            slot = task.slot0 + start
            arr[task.set_index: task.set_index + 1, slot: slot + chunk, :] = buffer
        trigger_ns = wfm.trigger_time.astype("datetime64[ns]").astype(np.int64)
    return {"hash": digest, "trigger_ns": trigger_ns, **file_fingerprint(task.path)}


def _read_state(root: zarr.Group) -> dict:
    state = dict(root.attrs.get(L.ATTRS_KEY, {}))
    if state and state.get("format") != L.FORMAT_VERSION:
        raise StoreError(f"store format {state.get('format')} is not {L.FORMAT_VERSION}: "
                         "rebuild it (--rebuild)")
    state.setdefault("format", L.FORMAT_VERSION)
    state.setdefault("sets", {})
    state.setdefault("nodes", {})
    return state


class _Planner:
    """Decides, from the manifest and headers, which files to write where."""

    def __init__(self, root, state, manifest: Manifest, config: Config, report):
        self.root, self.state, self.manifest = root, state, manifest
        self.config, self.report = config, report
        self.tasks: list[FileTask] = []
        self.node_sizes: dict[str, int] = {}  # node -> frame slots needed

    def plan_set(self, s: SetLayout) -> None:
        info = self.state["sets"].get(s.name)
        known = self.manifest.for_set(s.name)
        placed = [e for e in known if e["status"] in ("planned", "ok")]
        next_slot = max((e["slot0"] + e["slots"] for e in placed), default=0)
        last_name = max((e["file"] for e in placed), default=None)
        for path in s.files:
            event = self.manifest.get(s.name, path.name)
            if event is not None and event["status"] != "bad":
                self._check_unchanged(s, path, event)
                if event["status"] == "planned":
                    self.tasks.append(self._task(s, path, event))
                continue
            if event is not None and file_fingerprint(path) == event["fingerprint"]:
                continue  # known bad file, unchanged: still skipped, already reported
            if last_name is not None and path.name < last_name:
                raise IngestOrderError(
                    f"{path}: new file sorts before already ingested {s.name}/{last_name}; "
                    "frame order would change: rebuild the store (--rebuild)")
            try:
                with read_wfm(path) as wfm:
                    key, n_frames = L.AxisKey.from_wfm(wfm), wfm.n_frames
            except WfmError as err:
                self._bad(s, path, err.problem)
                continue
            if info is None:
                info = self._place_set(s, key, n_frames)
            node_key = L.AxisKey(**self.state["nodes"][info["node"]]["key"])
            if key != node_key:
                self._bad(s, path, "time axis or scaling differs from the set's first file: "
                          + "; ".join(node_key.differences(key)))
                continue
            chunk = self.state["nodes"][info["node"]]["chunk"]
            event = {"set": s.name, "file": path.name, "status": "planned",
                     "node": info["node"], "set_index": info["index"], "slot0": next_slot,
                     "slots": L.slots_for(n_frames, chunk), "n_frames": n_frames,
                     "fingerprint": file_fingerprint(path)}
            self.manifest.append(event)
            self.tasks.append(self._task(s, path, event))
            next_slot += event["slots"]
            last_name = path.name
        if info is not None:
            node = info["node"]
            self.node_sizes[node] = max(self.node_sizes.get(node, 0), next_slot)

    def _check_unchanged(self, s: SetLayout, path: Path, event: dict) -> None:
        if file_fingerprint(path) != event["fingerprint"]:
            raise StoreError(f"{path}: changed since it was ingested (size or modification "
                             "time differ from the manifest): rebuild the store (--rebuild)")

    def _task(self, s: SetLayout, path: Path, event: dict) -> FileTask:
        return FileTask(set_name=s.name, path=path, node=event["node"],
                        set_index=event["set_index"], slot0=event["slot0"],
                        n_frames=event["n_frames"])

    def _bad(self, s: SetLayout, path: Path, reason: str) -> None:
        self.manifest.append({"set": s.name, "file": path.name, "status": "bad",
                              "reason": reason, "fingerprint": file_fingerprint(path)})
        self.report(f"skipping {s.name}/{path.name}: {reason}")

    def _place_set(self, s: SetLayout, key: L.AxisKey, n_frames: int) -> dict:
        nodes = self.state["nodes"]
        node = next((n for n, v in nodes.items() if L.AxisKey(**v["key"]) == key), None)
        if node is None:
            node = f"{L.NODE_PREFIX}{len(nodes)}"
            ing = self.config.ingest
            chunk = L.frames_per_chunk(n_frames, key.n_samples, np.dtype(key.dtype).itemsize,
                                       ing.chunk_mb)
            nodes[node] = {"key": key.to_dict(), "chunk": chunk, "n_sets": 0,
                           "codec": {"compressor": ing.compressor, "clevel": ing.clevel,
                                     "shuffle": ing.shuffle}}
        index = nodes[node]["n_sets"]
        nodes[node]["n_sets"] += 1
        info = {"node": node, "index": index, "gate": s.gate, "anode": s.anode}
        self.state["sets"][s.name] = info
        # Persist the placement before any manifest event refers to it (kill-safety).
        self.root.attrs[L.ATTRS_KEY] = self.state
        return info


def ingest(run_dir: str | Path, store: str | Path | None = None, *, config: Config | None = None,
           nfiles: int | None = None, rebuild: bool = False, client=None,
           progress: bool = True) -> IngestSummary:
    """Read the raw files of ``run_dir`` into the Zarr store ``store`` (created if absent).

    Only files not yet in the store are read; a new file sorting before ingested ones is an
    :class:`~ratag_xr.errors.IngestOrderError` (use ``rebuild=True``).  Corrupt files are
    reported, recorded in the manifest and skipped.  ``client`` is a ``distributed.Client``;
    without one a LocalCluster sized to the machine is started for the duration.
    """
    config = config or Config()
    store = Path(store) if store is not None else default_store(run_dir)
    nfiles = nfiles if nfiles is not None else config.ingest.nfiles
    layout: RunLayout = discover_run(run_dir, config.run, nfiles=nfiles)

    def report(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if rebuild:
        remove_store(store, "waveforms")  # refuses (deletes nothing) unless ratag_xr made it
        L.manifest_path(store).unlink(missing_ok=True)
    root = open_store(store)
    state = _read_state(root)
    manifest = Manifest.load(L.manifest_path(store))
    planner = _Planner(root, state, manifest, config, report)
    for s in layout.sets:
        planner.plan_set(s)
    state.update(run_id=layout.run_id, run_dir=str(layout.run_dir.resolve()),
                 params=config.to_dict()["run"])
    _prepare_nodes(store, state, planner.node_sizes, config)
    root.attrs[L.ATTRS_KEY] = state

    summary = IngestSummary(store=store)
    if planner.tasks:
        _run_tasks(store, state, planner.tasks, manifest, summary, client, progress, report)
    totals = manifest.summary()
    summary.files_ok, summary.frames_ok, summary.bad = (
        totals["files_ok"], totals["frames_ok"], totals["bad"])
    return summary


def _prepare_nodes(store: Path, state: dict, sizes: dict, config: Config):
    """Create new nodes, grow existing ones to the planned size, write the sets' coordinates."""
    for node, n_slots in sizes.items():
        meta = state["nodes"][node]
        key = L.AxisKey(**meta["key"])
        names = [n for n, v in sorted(state["sets"].items(), key=lambda kv: kv[1]["index"])
                 if v["node"] == node]
        group = zarr.open_group(store=str(store), mode="a")
        if node in group and not group[node].attrs.get("complete"):
            shutil.rmtree(store / node)  # creation was interrupted; nothing in it is ok yet
            group = zarr.open_group(store=str(store), mode="a")
        if node not in group:
            codec = L.blosc_codec(meta["codec"]["compressor"], meta["codec"]["clevel"],
                                  meta["codec"]["shuffle"], key.dtype)
            create_node(store, node, key, len(names), n_slots, meta["chunk"], codec,
                        polarity_sign(config))
        else:
            grow_node(store, node, len(names), n_slots)
        write_set_coords(store, node, [(n, state["sets"][n]) for n in names], key, config.run)


def _run_tasks(store, state, tasks, manifest, summary, client, progress, report):
    from ratag_xr.cluster import managed_client  # deferred: starting Dask is ingest's job only

    with managed_client(client) as cl:
        report(f"ingesting {len(tasks)} file(s) on {cl.dashboard_link or 'the cluster'}")
        futures = {}
        for task in tasks:
            chunk = state["nodes"][task.node]["chunk"]
            fut = cl.submit(_copy_file, task, str(store), chunk, pure=False,
                            key=f"ingest-{task.set_name}-{task.path.name}")
            futures[fut] = task
        from distributed import as_completed
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), unit="file", desc="ingest", disable=not progress)
        for fut in as_completed(futures, loop=cl.loop):
            task = futures[fut]
            try:
                facts = fut.result()
            except WfmError as err:
                manifest.append({"set": task.set_name, "file": task.path.name, "status": "bad",
                                 "reason": err.problem,
                                 "fingerprint": file_fingerprint(task.path)})
                report(f"skipping {task.set_name}/{task.path.name}: {err.problem}")
                bar.update(1)
                continue
            write_file_coords(store, task, facts["trigger_ns"])
            event = dict(manifest.get(task.set_name, task.path.name))
            event.update(status="ok", hash=facts["hash"],
                         fingerprint={"size": facts["size"], "mtime_ns": facts["mtime_ns"]})
            manifest.append(event)
            summary.files_written += 1
            summary.frames_written += task.n_frames
            bar.update(1)
        bar.close()

