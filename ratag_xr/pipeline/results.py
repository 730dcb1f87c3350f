"""The results store: every stage's labeled datasets in one Zarr hierarchy.

``OUT/results.zarr/<stage>/{sets,frames,run}`` with the stage's lineage in the
``<stage>`` group attributes.  A stage is written into a temporary group and renamed
into place, so a reader (or a rerun) never sees half a stage.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import xarray as xr
import zarr

from ratag_xr.errors import OwnershipError, StoreError
from ratag_xr.io.owned import mark, store_kind
from ratag_xr.store.memory import encoded_group, write_files

PARTS = ("sets", "frames", "run")

#: Frames per stored block of a frames part: the stages after ``frames`` reduce it block
#: by block (:mod:`ratag_xr.pipeline.partials`).
FRAME_BLOCK = 131072


def open_results(results: Path) -> zarr.Group:
    """The results store, created and marked as ratag_xr's if absent; an existing folder
    that is not a ratag_xr results store is refused (never written into)."""
    results = Path(results)
    if results.exists() and store_kind(results) != "results":
        raise OwnershipError(results, "not a ratag_xr results store; choose another --out")
    root = zarr.open_group(store=str(results), mode="a", zarr_format=3)
    if store_kind(results) != "results":
        mark(root, "results")
    return root


def _record(results: Path, stage: str) -> dict | None:
    path = results / stage
    if not (path / "zarr.json").exists():
        return None
    return dict(zarr.open_group(store=str(results), path=stage, mode="r").attrs)


def stored_lineage(results: Path, stage: str) -> dict | None:
    """The lineage a stage was stored with (None: not stored)."""
    record = _record(Path(results), stage)
    text = (record or {}).get("lineage")
    return json.loads(text) if text else None


def stored_files(results: Path, stage: str) -> list[dict]:
    """The files a stage wrote, as recorded: path (relative to OUT), size, mtime, hash."""
    record = _record(Path(results), stage)
    text = (record or {}).get("files")
    return json.loads(text) if text else []


def stored_parts(results: Path, stage: str) -> list[str]:
    """The result parts (sets, frames, run) stored for a stage."""
    return [p for p in PARTS if (Path(results) / stage / p / "zarr.json").exists()]


def save_stage(results: Path, stage: str, lineage: dict, *, client=None,
               files: list[dict] | None = None, **parts: xr.Dataset) -> None:
    """Write the datasets of one stage (computing Dask-backed ones on ``client``), its
    lineage and the record of the files it wrote; the stage appears all at once."""
    results = Path(results)
    open_results(results)
    tmp_name = f".{stage}.tmp-{uuid.uuid4().hex[:8]}"
    encoded: dict[str, dict[str, bytes]] = {}
    try:
        zarr.open_group(store=str(results), path=tmp_name, mode="w")
        for part, ds in parts.items():
            if ds is None:
                continue
            ds = _encodable(ds)
            if not ds.chunks:  # in memory: encoded in memory, then written as files
                encoded[part] = encoded_group(ds, mode="w", encoding=frame_blocks(ds))
                write_files(results / tmp_name / part, encoded[part])
                continue
            delayed = ds.to_zarr(str(results), group=f"{tmp_name}/{part}", mode="w",
                                 zarr_format=3, consolidated=False, compute=False)
            if client is not None:  # Dask-backed: written by the workers
                client.compute(delayed).result()
            else:
                delayed.compute(scheduler="synchronous")
        group = zarr.open_group(store=str(results), path=tmp_name, mode="a")
        group.attrs["lineage"] = json.dumps(lineage, sort_keys=True, default=str)
        group.attrs["files"] = json.dumps(files or [])
        final = results / stage
        if final.exists():
            shutil.rmtree(final)
        (results / tmp_name).rename(final)
    finally:
        shutil.rmtree(results / tmp_name, ignore_errors=True)
    for part, files in encoded.items():  # read back from the bytes just written
        _remember(results, stage, part, files)


def frame_blocks(ds: xr.Dataset) -> dict:
    """Zarr encodings storing every (…, frame) variable of ``ds`` in blocks of
    :data:`FRAME_BLOCK` frames (whole along its other dims)."""
    out = {}
    for name, var in ds.variables.items():
        if "frame" in var.dims:
            out[name] = {"chunks": tuple(max(1, min(FRAME_BLOCK, n)) if d == "frame" else n
                                         for d, n in zip(var.dims, var.shape, strict=True))}
    return out


def _encodable(ds: xr.Dataset) -> xr.Dataset:
    """Drop inherited encodings (chunks, codecs); strings become variable-length UTF-8."""
    ds = ds.copy()
    for name, var in ds.variables.items():
        var.encoding = {}
        if var.dtype.kind in "UT":
            ds[name] = var.astype(object)
    return ds


def plain_strings(ds: xr.Dataset) -> xr.Dataset:
    """Zarr's variable-length strings read back as numpy StringDType; use Python str objects
    so that ordinary numpy string code (``astype(str)``, comparisons) works on them."""
    strings = [name for name, var in ds.variables.items() if var.dtype.kind == "T"]
    return ds.assign({name: ds[name].astype(object) for name in strings if name in ds.data_vars}
                     ).assign_coords({name: ds[name].astype(object) for name in strings
                                      if name in ds.coords})


#: Parts read in this process, by path, with the identity of what is on disk: the part's
#: ``zarr.json`` (inode, modification time, size) and the stage's (its lineage and file
#: record, as bytes).  A stage is saved under a new temporary name and renamed into place,
#: so a part read before is reused only while it is the very one on disk.
_LOADED: OrderedDict[str, tuple[tuple, xr.Dataset | dict]] = OrderedDict()
_LOADED_MAX = 64


def load_stage(results: Path, stage: str, part: str) -> xr.Dataset | None:
    """One stored part of a stage loaded into memory (a copy of its own), or None.  Read
    here, without Dask (not as tasks of whatever cluster is the default client): the
    parts are small.  The stages of one command read the same parts many times: a part
    already read is copied from memory while the stored one is unchanged."""
    try:
        key, identity = _part_identity(results, stage, part)
    except FileNotFoundError:
        return None
    hit = _LOADED.get(key)
    if hit is not None and hit[0] == identity:
        _LOADED.move_to_end(key)
        ds = hit[1]
        if not isinstance(ds, xr.Dataset):  # the files of a part just saved: decoded once
            ds = _decoded(ds)
            _store_loaded(key, identity, ds)
        return ds.copy(deep=True)
    ds = xr.open_zarr(str(results), group=f"{stage}/{part}", consolidated=False, chunks=None)
    ds = plain_strings(ds.load())
    _store_loaded(key, identity, ds)
    return ds.copy(deep=True)


def open_stage(results: Path, stage: str, part: str) -> xr.Dataset | None:
    """One stored part of a stage opened lazily: Dask arrays of its stored blocks (a frames
    part: :data:`FRAME_BLOCK` frames each), its coordinates too but the dims'; None if
    not stored.  A part of at most one block is :func:`load_stage`'s, in memory (a Dask
    graph of one block costs more than it saves)."""
    path = Path(results) / stage / part
    if not (path / "zarr.json").exists():
        return None
    if _frames_in(path) <= FRAME_BLOCK:
        return load_stage(results, stage, part)
    ds = xr.open_zarr(str(results), group=f"{stage}/{part}", consolidated=False, chunks={})
    return plain_strings(ds)


def _frames_in(path: Path) -> int:
    """The length of the ``frame`` dim of a stored part (0 without one), from its arrays'
    metadata (no dataset opened)."""
    for child in sorted(path.iterdir()):
        meta = child / "zarr.json"
        if not meta.is_file():
            continue
        array = json.loads(meta.read_bytes())
        names = array.get("dimension_names") or []
        if "frame" in names:
            return int(array["shape"][names.index("frame")])
    return 0


def _part_identity(results: Path, stage: str, part: str) -> tuple[str, tuple]:
    """A stored part's cache key and what identifies it on disk (see :data:`_LOADED`)."""
    path = Path(results) / stage / part
    st = (path / "zarr.json").stat()
    return str(path.resolve()), (st.st_ino, st.st_mtime_ns, st.st_size,
                                 (path.parent / "zarr.json").read_bytes())


