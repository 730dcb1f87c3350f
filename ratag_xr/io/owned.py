"""What ratag_xr made, and the only removals it ever does.

Every Zarr store ratag_xr creates carries a marker in its root attributes
(``ratag_xr_store: "waveforms"`` or ``"results"``), written the moment the store is
created.  :func:`remove_store` deletes a folder only when

* it holds that marker for the expected kind,
* every file in it is Zarr metadata (``zarr.json``) or a chunk (below a ``c/`` folder, or
  the file ``c`` of a 0-d array),
* and no raw ``.wfm`` file lies anywhere below it.

Anything else (a run folder, an output root with JSON and plots, a folder someone else
made) is refused with a :class:`~ratag_xr.errors.OwnershipError` naming the folder and why,
and nothing is touched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ratag_xr.errors import OwnershipError

MARKER = "ratag_xr_store"
KINDS = ("waveforms", "results")


def mark(group, kind: str) -> None:
    """Write the ownership marker into a freshly created Zarr group's attributes."""
    if kind not in KINDS:
        raise ValueError(f"unknown store kind {kind!r}")
    group.attrs[MARKER] = kind


def store_kind(path: Path) -> str | None:
    """The marker of the Zarr store at ``path`` (None when it has none or is no store).

    Stores from before the marker existed are recognised by their bookkeeping: a
    ``ratag_xr`` attribute with a ``format`` (waveforms), stage groups with a ``lineage``
    (results).
    """
    meta = Path(path) / "zarr.json"
    try:
        attrs = json.loads(meta.read_text()).get("attributes") or {}
    except (OSError, ValueError, AttributeError):
        return None
    kind = attrs.get(MARKER)
    if kind in KINDS:
        return kind
    state = attrs.get("ratag_xr")
    if isinstance(state, dict) and "format" in state:
        return "waveforms"
    for child in Path(path).glob("*/zarr.json"):  # a results store from before the marker
        try:
            if "lineage" in (json.loads(child.read_text()).get("attributes") or {}):
                return "results"
        except (OSError, ValueError, AttributeError):
            continue
    return None


def _scalar_chunk(item: Path) -> bool:
    """The one chunk of a 0-d Zarr v3 array: a file ``c`` beside the array's zarr.json."""
    if item.name != "c":
        return False
    try:
        meta = json.loads((item.parent / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("node_type") == "array" and \
        meta.get("shape") == []


def _foreign_files(path: Path) -> list[Path]:
    """Files below ``path`` that a Zarr store made by ratag_xr never holds."""
    foreign = []
    for item in path.rglob("*"):
        if item.is_dir() and not item.is_symlink():
            continue
        rel = item.relative_to(path)
        if item.suffix.lower() == ".wfm" or item.is_symlink():
            foreign.append(rel)
        elif rel.name != "zarr.json" and "c" not in rel.parts[:-1] and not _scalar_chunk(item):
            foreign.append(rel)
        if len(foreign) >= 3:
            break
    return foreign


def check_removable(path: str | Path, kind: str) -> Path:
    """``path`` if :func:`remove_store` may delete it, else an :class:`OwnershipError`."""
    path = Path(path)
    if not path.exists():
        return path
    if not path.is_dir() or path.is_symlink():
        raise OwnershipError(path, f"not removing it: it is not a {kind} store made by "
                             "ratag_xr (not a folder)")
    found = store_kind(path)
    if found != kind:
        what = "no ratag_xr marker" if found is None else f"a ratag_xr {found} store"
        raise OwnershipError(path, f"not removing it: it is not a {kind} store made by "
                             f"ratag_xr ({what}); ratag_xr deletes only what it made")
    foreign = _foreign_files(path)
    if foreign:
        listed = ", ".join(str(f) for f in foreign)
        raise OwnershipError(path, f"not removing it: it holds files ratag_xr did not write "
                             f"there ({listed}); move them away first")
    return path


def remove_store(path: str | Path, kind: str) -> bool:
    """Delete the ratag_xr ``kind`` store at ``path`` (see the module doc); True if it
    existed.  Refuses (raises, deletes nothing) for anything ratag_xr did not make."""
    path = check_removable(path, kind)
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True


#: What a simulated run folder holds besides its raw files: ratag_xr's own outputs.
_OUTPUT_SUFFIXES = {".json", ".npy", ".npz", ".png", ".parquet", ".html", ".jsonl", ".lock"}
SIMULATED_RUN = "ground truth of a simulated ratag_xr run"


def remove_simulated_run(run_dir: str | Path) -> bool:
    """Delete a run folder written by ratag_xr's simulator (and the outputs ratag_xr wrote
    into it); True if it existed.

    It must hold the simulator's ``truth.json``, every ``.wfm`` below it must be a file that
    ``truth.json`` lists, every Zarr store a ratag_xr one, and every other file one of
    ratag_xr's outputs; otherwise :class:`OwnershipError` and nothing is deleted.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return False
    try:
        truth = json.loads((run_dir / "truth.json").read_text())
        listed = {(s["name"], f) for s in truth["sets"]
                  for f in [*s["files"], *s.get("alpha_files", [])]}
        ours = str(truth.get("description", "")).startswith(SIMULATED_RUN)
    except (OSError, ValueError, KeyError, TypeError):
        ours = False
    if not ours:
        raise OwnershipError(run_dir, "not removing it: it is not a run simulated by ratag_xr "
                             "(no truth.json of the simulator); ratag_xr deletes only what "
                             "it made")
    stores = [p for p in run_dir.rglob("*.zarr") if p.is_dir()]
    for store in stores:
        check_removable(store, store_kind(store) or "waveforms")
    for item in run_dir.rglob("*"):
        if item.is_dir() or any(s in item.parents for s in stores):
            continue
        rel = item.relative_to(run_dir)
        if item.suffix.lower() == ".wfm":
            ok = len(rel.parts) >= 2 and (rel.parts[-2], rel.name) in listed
        else:
            ok = item.suffix.lower() in _OUTPUT_SUFFIXES or item.name.startswith(".")
        if not ok or item.is_symlink():
            raise OwnershipError(run_dir, f"not removing it: {rel} was not written by "
                                 "ratag_xr; move it away first")
    shutil.rmtree(run_dir)
    return True
