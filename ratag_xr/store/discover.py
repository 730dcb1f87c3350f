"""Find the sets and raw files of a run directory (ALGORITHMS.md "Raw data layout", §2, §11).

A run folder holds one sub-folder per set (one field setting); a set folder holds ``.wfm``
files.  Files are taken in *natural* order of their names (runs of digits compared as
numbers, text case-insensitively: ``_P2_2Wfm`` before ``_P2_10Wfm``), which defines the
frame order of every per-frame result.  Sets are taken in name order.

Two-channel acquisitions (§11) write one file per channel and trigger: *twins*, named
``..._P2_29Wfm_Ch1.wfm`` / ``..._Ch4.wfm`` (older DAQ) or ``..._Batch001__CH3.wfm`` /
``..._CH4.wfm`` (newer DAQ).  The channel tag is a case-insensitive ``ch<N>`` right before
``.wfm``, preceded by ``_`` or by nothing; the twin key is the name without the tag and
the underscores before it.  ``run.channels`` gives each channel its role (``pmt``,
``alpha``).  A set without channel tags is PMT only.  Folders ``Ch4_noSCA`` and
``Ch4_SCA_<x>`` at the run root hold the alpha channel alone (monitor sets).

What discovery skips (folders without voltages in their name, channels without a role,
untagged files among tagged ones) it says in :attr:`RunLayout.notices`, once each.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ratag_xr.config import Config, Section
from ratag_xr.errors import ConfigError, RunLayoutError

_GATE = re.compile(r"Gate(\d+)")
_ANODE = re.compile(r"(?:Anode|EL)(\d+)")
_RATE = re.compile(r"(\d+)GSsec")
#: §11: a case-insensitive ``ch<N>`` right before ``.wfm``, preceded by ``_`` or nothing
CHANNEL_TAG = re.compile(r"(?:^|(?<=_))ch(\d+)\.wfm$", re.IGNORECASE)
#: §11: alpha monitor folders at the run root
_MONITOR = re.compile(r"^ch(\d+)_(?:nosca|sca_.+)$", re.IGNORECASE)
_DIGITS = re.compile(r"(\d+)")
#: names listed in one notice before "and N more"
_LIST_MAX = 8

PMT, ALPHA = "pmt", "alpha"


def natural_key(name: str) -> tuple:
    """Sort key of §2's natural order: digit runs as integers, text case-insensitive.

    The name itself breaks ties (``a01`` / ``a1``), so the order is total.
    """
    parts = _DIGITS.split(name)
    key = tuple((0, int(p)) if i % 2 else (1, p.lower()) for i, p in enumerate(parts) if p)
    return key, name


def natural_sorted(names) -> list:
    """``names`` (strings or paths, by their name) in natural order."""
    return sorted(names, key=lambda n: natural_key(n.name if isinstance(n, Path) else str(n)))


def channel_tag(name: str) -> tuple[str, int | None]:
    """(twin key, channel number) of a file name; untagged: (stem, None)."""
    match = CHANNEL_TAG.search(name)
    if match is None:
        return (name[:-4] if name.lower().endswith(".wfm") else name), None
    return name[: match.start()].rstrip("_"), int(match.group(1))


def twin_name(name: str, channel: int) -> str:
    """The name the twin of file ``name`` on ``channel`` has (same tag style)."""
    match = CHANNEL_TAG.search(name)
    if match is None:
        return name
    digits = match.start(1)
    return name[:digits] + str(channel) + name[match.end(1):]


@dataclass(frozen=True)
class Twin:
    """The files of one trigger sequence: PMT and alpha file (None where absent)."""

    key: str
    pmt: Path | None = None
    alpha: Path | None = None


@dataclass(frozen=True)
class SetLayout:
    """One set: its folder, the voltages parsed from its name, and its raw files in order.

    ``kind`` is ``"pmt"`` (a field setting; ``files`` are its PMT files) or ``"alpha"`` (an
    alpha monitor folder; ``files`` are its alpha files).  ``twins`` pairs each PMT file with
    its alpha twin, in frame order; alpha files without a PMT twin come last.
    ``expects_alpha``: the set has alpha files, so a PMT file without one is reported.
    """

    name: str
    path: Path
    gate: float  # V (NaN for a monitor set)
    anode: float  # V (NaN for a monitor set)
    sampling_gsps: float | None  # GS/s from the name, if it says; the header is authoritative
    files: tuple[Path, ...] = field(default=())
    kind: str = PMT
    twins: tuple[Twin, ...] = field(default=())
    expects_alpha: bool = False

    @property
    def alpha_files(self) -> tuple[Path, ...]:
        return tuple(t.alpha for t in self.twins if t.alpha is not None)


@dataclass(frozen=True)
class RunLayout:
    """A run: its folder, id, parameters, sets in order, and what discovery left out."""

    run_dir: Path
    run_id: str
    params: Section  # the run config's ``run`` section
    sets: tuple[SetLayout, ...]
    skipped: tuple[str, ...] = ()  # folders with .wfm files that are not sets
    notices: tuple[str, ...] = ()  # what was left out and why, one message each

    def set_names(self) -> list[str]:
        return [s.name for s in self.sets]


def parse_set_name(name: str) -> dict:
    """Voltages (V) and sampling rate (GS/s) from a set folder name; missing parts are None.

    Zero-padded voltages (``Gate0200``) read as numbers."""

    def number(pattern):
        match = pattern.search(name)
        return float(match.group(1)) if match else None

    return {"gate": number(_GATE), "anode": number(_ANODE), "sampling_gsps": number(_RATE)}


def _listing(items, limit: int = _LIST_MAX) -> str:
    items = list(items)
    text = ", ".join(items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


class _Notes:
    """What discovery leaves out, gathered over all folders and said once per kind."""

    def __init__(self):
        self.channels: dict[int, list[str]] = {}
        self.untagged: list[str] = []
        self.duplicates: list[str] = []
        self.monitors: list[str] = []

    def messages(self, params: Section, skipped: list[str]) -> list[str]:
        out = []
        if skipped:
            out.append(f"skipping {len(skipped)} folder(s) whose name gives no gate/anode "
                       f"voltage (not sets): {_listing(skipped)}; a set is named like "
                       "'FieldScan_Gate200_Anode350'; run.sets / run.exclude choose sets")
        if self.channels:
            roles = ", ".join(f"{r} = {c}" for r, c in params.channels.items())
            parts = [f"channel {c} ({len(f)} file(s), e.g. {f[0]})"
                     for c, f in sorted(self.channels.items())]
            out.append(f"ignoring {'; '.join(parts)}: no role in run.channels ({roles})")
        if self.untagged:
            out.append(f"ignoring {len(self.untagged)} file(s) without a channel tag in set(s) "
                       f"with channel tags: {_listing(self.untagged)}")
        if self.duplicates:
            out.append(f"ignoring {len(self.duplicates)} file(s) whose twin key and channel "
                       f"another file already has: {_listing(self.duplicates)}")
        if self.monitors:
            out.append(f"skipping monitor folder(s) {_listing(self.monitors)}: their channel "
                       f"is not the alpha channel of run.channels ({params.alpha_channel})")
        return out


def _wfm_files(folder: Path, accept=None) -> list[Path]:
    return [p for p in folder.iterdir() if p.suffix.lower() == ".wfm" and p.is_file()
            and (accept is None or accept(p))]


def _pmt_set(folder: Path, files: list[Path], params: Section, notes: _Notes,
             parsed: dict, nfiles: int | None) -> SetLayout:
    tagged = {p: channel_tag(p.name) for p in files}
    pmt: dict[str, Path] = {}
    alpha: dict[str, Path] = {}
    legacy = params.channel  # run.channel: only that channel's files, PMT only
    any_tag = any(ch is not None for _, ch in tagged.values())
    for path in natural_sorted(files):
        key, ch = tagged[path]
        if legacy is not None:
            target = pmt if ch == legacy else None
        elif not any_tag:
            target = pmt  # a set without channel tags is PMT only
        elif ch is None:
            notes.untagged.append(f"{folder.name}/{path.name}")
            continue
        elif ch == params.pmt_channel:
            target = pmt
        elif ch == params.alpha_channel:
            target = alpha
        else:
            notes.channels.setdefault(ch, []).append(f"{folder.name}/{path.name}")
            continue
        if target is None:
            continue
        if key in target:
            notes.duplicates.append(f"{folder.name}/{path.name}")
            continue
        target[key] = path
    primary = natural_sorted(pmt.values())
    if nfiles is not None:
        primary = primary[:nfiles]
    keys = {p: channel_tag(p.name)[0] for p in primary}
    twins = [Twin(keys[p], p, alpha.get(keys[p])) for p in primary]
    if nfiles is None:  # alpha files without a PMT twin: reported by ingest
        twins += [Twin(k, None, a) for k, a in alpha.items() if k not in pmt]
    return SetLayout(name=folder.name, path=folder, files=tuple(primary), kind=PMT,
                     twins=tuple(twins), expects_alpha=bool(alpha), **parsed)


def _monitor_set(folder: Path, files: list[Path], params: Section, notes: _Notes,
                 nfiles: int | None) -> SetLayout:
    chosen, seen = [], set()
    for path in natural_sorted(files):
        key, ch = channel_tag(path.name)
        if ch is not None and ch != params.alpha_channel:
            notes.channels.setdefault(ch, []).append(f"{folder.name}/{path.name}")
            continue
        if key in seen:
            notes.duplicates.append(f"{folder.name}/{path.name}")
            continue
        seen.add(key)
        chosen.append(path)
    if nfiles is not None:
        chosen = chosen[:nfiles]
    twins = tuple(Twin(channel_tag(p.name)[0], None, p) for p in chosen)
    parsed = parse_set_name(folder.name)
    return SetLayout(name=folder.name, path=folder, gate=math.nan, anode=math.nan,
                     sampling_gsps=parsed["sampling_gsps"], files=tuple(chosen), kind=ALPHA,
                     twins=twins)


def _select(names: list[str], params: Section, run_dir: Path) -> list[str]:
    """Folder names chosen by ``run.sets`` (all when None) minus ``run.exclude``."""
    chosen = list(names)
    if params.sets is not None:
        for pattern in params.sets:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                raise ConfigError(f"run.sets: pattern {pattern!r} matches no set folder of "
                                  f"{run_dir} (folders with .wfm files: {_listing(names)})")
        chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in params.sets)]
    return [n for n in chosen if not any(fnmatch.fnmatchcase(n, p) for p in params.exclude)]


def discover_run(run_dir: str | Path, params: Section | None = None,
                 nfiles: int | None = None, accept=None) -> RunLayout:
    """Sets and their ``.wfm`` files of ``run_dir``.

    ``params`` overrides the default run parameters (channel roles, ``run.sets`` and
    ``run.exclude`` patterns); ``nfiles`` keeps only the first N files (twins) of each set
    (test mode); ``accept(path)`` (optional) says which files exist yet (live mode: the
    complete ones).  A folder without ``.wfm`` files is not a set; a folder whose name gives no
    gate or anode voltage is skipped and listed in the layout's notices.  No set at all is a
    :class:`RunLayoutError`; a ``run.sets`` pattern matching no folder a ConfigError.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunLayoutError(f"{run_dir}: run directory does not exist")
    params = params or Config().run
    folders = {p.name: p for p in run_dir.iterdir() if p.is_dir()}
    contents = {name: _wfm_files(p, accept) for name, p in sorted(folders.items())}
    contents = {name: files for name, files in contents.items() if files}
    notes, sets, skipped = _Notes(), [], []
    for name in _select(list(contents), params, run_dir):
        folder, files = folders[name], contents[name]
        monitor = _MONITOR.match(name)
        if monitor is not None and params.channel is None:
            if int(monitor.group(1)) == params.alpha_channel:
                sets.append(_monitor_set(folder, files, params, notes, nfiles))
            else:
                notes.monitors.append(name)
            continue
        parsed = parse_set_name(name)
        if parsed["gate"] is None or parsed["anode"] is None:
            skipped.append(name)
            continue
        layout = _pmt_set(folder, files, params, notes, parsed, nfiles)
        if layout.files or layout.twins:
            sets.append(layout)
    if not sets:
        extra = f" (skipped: {_listing(skipped)})" if skipped else ""
        raise RunLayoutError(f"{run_dir}: no set folders with .wfm files found{extra}")
    return RunLayout(run_dir=run_dir, run_id=params.run_id or run_dir.name, params=params,
                     sets=tuple(sets), skipped=tuple(skipped),
                     notices=tuple(notes.messages(params, skipped)))
