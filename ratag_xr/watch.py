"""``ratag-xr watch``: follow an acquisition and keep its results current.

Every ``poll`` seconds the run folder is looked at.  A raw file is taken when it is
complete: its size is at least what its header declares and did not change since the
previous look (the scope writes a file progressively: header first).  A PMT file of a
two-channel set is taken together with its alpha twin (or, when no twin appears, a few
polls later, alone: its frames then carry NaN alpha values, as in a batch run).

Each time files were taken, the analysis runs on what is there: with
``prepare.s1_frames`` and ``prepare.s2_window_frames`` set (the recommended live setup),
the estimates are fixed by the first frames and each new file is read once, its features
added to the stored ones (the ``frames`` stage appends); histograms and fits are redone.
The exports, figures and ``report.html`` (which then shows progress and ETA and reloads
itself) are refreshed at most every ``refresh`` seconds.  The follow ends when every set
has ``expect_files`` files or nothing new arrived for ``idle_timeout`` seconds; the final
analysis then runs every stage exactly as ``ratag-xr run`` of the finished folder, so
the final outputs are the same numbers.  A file that never completed is named and left
out.  The output folder is locked for the whole follow; interrupted, a restart resumes
from what is stored.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ratag_xr.errors import RatagError, WfmError
from ratag_xr.io.lock import output_lock
from ratag_xr.io.wfm import is_complete
from ratag_xr.pipeline.context import Run, open_analysis
from ratag_xr.store.discover import channel_tag, natural_key, twin_name

#: the analysis kept current at every new file, and the outputs refreshed at a bounded rate
CURRENT = ("prepare", "frames", "integrate", "classify", "calibrate")
OUTPUTS = ("export", "plots")
#: polls a PMT file waits for its alpha twin before it is taken alone
TWIN_GRACE_POLLS = 3
RATE_WINDOW = 10  # files per set the acquisition rate is measured over


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Follower:
    """The run folder's raw files, and which of them are complete (see the module doc)."""

    run_dir: Path
    pmt_channel: int
    alpha_channel: int | None
    sizes: dict[Path, int] = field(default_factory=dict)
    complete: set[Path] = field(default_factory=set)
    waiting: dict[Path, int] = field(default_factory=dict)  # PMT file -> polls without twin
    taken: dict[Path, float] = field(default_factory=dict)  # file -> when it was taken
    broken: dict[Path, str] = field(default_factory=dict)  # not a WFM file: why

    def files(self) -> list[Path]:
        return sorted((p for p in self.run_dir.glob("*/*") if p.suffix.lower() == ".wfm"
                       and p.is_file()), key=lambda p: (p.parent.name, natural_key(p.name)))

    def poll(self, *, final: bool = False) -> list[Path]:
        """Look once; return the files taken now (complete, with their twins)."""
        now = time.monotonic()
        present = self.files()
        for path in present:
            if path in self.complete or path in self.broken:
                continue
            try:
                size = path.stat().st_size
                # complete: as long as its header declares, and unchanged since the last
                # look (a first look never suffices: the scope may still be writing)
                if path in self.sizes and is_complete(path, self.sizes[path]):
                    self.complete.add(path)
            except (WfmError, OSError) as err:
                self.broken[path] = str(err)
                continue
            self.sizes[path] = size
        new = []
        for folder in sorted({p.parent for p in present}):
            files = [p for p in present if p.parent == folder and not self._is_twin(p)]
            for path in sorted(files, key=lambda p: natural_key(p.name)):
                if path in self.taken:
                    continue
                if path in self.broken and final:
                    continue
                # in natural order only: a later file never goes in before an earlier one
                if path not in self.complete or not self._ready(path, final):
                    break
                new.append(path)
                twin = self._twin(path)
                if twin is not None and twin in self.complete:
                    new.append(twin)
        for path in present:  # a twin completed after its PMT file was taken alone
            if self._is_twin(path) and path in self.complete and path not in self.taken \
                    and path not in new:
                pmt = path.with_name(twin_name(path.name, self.pmt_channel))
                if pmt in self.taken or pmt in new:
                    new.append(path)
        for path in new:
            self.taken[path] = now
        return new

    def _is_twin(self, path: Path) -> bool:
        """An alpha file with a PMT twin (taken with it); monitor files are not."""
        channel = channel_tag(path.name)[1]
        if channel is None or channel != self.alpha_channel:
            return False
        pmt = path.with_name(twin_name(path.name, self.pmt_channel))
        return pmt.exists() or any(channel_tag(p.name)[1] == self.pmt_channel
                                   for p in self.sizes if p.parent == path.parent)

    def _twin(self, path: Path) -> Path | None:
        key, channel = channel_tag(path.name)
        if channel is None or self.alpha_channel is None or channel == self.alpha_channel:
            return None
        return path.with_name(twin_name(path.name, self.alpha_channel))

    def _ready(self, path: Path, final: bool) -> bool:
        twin = self._twin(path)
        if twin is None or twin in self.complete or final:
            return True
        if any(p.parent == path.parent and channel_tag(p.name)[1] == self.alpha_channel
               for p in self.sizes):
            polls = self.waiting.get(path, 0) + 1
            self.waiting[path] = polls
            return polls > TWIN_GRACE_POLLS
        return True  # the set has no alpha files at all: PMT only

    def incomplete(self) -> list[Path]:
        """Files seen but never complete (or not WFM files)."""
        return sorted(set(self.sizes) - self.complete | set(self.broken))