def _store_loaded(key: str, identity: tuple, ds: xr.Dataset | dict) -> None:
    _LOADED[key] = (identity, ds)
    _LOADED.move_to_end(key)
    while len(_LOADED) > _LOADED_MAX:
        _LOADED.popitem(last=False)


def _remember(results: Path, stage: str, part: str, files: dict[str, bytes]) -> None:
    """A part just saved: the very bytes written (key -> bytes), decoded by
    :func:`load_stage` when it is first asked for, as it would read them from disk."""
    key, identity = _part_identity(results, stage, part)
    _store_loaded(key, identity, files)


def _decoded(files: dict[str, bytes]) -> xr.Dataset:
    """The dataset of the Zarr files ``files`` (key -> bytes), read as from disk."""
    from zarr.core.buffer import default_buffer_prototype

    proto = default_buffer_prototype()
    store = zarr.storage.MemoryStore({k: proto.buffer.from_bytes(v) for k, v in files.items()})
    ds = xr.open_zarr(store, consolidated=False, chunks=None)
    return plain_strings(ds.load())


@dataclass
class Results:
    """The labeled results of a run: per set, per frame, per run."""

    sets: xr.Dataset
    frames: xr.Dataset
    run: xr.Dataset
    lineage: dict


def has_alpha(run: xr.Dataset) -> bool:
    """The run has alpha frames (PMT sets' twins or monitor sets)."""
    return "alpha_n_frames" in run and (
        int(run.alpha_n_frames) + int(run.alpha_monitor_n_frames.sum())) > 0


