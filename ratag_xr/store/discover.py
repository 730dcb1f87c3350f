"""Find the sets and raw files of a run directory (ALGORITHMS.md "Raw data layout").

A run folder holds one sub-folder per set (one field setting); a set folder holds
``.wfm`` files.  Sets and files are taken in lexicographic order of their names:
that order defines the frame order of every per-frame result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ratag_xr.config import Config, Section
from ratag_xr.errors import RunLayoutError

_GATE = re.compile(r"Gate(\d+)")
_ANODE = re.compile(r"(?:Anode|EL)(\d+)")
_RATE = re.compile(r"(\d+)GSsec")
_CHANNEL = re.compile(r"_ch(\d+)\.wfm$")


@dataclass(frozen=True)
class SetLayout:
    """One set: its folder, the voltages parsed from its name, and its raw files in order."""

    name: str
    path: Path
    gate: float  # V
    anode: float  # V
    sampling_gsps: float | None  # GS/s from the name, if it says; the header is authoritative
    files: tuple[Path, ...] = field(default=())


@dataclass(frozen=True)
class RunLayout:
    """A run: its folder, id, parameters and sets in order."""

    run_dir: Path
    run_id: str
    params: Section  # the run config's ``run`` section
    sets: tuple[SetLayout, ...]

    def set_names(self) -> list[str]:
        return [s.name for s in self.sets]


def parse_set_name(name: str) -> dict:
    """Voltages (V) and sampling rate (GS/s) from a set folder name; missing parts are None."""

    def number(pattern):
        match = pattern.search(name)
        return float(match.group(1)) if match else None

    return {"gate": number(_GATE), "anode": number(_ANODE), "sampling_gsps": number(_RATE)}


def _set_files(folder: Path, channel: int | None, nfiles: int | None) -> tuple[Path, ...]:
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".wfm" and p.is_file()),
                   key=lambda p: p.name)
    if channel is not None:
        files = [p for p in files if (m := _CHANNEL.search(p.name)) and int(m.group(1)) == channel]
    if nfiles is not None:
        files = files[:nfiles]
    return tuple(files)


def discover_run(run_dir: str | Path, params: Section | None = None,
                 nfiles: int | None = None) -> RunLayout:
    """Sets and their ``.wfm`` files of ``run_dir``.

    ``params`` overrides the default run parameters; ``nfiles`` keeps only the first N
    files of each set (test mode).  A folder without ``.wfm`` files is not a set.  A set
    whose name gives no gate or anode voltage is a :class:`RunLayoutError`: without
    them there are no fields.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunLayoutError(f"{run_dir}: run directory does not exist")
    params = params or Config().run
    sets = []
    for folder in sorted((p for p in run_dir.iterdir() if p.is_dir()), key=lambda p: p.name):
        files = _set_files(folder, params.channel, nfiles)
        if not files:
            continue
        parsed = parse_set_name(folder.name)
        missing = [k for k in ("gate", "anode") if parsed[k] is None]
        if missing:
            raise RunLayoutError(
                f"{folder}: set name gives no {' and no '.join(missing)} voltage "
                "(expected e.g. 'FieldScan_Gate200_Anode350' or '..._EL2000')"
            )
        sets.append(SetLayout(name=folder.name, path=folder, files=files, **parsed))
    if not sets:
        raise RunLayoutError(f"{run_dir}: no set folders with .wfm files found")
    return RunLayout(run_dir=run_dir, run_id=params.run_id or run_dir.name, params=params,
                     sets=tuple(sets))
