"""Ingest: read every raw ``.wfm`` file once into the Zarr waveform store.

The driver (this process) plans: it discovers the run, reads headers (cheap), assigns
each new file to a node and to frame slots, and logs a ``planned`` manifest event.
Each file is then one Dask task that copies its frames chunk by chunk into its own
slots (no two tasks share a chunk, see :mod:`ratag_xr.store.layout`).  When a task
finishes, the driver writes the file's per-frame coordinates and only then logs ``ok``.

Two-channel sets (ALGORITHMS.md §11): a PMT file gets new slots at the end of its set (a
new file must sort after the ingested ones in natural order); its alpha twin, checked
against it (frame count, trigger time stamps to 1 µs, the set's alpha time axis), fills
the same slots of ``alpha_waveform`` as a task of its own.  A missing or disagreeing twin
is logged in the manifest and said on screen; the PMT frames stay, with ``alpha_valid``
False.  An alpha twin that arrives later than its PMT file is added later.

Kill-safety: an interrupted file keeps its ``planned`` slots and is rewritten whole on
the next run; an ``ok`` file is never touched again.  Memory: a task holds one chunk.
"""

from __future__ import annotations

import json
import shutil
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr

from ratag_xr.config import Config
from ratag_xr.errors import (
    IngestOrderError,
    OwnershipError,
    StoreError,
    WfmError,
    WfmTruncatedError,
)
from ratag_xr.io.lock import writable_folder
from ratag_xr.io.owned import mark, remove_store, store_kind
from ratag_xr.io.wfm import read_wfm
from ratag_xr.store import layout as L
from ratag_xr.store.chunks import ChunkWriter, chunk_writer
from ratag_xr.store.direct_io import DirectWrites, use_direct
from ratag_xr.store.discover import (
    ALPHA,
    PMT,
    RunLayout,
    SetLayout,
    Twin,
    channel_tag,
    discover_run,
    natural_key,
    twin_name,
)
from ratag_xr.store.manifest import (
    HASH_NAME,
    Manifest,
    content_hash,
    file_fingerprint,
    new_digest,
)
from ratag_xr.store.schema import create_node, grow_node, write_files_coords, write_set_coords

#: §11: twins' trigger time stamps must agree to this, ns
TWIN_STAMP_TOLERANCE_NS = 1000
_NAT = np.iinfo(np.int64).min
#: (store, message) pairs said in this process: a notice is said once, however often a
#: command ingests (``ratag-xr run`` ingests, then each stage makes sure it is current)
_SAID: set[tuple[str, str]] = set()


@dataclass
class FileTask:
    set_name: str
    path: Path
    node: str
    set_index: int
    slot0: int
    n_frames: int
    role: str = PMT  # which waveform variable the file fills
    twin_of: str | None = None  # an alpha twin: the PMT file whose slots it fills
    twin_key: str = ""
    unit: float = 1.0  # raw volts -> stored unit (PMT: 1000 x polarity sign -> mV; alpha: V)

    @property
    def array(self) -> str:
        return "waveform" if self.role == PMT else "alpha_waveform"


@dataclass
class IngestSummary:
    """What an ingest did: files and frames written now, in total, and skipped.

    ``twins``: twin problems (missing or disagreeing alpha twins, alpha files without a
    PMT twin); ``missing``: per set, raw files ingested earlier that are gone from the run
    directory (their frames stay in the store); ``notices``: every warning of this ingest.
    """

    store: Path
    files_written: int = 0
    frames_written: int = 0
    files_ok: int = 0
    frames_ok: int = 0
    bad: list[dict] = field(default_factory=list)
    alpha_files_ok: int = 0
    twins: list[dict] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    pending: list[FileTask] = field(default_factory=list)  # planned, read by the analysis

    def __str__(self) -> str:
        alpha = (f" (with {self.alpha_files_ok} alpha file(s))" if self.alpha_files_ok
                 else "")
        lines = [f"store {self.store}: {self.files_written} file(s) / {self.frames_written} "
                 f"frame(s) ingested now; {self.files_ok} file(s){alpha} / {self.frames_ok} "
                 f"frame(s) in the store; {len(self.bad)} file(s) skipped"]
        if self.pending:
            lines.append(f"  {len(self.pending)} file(s) left to be read once, by the "
                         "analysis")
        lines += [f"  skipped {b['set']}/{b['file']}: {b['reason']}" for b in self.bad]
        if self.twins:
            lines.append(f"  {len(self.twins)} twin problem(s) (PMT frames kept, alpha NaN):")
            lines += [f"    {t['set']}/{t['file']}: {t['status']}: {t['reason']}"
                      for t in self.twins]
        for name, files in self.missing.items():
            lines.append(f"  {name}: {len(files)} ingested raw file(s) no longer in the run "
                         f"directory (frames kept in the store): {', '.join(files)}")
        return "\n".join(lines)