def _progress(follower: Follower, expect: int | None, frames: dict, live: bool,
              refresh: float) -> dict:
    sets: dict[str, dict] = {}
    by_set: dict[str, list[float]] = {}
    for path in follower.taken:
        if follower._is_twin(path):
            continue  # an alpha twin: counted with its PMT file
        try:  # when the scope finished writing it: the acquisition's own clock
            when = path.stat().st_mtime
        except OSError:
            when = follower.taken[path]
        by_set.setdefault(path.parent.name, []).append(when)
    for name, times in sorted(by_set.items()):
        times.sort()
        entry = {"files": len(times), "frames": int(frames.get(name, 0))}
        recent = times[-RATE_WINDOW:]
        if len(recent) >= 2 and recent[-1] > recent[0]:
            entry["rate_files_per_min"] = 60.0 * (len(recent) - 1) / (recent[-1] - recent[0])
        if expect:
            entry["expected_files"] = expect
        sets[name] = entry
    out = {"live": live, "refresh_s": max(1, int(refresh)), "sets": sets}
    broken = [f"{p.parent.name}/{p.name}" for p in follower.incomplete()]
    if broken and not live:
        out["incomplete"] = broken
    return out


def _line(progress: dict) -> str:
    parts = []
    for name, entry in progress["sets"].items():
        text = f"{name}: {entry['files']}"
        if entry.get("expected_files"):
            text += f"/{entry['expected_files']}"
        text += f" files, {entry['frames']} frames"
        rate = entry.get("rate_files_per_min")
        if rate:
            text += f", {rate:.1f} files/min"
            if entry.get("expected_files"):
                left = max(0, entry["expected_files"] - entry["files"])
                text += f", ETA {left / rate * 60:.0f} s"
        parts.append(text)
    return "watch: " + "; ".join(parts)


def _frames_per_set(run: Run) -> dict:
    from ratag_xr.pipeline.results import load_stage

    sets = load_stage(run.results, "integrate", "sets")
    if sets is None or "n_frames" not in sets:
        return {}
    return {str(n): int(v) for n, v in zip(sets.set.values, sets.n_frames.values,
                                           strict=True)}