def merge_parts(by_stage: dict[str, dict[str, xr.Dataset | None]]) -> dict[str, xr.Dataset]:
    """Per part, the datasets of several stages merged (later stages win on a clash)."""
    merged = {part: [parts[part] for parts in by_stage.values() if parts.get(part) is not None]
              for part in PARTS}
    return {part: xr.merge(dss, compat="override", join="outer", combine_attrs="override")
            if dss else xr.Dataset() for part, dss in merged.items()}


def load_results(out: str | Path) -> Results:
    """Every stored stage of ``OUT/results.zarr`` merged into per-set/frame/run datasets.

    Nothing is recomputed.  ``out`` is the output root (or the results store itself).
    """
    from ratag_xr.stages import STAGES

    out = Path(out)
    results = out if out.name.endswith(".zarr") else out / "results.zarr"
    if not (results / "zarr.json").exists():
        raise StoreError(f"{results}: no results store (run `ratag-xr run` first)")
    lineages, parts = {}, {}
    for stage in STAGES:
        lin = stored_lineage(results, stage)
        if lin is None:
            continue
        lineages[stage] = lin
        parts[stage] = {p: load_stage(results, stage, p) for p in stored_parts(results, stage)}
    if not lineages:
        raise StoreError(f"{results}: no stage has been stored yet")
    merged = merge_parts(parts)
    merged["frames"] = frame_labels(merged["frames"])
    return Results(lineage=lineages, **merged)


def frame_labels(frames: xr.Dataset) -> xr.Dataset:
    """``frames`` with the per-frame labels stages derive (the schema's ``frames`` part:
    calibrated alpha energy, isotope) as coordinates: they select frames
    (``frames.where(frames.isotope == "Ra224")``) and stay attached to every variable."""
    from ratag_xr.vocabulary import SCHEMA

    return frames.set_coords([name for name, var in SCHEMA.items()
                              if var.part == "frames" and name in frames.data_vars])