def default_store(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """``OUT/waveforms.zarr``; ``OUT`` defaults to the run directory.  An ``out`` ending in
    ``.zarr`` names the store itself."""
    out = Path(out if out is not None else run_dir)
    return out if out.suffix == ".zarr" else out / L.STORE_NAME


#: Run keys that shape what a store holds (the sign of the stored scale, which file is
#: which channel): a store made with other values must be rebuilt, not extended.
MADE_WITH = ("polarity", "channel", "channels")


def check_made_with(state: dict, config: Config, store) -> None:
    """Record (first ingest) or check the :data:`MADE_WITH` run keys of a store; a
    :class:`~ratag_xr.errors.StoreError` naming the key when the config differs."""
    current = {k: getattr(config.run, k) for k in MADE_WITH}
    made = state.setdefault("made_with", current)
    for key in MADE_WITH:
        if key in made and made[key] != current[key]:
            raise StoreError(f"{store}: the store was ingested with run.{key} = "
                             f"{made[key]!r}, the config says {current[key]!r}; rebuild it "
                             "(--rebuild) to analyse with the new value")


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


class RawFile:
    """A raw file read once, front to back (``with RawFile(task) as raw``).

    ``raw.blocks(n)`` yields ``(start, codes)``: native-order (frames, samples) codes of
    frames [start, start + len); ``raw.facts()`` then gives the file's content hash
    (of every byte, from the same reads as the frames), trigger time stamps,
    scaling in the stored unit (``scale``/``offset``, also attributes from the start),
    size and modification time.
    """

    def __init__(self, task: FileTask):
        self.task = task
        self._digest = new_digest()

    def __enter__(self) -> RawFile:
        task = self.task
        self.wfm = read_wfm(task.path)
        if self.wfm.n_frames != task.n_frames:
            self.wfm.close()
            raise WfmError(task.path, f"frame count changed since planning: expected "
                           f"{task.n_frames}, found {self.wfm.n_frames}")
        self.scale = self.wfm.y_scale * task.unit
        self.offset = self.wfm.y_offset * task.unit
        self.t0, self.dt = self.wfm.x_start * 1e6, self.wfm.x_spacing * 1e6  # µs
        self._file = open(task.path, "rb", buffering=0)  # closed by __exit__
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()
        self.wfm.close()

    def blocks(self, block_frames: int):
        """``(start, codes)`` per block of ``block_frames`` frames: C-contiguous, writable,
        native-order codes.  The arrays are this reader's buffers, reused for the next
        block: a caller keeps a copy of what it keeps.  (One writable contiguous layout
        also means the kernels see the array type they were compiled for; a fresh
        read-only ``bytes`` per block would cost new memory and a numba dispatch.)"""
        wfm, f = self.wfm, self._file
        layout = wfm.byte_layout()
        dtype = wfm.raw_dtype.newbyteorder(wfm.byte_order)
        record = layout["record_bytes"]
        per_record = record // dtype.itemsize
        first = layout["data_start"] // dtype.itemsize
        self._digest.update(_read_exact(f, layout["curve_offset"], self.task.path))
        n = min(block_frames, wfm.n_frames)
        raw = np.empty(n * record, dtype=np.uint8)
        whole = first == 0 and per_record == wfm.n_samples and dtype.isnative
        out = None if whole else np.empty((n, wfm.n_samples), dtype=wfm.raw_dtype)
        for start in range(0, wfm.n_frames, block_frames):
            stop = min(start + block_frames, wfm.n_frames)
            view = raw[: (stop - start) * record]
            _read_into(f, view, self.task.path)
            self._digest.update(view)
            codes = view.view(dtype).reshape(stop - start, per_record)
            if whole:
                yield start, codes
            else:  # charge points dropped, bytes swapped: one copy into the second buffer
                part = out[: stop - start]
                np.copyto(part, codes[:, first:first + wfm.n_samples], casting="equiv")
                yield start, part

    def facts(self) -> dict:
        while tail := self._file.read(_HASH_BLOCK):
            self._digest.update(tail)
        trigger_ns = self.wfm.trigger_time.astype("datetime64[ns]").astype(np.int64)
        return {"hash": f"{HASH_NAME}:{self._digest.hexdigest()}", "trigger_ns": trigger_ns,
                "scale": self.scale, "offset": self.offset,
                **file_fingerprint(self.task.path)}


_HASH_BLOCK = 8 * 2**20


def _read_into(f, buffer: np.ndarray, path: Path) -> None:
    """Fill ``buffer`` (bytes) from ``f``'s position: a file that ends first is truncated."""
    view, got = memoryview(buffer).cast("B"), 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            raise WfmTruncatedError(path, f"file ended while reading: expected "
                                    f"{len(view)} more bytes, found {got}")
        got += n


def _read_exact(f, n: int, path: Path) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise WfmTruncatedError(path, f"file ended while reading: expected {n} more bytes, "
                                f"found {len(data)}")
    return data


def waveform_writer(store: str, task: FileTask) -> ChunkWriter:
    """The writer of the waveform array a file task fills."""
    return chunk_writer(store, f"{task.node}/{task.array}")


def write_block(writer: ChunkWriter, task: FileTask, start: int, codes: np.ndarray,
                chunk: int, writes: DirectWrites | None = None) -> None:
    """Write a block of a file's frames into its slots, whole chunks (zero padding);
    ``writes``: past the page cache, in the background (:mod:`ratag_xr.store.direct_io`)."""
    for k in range(0, codes.shape[0], chunk):
        part = codes[k:k + chunk]
        if part.shape[0] < chunk:
            buffer = np.zeros((chunk, codes.shape[1]), dtype=codes.dtype)
            buffer[: part.shape[0]] = part
            part = buffer
        slot = task.slot0 + start + k
        if slot % chunk:
            raise ValueError(f"{task.path}: frame slot {slot} does not start a chunk of {chunk}")
        writer.write(task.set_index, slot // chunk, part, writes)


def copy_file(task: FileTask, store: str, chunk: int, direct: bool = False) -> dict:
    """Dask task: copy one raw file's frames into its slots; return its per-frame facts.
    ``direct``: the chunk files are written past the page cache (``ingest.direct_io``)."""
    writer = waveform_writer(store, task)
    with RawFile(task) as raw:
        with file_writes(direct) as writes:
            for start, codes in raw.blocks(chunk):
                write_block(writer, task, start, codes, chunk, writes)
        return raw.facts()


def file_writes(direct: bool):
    """What a file task writes its chunks through: background O_DIRECT writes, or the
    page cache right away (a context that does nothing, and ``None``)."""
    return DirectWrites() if direct else nullcontext()


#: Finished file tasks are recorded together (coordinates, then the manifest events): at
#: the first finish this many seconds after the oldest unrecorded one, and when the last
#: has finished.  One read and one write per coordinate array for a batch instead of per
#: file; a kill loses at most the unrecorded files, which a rerun reads again.
RECORD_EVERY_S = 0.5


def finished_files(client, futures: dict, store: Path, manifest: Manifest,
                   summary: IngestSummary, report, *, desc: str, progress: bool = True,
                   leave: bool = True):
    """The file tasks of ``futures`` (future -> :class:`FileTask`) as they finish, recorded
    by :func:`complete_files` (a file the task found unreadable is a ``bad`` event) in
    batches: yields (task, what the task returned beside the file's facts or None, ok)."""
    import time

    from distributed import as_completed
    from tqdm import tqdm

    from ratag_xr.cluster import task_result

    bar = tqdm(total=len(futures), unit="file", desc=desc, disable=not progress,
               file=sys.stderr, leave=leave)
    done: list[tuple] = []  # (task, facts or WfmError, extra), not yet recorded
    oldest = None
    ac = as_completed(futures, loop=client.loop)
    try:
        for batch in ac.batches():
            for fut in batch:
                task = futures[fut]
                try:
                    result = task_result(fut)
                except WfmError as err:
                    result = err
                extra = None
                if isinstance(result, tuple):  # (facts, more): a read-once task's records
                    result, extra = result
                done.append((task, result, extra))
                bar.update(1)
            oldest = oldest or time.monotonic()
            if not ac.is_empty() and time.monotonic() - oldest < RECORD_EVERY_S:
                continue  # more to come: record them together
            batch_done, done, oldest = done, [], None
            oks = complete_files(store, [(t, r) for t, r, _ in batch_done], manifest,
                                 summary, report)
            for (task, _, extra), ok in zip(batch_done, oks, strict=True):
                yield task, extra, ok
    finally:
        if done:  # a task failed in a way no file explains: keep what finished before it
            complete_files(store, [(t, r) for t, r, _ in done], manifest, summary, report)
        bar.close()


def complete_files(store: Path, results: list[tuple], manifest: Manifest,
                   summary: IngestSummary, report) -> list[bool]:
    """After file tasks, ``results`` = [(task, facts or WfmError)]: the per-frame
    coordinates of every file that is ok, then its ``ok`` event (or the ``bad`` event of a
    file the task found unreadable); True for each file that is ok."""
    events, written, oks = [], [], []
    for task, result in results:
        if isinstance(result, WfmError):
            event = {"set": task.set_name, "file": task.path.name, "status": "bad",
                     "role": task.role, "reason": result.problem,
                     "fingerprint": file_fingerprint(task.path)}
            if task.twin_of is not None:
                event["twin_of"] = task.twin_of
            events.append(event)
            report(f"skipping {task.set_name}/{task.path.name}: {result.problem}")
            oks.append(False)
            continue
        written.append((task, result))
        event = dict(manifest.get(task.set_name, task.path.name))
        event.update(status="ok", hash=result["hash"],
                     fingerprint={"size": result["size"], "mtime_ns": result["mtime_ns"]})
        events.append(event)
        summary.files_written += 1
        if task.twin_of is None:
            summary.frames_written += task.n_frames
        oks.append(True)
    write_files_coords(store, written)
    manifest.extend(events)
    return oks


def first_files(manifest: Manifest, set_name: str, n_frames: int | None) -> list[str]:
    """The set's planned or ingested files (PMT, or alpha in a monitor set) holding its
    first ``n_frames`` frames in frame order (all of them for None)."""
    events = [e for e in manifest.for_set(set_name)
              if e["status"] in ("planned", "ok") and not e.get("twin_of")]
    events.sort(key=lambda e: e["slot0"])
    out, covered = [], 0
    for e in events:
        if n_frames is not None and covered >= n_frames:
            break
        out.append(e["file"])
        covered += e["n_frames"]
    return out


def _split(tasks: list[FileTask], manifest: Manifest, monitors, n_frames: int):
    """(now, later): the tasks of the files holding each PMT set's first ``n_frames``
    frames (with their alpha twins) and those of the files after them."""
    first = {}
    now, later = [], []
    for task in tasks:
        if task.set_name in monitors:
            now.append(task)
            continue
        if task.set_name not in first:
            first[task.set_name] = set(first_files(manifest, task.set_name, n_frames))
        owner = task.twin_of or task.path.name
        (now if owner in first[task.set_name] else later).append(task)
    return now, later


def _read_state(root: zarr.Group) -> dict:
    state = dict(root.attrs.get(L.ATTRS_KEY, {}))
    if state and state.get("format") != L.FORMAT_VERSION:
        raise StoreError(f"store format {state.get('format')} is not {L.FORMAT_VERSION} "
                         "(this version stores each file's vertical scale and the alpha "
                         "channel): rebuild it (--rebuild)")
    state.setdefault("format", L.FORMAT_VERSION)
    state.setdefault("sets", {})
    state.setdefault("monitors", {})
    state.setdefault("nodes", {})
    return state


@dataclass(frozen=True)
class _Header:
    key: L.AxisKey
    n_frames: int
    trigger_ns: np.ndarray


def _header(path: Path) -> _Header:
    """Time axis, frame count and trigger stamps of a raw file (header and frame tables)."""
    with read_wfm(path) as wfm:
        return _Header(L.AxisKey.from_wfm(wfm), int(wfm.n_frames),
                       wfm.trigger_time.astype("datetime64[ns]").astype(np.int64))


def stamp_mismatch(pmt_ns: np.ndarray, alpha_ns: np.ndarray) -> str | None:
    """Why two twins' trigger stamps disagree (§11: to 1 µs), or None when they agree.
    A frame without a usable stamp agrees only with a frame without one."""
    a, b = np.asarray(pmt_ns, dtype=np.int64), np.asarray(alpha_ns, dtype=np.int64)
    one_missing = (a == _NAT) ^ (b == _NAT)
    both = (a != _NAT) & (b != _NAT)
    diff = np.zeros(a.shape, dtype=np.int64)
    diff[both] = np.abs(a[both] - b[both])
    bad = one_missing | (diff > TWIN_STAMP_TOLERANCE_NS)
    if not bad.any():
        return None
    k = int(np.argmax(bad))
    what = ("a time stamp on one side only" if one_missing[k]
            else f"{diff[k] / 1e3:.3f} µs apart")
    return (f"trigger time stamps disagree with the PMT twin's at {int(bad.sum())} frame(s), "
            f"first at frame {k} ({what}; allowed 1 µs)")


class _Planner:
    """Decides, from the manifest and headers, which files to write where."""

    def __init__(self, root, state, manifest: Manifest, config: Config, report, warn):
        self.root, self.state, self.manifest = root, state, manifest
        self.config, self.report, self.warn = config, report, warn
        self.tasks: list[FileTask] = []
        self.node_sizes: dict[str, int] = {}  # node -> frame slots needed
        self.problems: dict[str, list[str]] = {}  # set -> twin problems seen now

    def _placements(self, s: SetLayout) -> dict:
        return self.state["sets"] if s.kind == PMT else self.state["monitors"]

    def plan_set(self, s: SetLayout) -> None:
        info = self._placements(s).get(s.name)
        role = PMT if s.kind == PMT else ALPHA
        placed = [e for e in self.manifest.for_set(s.name)
                  if e["status"] in ("planned", "ok") and not e.get("twin_of")]
        next_slot = max((e["slot0"] + e["slots"] for e in placed), default=0)
        last_name = placed[-1]["file"] if placed else None
        for twin in s.twins:
            path = twin.pmt if s.kind == PMT else twin.alpha
            if path is None:
                self._orphan(s, twin)
                continue
            event = self.manifest.get(s.name, path.name)
            if event is not None and event["status"] in ("planned", "ok"):
                event = self._check_unchanged(path, event)
                if event["status"] == "planned":
                    self.tasks.append(self._task(s, path, event))
            elif event is not None and event["status"] == "bad" \
                    and file_fingerprint(path) == event["fingerprint"]:
                continue  # known bad file, unchanged: still skipped, already reported
            else:
                if last_name is not None and natural_key(path.name) < natural_key(last_name):
                    raise IngestOrderError(
                        f"{path}: new file sorts before already ingested {s.name}/{last_name} "
                        "(natural order of the names); frame order would change: rebuild "
                        "the store (--rebuild)")
                try:
                    head = _header(path)
                except WfmError as err:
                    self._bad(s, path, err.problem, role)
                    continue
                if info is None:
                    info = self._place_set(s, head, self._alpha_key(s))
                meta = self.state["nodes"][info["node"]]
                node_key = L.AxisKey.from_dict(meta["key"] if role == PMT else meta["alpha_key"])
                if head.key != node_key:
                    self._bad(s, path, "time axis differs from the set's first file: "
                              + "; ".join(node_key.differences(head.key)), role)
                    continue
                event = {"set": s.name, "file": path.name, "status": "planned", "role": role,
                         "node": info["node"], "set_index": info["index"], "slot0": next_slot,
                         "slots": L.slots_for(head.n_frames, meta["chunk"]),
                         "n_frames": head.n_frames, "fingerprint": file_fingerprint(path)}
                self.manifest.append(event)
                self.tasks.append(self._task(s, path, event))
                next_slot += event["slots"]
                last_name = path.name
            if s.kind == PMT and (twin.alpha is not None or s.expects_alpha):
                self._plan_alpha(s, twin, event, info)
        if info is not None:
            node = info["node"]
            self.node_sizes[node] = max(self.node_sizes.get(node, 0), next_slot)

    # -- the alpha twin of a PMT file ---------------------------------------------------------
    def _plan_alpha(self, s: SetLayout, twin: Twin, pmt_event: dict, info: dict) -> None:
        pmt, alpha = twin.pmt, twin.alpha
        channel = self.config.run.alpha_channel
        if alpha is None:
            expected = twin_name(pmt.name, channel)
            reason = f"no alpha twin of {pmt.name} (expected {expected})"
            self.manifest.append_if_new({"set": s.name, "file": expected, "status": "missing",
                                         "role": ALPHA, "twin_of": pmt.name,
                                         "reason": reason})
            self._problem(s, reason)
            return
        event = self.manifest.get(s.name, alpha.name)
        if event is not None and event.get("twin_of") == pmt.name:
            if event["status"] in ("planned", "ok") and event["slot0"] == pmt_event["slot0"]:
                event = self._check_unchanged(alpha, event)
                if event["status"] == "planned":
                    self.tasks.append(self._task(s, alpha, event))
                return
            if event["status"] == "bad" and file_fingerprint(alpha) == event["fingerprint"]:
                self._problem(s, f"{alpha.name}: {event['reason']}")
                return
        meta = self.state["nodes"][info["node"]]
        alpha_key = L.AxisKey.from_dict(meta.get("alpha_key"))
        try:
            head = _header(alpha)
        except WfmError as err:
            self._bad(s, alpha, err.problem, ALPHA, twin_of=pmt.name)
            return
        if alpha_key is None:
            reason = ("the set was ingested without an alpha channel: rebuild the store "
                      "(--rebuild) to add it")
        elif head.key != alpha_key:
            reason = ("alpha time axis differs from the set's: "
                      + "; ".join(alpha_key.differences(head.key)))
        elif head.n_frames != pmt_event["n_frames"]:
            reason = (f"{head.n_frames} frame(s), its PMT twin {pmt.name} has "
                      f"{pmt_event['n_frames']}")
        else:
            try:
                reason = stamp_mismatch(_header(pmt).trigger_ns, head.trigger_ns)
            except WfmError as err:
                reason = f"its PMT twin cannot be read: {err.problem}"
        if reason is not None:
            self._bad(s, alpha, reason, ALPHA, twin_of=pmt.name)
            return
        event = {"set": s.name, "file": alpha.name, "status": "planned", "role": ALPHA,
                 "twin_of": pmt.name, "node": info["node"], "set_index": info["index"],
                 "slot0": pmt_event["slot0"], "slots": pmt_event["slots"],
                 "n_frames": head.n_frames, "fingerprint": file_fingerprint(alpha)}
        self.manifest.append(event)
        self.tasks.append(self._task(s, alpha, event))

    def _orphan(self, s: SetLayout, twin: Twin) -> None:
        expected = twin_name(twin.alpha.name, self.config.run.pmt_channel)
        reason = f"no PMT twin (expected {expected}): its frames are not stored"
        self.manifest.append_if_new({"set": s.name, "file": twin.alpha.name,
                                     "status": "orphan", "role": ALPHA, "reason": reason})
        self._problem(s, f"{twin.alpha.name}: {reason}")

    def _problem(self, s: SetLayout, text: str) -> None:
        self.problems.setdefault(s.name, []).append(text)

    def _alpha_key(self, s: SetLayout) -> L.AxisKey | None:
        """The alpha time axis of a PMT set: that of its first readable alpha file."""
        if s.kind != PMT:
            return None
        for path in s.alpha_files:
            try:
                return _header(path).key
            except WfmError:
                continue
        return None

    # -- bookkeeping ------------------------------------------------------------------------
    def _check_unchanged(self, path: Path, event: dict) -> dict:
        """The file's event, its fingerprint brought up to date when only the modification
        time changed and the content is the ingested one (a ``touch``)."""
        now = file_fingerprint(path)
        if now == event["fingerprint"]:
            return event
        if now["size"] == event["fingerprint"]["size"]:
            # planned: the file is rewritten whole from its current bytes anyway
            recorded = event.get("hash")
            if event["status"] == "planned" or content_hash(path, recorded) == recorded:
                event = dict(event, fingerprint=now)
                self.manifest.append(event)
                return event
            what = "its content hash differs from the manifest's"
        else:
            what = (f"size {now['size']} bytes, the manifest has "
                    f"{event['fingerprint']['size']}")
        raise StoreError(f"{path}: changed since it was ingested ({what}): rebuild the store "
                         "(--rebuild)")

    def _task(self, s: SetLayout, path: Path, event: dict) -> FileTask:
        role = event.get("role", PMT)
        unit = 1000.0 * self.config.run.sign if role == PMT else 1.0
        return FileTask(set_name=s.name, path=path, node=event["node"],
                        set_index=event["set_index"], slot0=event["slot0"],
                        n_frames=event["n_frames"], role=role, twin_of=event.get("twin_of"),
                        twin_key=channel_tag(path.name)[0], unit=unit)

    def _bad(self, s: SetLayout, path: Path, reason: str, role: str,
             twin_of: str | None = None) -> None:
        event = {"set": s.name, "file": path.name, "status": "bad", "role": role,
                 "reason": reason, "fingerprint": file_fingerprint(path)}
        if twin_of is not None:
            event["twin_of"] = twin_of
            self._problem(s, f"{path.name}: {reason}")
        else:
            self.report(f"skipping {s.name}/{path.name}: {reason}")
        self.manifest.append(event)

    def _place_set(self, s: SetLayout, head: _Header, alpha_key: L.AxisKey | None) -> dict:
        nodes = self.state["nodes"]
        kind = s.kind
        key = head.key if kind == PMT else None
        alpha_key = alpha_key if kind == PMT else head.key
        wanted = (kind, None if key is None else key.to_dict(),
                  None if alpha_key is None else alpha_key.to_dict())
        node = next((n for n, v in nodes.items()
                     if (v["kind"], v["key"], v["alpha_key"]) == wanted), None)
        if node is None:
            node = f"{L.NODE_PREFIX}{len(nodes)}"
            main = key if key is not None else alpha_key
            chunk = L.frames_per_chunk(head.n_frames, main.n_samples,
                                       np.dtype(main.dtype).itemsize,
                                       self.config.ingest.chunk_mb)
            nodes[node] = {"kind": kind, "key": wanted[1], "alpha_key": wanted[2],
                           "chunk": chunk, "n_sets": 0, "codec": dict(self.state["codec"])}
        index = nodes[node]["n_sets"]
        nodes[node]["n_sets"] += 1
        info = {"node": node, "index": index}
        if kind == PMT:  # a monitor set has no voltages (JSON attributes hold no NaN)
            info.update(gate=s.gate, anode=s.anode)
        self._placements(s)[s.name] = info
        # Persist the placement before any manifest event refers to it (kill-safety).
        self.root.attrs[L.ATTRS_KEY] = self.state
        return info


def _notifier(store: Path, summary: IngestSummary):
    """``warn(message)``: said once per store and process, kept in the summary always."""

    def warn(message: str) -> None:
        summary.notices.append(message)
        if (str(store), message) not in _SAID:
            _SAID.add((str(store), message))
            print(f"ratag-xr: warning: {message}", file=sys.stderr, flush=True)

    return warn


def _store_codec(state: dict, wanted: dict, warn) -> None:
    """The store's codec: set on creation; an existing store keeps its own (one notice)."""
    have = state.get("codec")
    if have is None:
        state["codec"] = dict(wanted)
    elif have != wanted:
        warn(f"the store keeps its codec {have}; the configured {wanted} applies to a new "
             "store (ingest --rebuild)")


def _missing_files(layout: RunLayout, manifest: Manifest, warn) -> dict[str, list[str]]:
    """Ingested files gone from the run directory, per set (their frames stay stored)."""
    gone: dict[str, list[str]] = {}
    for (set_name, file), event in manifest.entries.items():
        if event["status"] == "ok" and not (layout.run_dir / set_name / file).exists():
            gone.setdefault(set_name, []).append(file)
    for set_name, files in gone.items():
        files.sort(key=natural_key)
        warn(f"{set_name}: {len(files)} raw file(s) ingested earlier are no longer in "
             f"{layout.run_dir / set_name}: {', '.join(files)}; their frames stay in the "
             "store and are analysed")
    return gone


def ingest(run_dir: str | Path, store: str | Path | None = None, *, config: Config | None = None,
           nfiles: int | None = None, rebuild: bool = False, client=None,
           progress: bool = True, copy_frames: int | None = None,
           accept=None) -> IngestSummary:
    """Read the raw files of ``run_dir`` into the Zarr store ``store`` (created if absent).

    ``copy_frames``: copy only the files holding each set's first ``copy_frames`` frames;
    the others are planned (their slots reserved, a ``planned`` manifest event) and left
    to the analysis, which reads each of them once, writing its frames to the store and
    computing their features from the same memory (``summary.pending``).  ``accept(path)``
    (optional) says which raw files exist yet (``ratag-xr watch``: the complete ones).

    Only files not yet in the store are read; a new file sorting before ingested ones (in
    natural order) is an :class:`~ratag_xr.errors.IngestOrderError` (use ``rebuild=True``).
    Corrupt files are reported, recorded in the manifest and skipped; twin problems and
    raw files deleted since they were ingested are reported and the ingest goes on.
    ``client`` is a ``distributed.Client``; without one a LocalCluster sized to the machine
    is started for the duration.
    """
    config = config or Config()
    # checked when the config was built: a bad codec never reaches a store
    codec = {k: getattr(config.ingest, k) for k in ("compressor", "clevel", "shuffle")}
    store = Path(store) if store is not None else default_store(run_dir)
    nfiles = nfiles if nfiles is not None else config.ingest.nfiles
    layout: RunLayout = discover_run(run_dir, config.run, nfiles=nfiles, accept=accept)

    def report(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if rebuild:
        remove_store(store, "waveforms")  # refuses (deletes nothing) unless ratag_xr made it
        L.manifest_path(store).unlink(missing_ok=True)
    summary = IngestSummary(store=store)
    warn = _notifier(store, summary)
    for notice in layout.notices:
        warn(notice)
    root = open_store(store)
    state = _read_state(root)
    stored_state = json.loads(json.dumps(state))  # to write the state back only if it changed
    check_made_with(state, config, store)
    _store_codec(state, codec, warn)
    manifest = Manifest.load(L.manifest_path(store))
    planner = _Planner(root, state, manifest, config, report, warn)
    for s in layout.sets:
        planner.plan_set(s)
    for set_name, problems in planner.problems.items():
        warn(f"{set_name}: {len(problems)} twin problem(s); the PMT frames are kept with NaN "
             f"alpha values: {'; '.join(problems[:8])}"
             + (f"; and {len(problems) - 8} more" if len(problems) > 8 else ""))
    summary.missing = _missing_files(layout, manifest, warn)
    state.update(run_id=layout.run_id, run_dir=str(layout.run_dir.resolve()))
    state.pop("params", None)  # the run keys a store depends on are in made_with
    _prepare_nodes(store, state, planner.node_sizes, config)
    if json.loads(json.dumps(state)) != stored_state:  # an unchanged store is not rewritten
        root.attrs[L.ATTRS_KEY] = state

    tasks = planner.tasks
    if copy_frames is not None:  # the rest is read once, by the analysis (frames stage)
        tasks, summary.pending = _split(tasks, manifest, state["monitors"], copy_frames)
    if tasks:
        _run_tasks(store, state, tasks, manifest, summary, client, progress, report,
                   direct=use_direct(config.ingest.direct_io, read_once=False))
    totals = manifest.summary()
    summary.files_ok, summary.frames_ok, summary.bad = (
        totals["files_ok"], totals["frames_ok"], totals["bad"])
    summary.alpha_files_ok, summary.twins = totals["alpha_files_ok"], totals["twins"]
    return summary


def _prepare_nodes(store: Path, state: dict, sizes: dict, config: Config):
    """Create new nodes, grow existing ones to the planned size, write the sets' coordinates."""
    for node, n_slots in sizes.items():
        meta = state["nodes"][node]
        key, alpha_key = L.AxisKey.from_dict(meta["key"]), L.AxisKey.from_dict(meta["alpha_key"])
        placements = state["sets"] if meta["kind"] == PMT else state["monitors"]
        names = [n for n, v in sorted(placements.items(), key=lambda kv: kv[1]["index"])
                 if v["node"] == node]
        group = zarr.open_group(store=str(store), mode="a")
        if node in group and not group[node].attrs.get("complete"):
            shutil.rmtree(store / node)  # creation was interrupted; nothing in it is ok yet
            group = zarr.open_group(store=str(store), mode="a")
        if node not in group:
            c = meta["codec"]

            def codec(dtype, c=c):
                return L.blosc_codec(c["compressor"], c["clevel"], c["shuffle"], dtype)

            create_node(store, node, key, alpha_key, len(names), n_slots, meta["chunk"], codec)
        else:
            grow_node(store, node, len(names), n_slots)
        main = key if key is not None else alpha_key
        write_set_coords(store, node, [(n, placements[n]) for n in names], main.x_spacing,
                         config.run)


def _run_tasks(store, state, tasks, manifest, summary, client, progress, report, *,
               direct: bool = False):
    # deferred: starting Dask is ingest's job only
    from ratag_xr.cluster import managed_client, os_errors_returned

    with managed_client(client) as cl:
        if progress:
            report(f"ingesting {len(tasks)} file(s) on {cl.dashboard_link or 'the cluster'}")
        futures = {}
        for task in tasks:
            chunk = state["nodes"][task.node]["chunk"]
            fut = cl.submit(os_errors_returned, copy_file, task, str(store), chunk, direct,
                            pure=False, key=f"ingest-{task.set_name}-{task.path.name}")
            futures[fut] = task
        for _ in finished_files(cl, futures, store, manifest, summary, report, desc="ingest",
                                progress=progress):
            pass