def watch(target, *, out=None, config=None, client=None, expect_files: int | None = None,
          idle_timeout: float = 60.0, poll: float = 2.0, refresh: float = 30.0,
          say: Callable[[str], None] = _say, progress: bool = False) -> dict:
    """Follow the run ``target`` (a folder or a YAML config) into ``out``; see the module
    doc.  Returns what happened: files taken, incomplete files, and the seconds from the
    last complete file to the final outputs."""
    from ratag_xr.report import write_report
    from ratag_xr.runner import PIPELINE

    run = open_analysis(target, out=out, config=config, client=client)
    run.progress = False  # the follow prints its own progress lines
    verbose = progress
    follower = Follower(run.run_dir, run.config.run.pmt_channel, run.config.run.alpha_channel)
    taken: set[Path] = set()
    run.accept = lambda path: Path(path) in taken
    last_new = time.monotonic()
    last_file = None
    last_refresh = -float("inf")
    with output_lock(run.out, say=say):
        from ratag_xr.cluster import LazyClient

        # one cluster for the whole follow, started when first needed, sized for the run
        # the acquisition is heading to
        spec = run.client if isinstance(run.client, str) else run.config.cluster.spec
        lazy = LazyClient(lambda: _make_client(run, follower, expect_files, spec))
        if run.client is None or isinstance(run.client, str):
            run.client = lazy
        try:
            while True:
                new = follower.poll()
                if new:
                    taken.update(new)
                    last_file = time.monotonic()
                    _analyse(run, CURRENT, say, verbose)
                    counts = _frames_per_set(run)
                    say(_line(_progress(follower, expect_files, counts, True, refresh)))
                    done = _finished(follower, expect_files)
                    if not done and time.monotonic() - last_refresh >= refresh:
                        _analyse(run, OUTPUTS, say, verbose)
                        _live_report(run, write_report, _progress(
                            follower, expect_files, counts, True, refresh))
                        last_refresh = time.monotonic()
                    last_new = time.monotonic()  # idle from here: the analysis took time
                    if done:  # every set has its files: the final outputs, now
                        break
                if time.monotonic() - last_new > idle_timeout:
                    break
                time.sleep(poll)
            final = follower.poll(final=True)
            taken.update(final)
            if final:
                last_file = time.monotonic()
            missing = follower.incomplete()
            for path in missing:
                say(f"watch: {path.parent.name}/{path.name} never completed "
                    f"({follower.broken.get(path, 'still shorter than its header declares')}"
                    "); left out")
            _analyse(run, [s for s in PIPELINE if s != "ingest"], say, verbose)
            done = time.monotonic()
        finally:
            if lazy is not None:
                lazy.close()
    latency = None if last_file is None else done - last_file
    if latency is not None:
        say(f"watch: final outputs {latency:.1f} s after the last complete file")
    return {"taken": sorted(taken), "incomplete": missing, "latency_s": latency}


def _analyse(run: Run, stages, say, verbose: bool) -> None:
    from ratag_xr.runner import run_stages

    run_stages(run, list(stages), say=say if verbose else (lambda _: None))


def _live_report(run: Run, write_report, progress: dict) -> None:
    from ratag_xr.pipeline.results import load_results

    try:
        results = load_results(run.out)
    except RatagError:
        results = None
    write_report(run.out, results, progress=progress, run_id=run.run_id)


def _finished(follower: Follower, expect: int | None) -> bool:
    if not expect:
        return False
    counts: dict[str, int] = {}
    for path in follower.taken:
        if channel_tag(path.name)[1] in (None, follower.pmt_channel):
            counts[path.parent.name] = counts.get(path.parent.name, 0) + 1
    folders = {p.parent.name for p in follower.sizes}
    return bool(folders) and all(counts.get(name, 0) >= expect for name in folders)


def _make_client(run: Run, follower: Follower, expect: int | None, spec):
    """The follow's Dask client: the run config's cluster; ``cluster.processes: auto``
    decides by the size the run will have (the files so far, scaled to ``expect``)."""
    from ratag_xr.cluster import make_client
    from ratag_xr.runner import PROCESSES_FROM_BYTES, _cluster_kwargs

    kwargs = _cluster_kwargs(run)
    if run.config.cluster.processes == "auto":
        sizes = [s for p, s in follower.sizes.items() if p in follower.complete]
        folders = {p.parent.name for p in follower.sizes} or {""}
        mean = sum(sizes) / len(sizes) if sizes else 0.0
        files = max(expect or 0, len(sizes) / len(folders))
        kwargs["processes"] = mean * files * len(folders) >= PROCESSES_FROM_BYTES
    return make_client(spec, **kwargs)
