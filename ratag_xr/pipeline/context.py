"""The analysis handle of a run: where its raw data, stores and outputs live, its
configuration and its Dask client; the package versions and the input manifest hash that
enter every lineage (:mod:`ratag_xr.runner`)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
from dataclasses import dataclass, field
from pathlib import Path

from ratag_xr.config import Config, load_config
from ratag_xr.errors import ConfigError
from ratag_xr.store.layout import STORE_NAME, manifest_path
from ratag_xr.store.manifest import Manifest

RESULTS_NAME = "results.zarr"
_DEPENDENCIES = ("numpy", "scipy", "xarray", "dask", "distributed", "zarr", "numba", "iminuit")


@dataclass
class Run:
    """A run under analysis.  ``out`` defaults to the run directory (§10)."""

    run_dir: Path
    out: Path
    config: Config = field(default_factory=Config)
    client: object | None = None  # a distributed.Client or a cluster spec (None: the config's)
    nfiles: int | None = None  # test mode: first N files of each set
    force: bool = False  # recompute the stages of a call even when their lineage is unchanged
    progress: bool = True  # progress bars (stderr) on the passes over the waveforms
    accept: object | None = None  # accept(path): the raw files that exist yet (live mode)

    @property
    def run_id(self) -> str:
        return self.config.run.run_id or self.run_dir.name

    @property
    def store(self) -> Path:
        return self.out / STORE_NAME

    @property
    def results(self) -> Path:
        return self.out / RESULTS_NAME

    @property
    def plots_dir(self) -> Path:
        return self.out / "plots"


def open_analysis(target, *, out=None, config: Config | None = None, client=None,
                  nfiles: int | None = None, force: bool | None = None,
                  overrides: dict | None = None) -> Run:
    """A :class:`Run` from a run directory, a YAML run config (``run.run_dir`` inside) or
    a :class:`Run` (a copy, with the keywords given applied to it).

    ``overrides``: config values by key (``{"prepare.estimate_s2_windows": False}``, None
    values ignored), checked like the YAML's; they become part of the run's config, so
    they are in the lineage of every stage that reads them.
    """
    if isinstance(target, Run):
        run = dataclasses.replace(
            target, out=Path(out) if out is not None else target.out,
            config=config if config is not None else target.config,
            client=client if client is not None else target.client,
            nfiles=nfiles if nfiles is not None else target.nfiles,
            force=target.force if force is None else force)
    else:
        from ratag_xr import group_config

        path = Path(target)
        if path.suffix.lower() in (".yaml", ".yml"):
            config = load_config(path) if config is None else config
            if config.run.run_dir is None:
                raise ConfigError(f"{path}: run.run_dir is not set")
            group_config.check_run_dir(config)
            path = Path(config.run.run_dir)
        config = config or Config()
        if path.is_dir():  # the group's max_frames needs the run's frames per file
            config = group_config.resolve(config, path)
        nfiles = nfiles if nfiles is not None else config.ingest.nfiles
        run = Run(run_dir=path, out=Path(out) if out is not None else path, config=config,
                  client=client, nfiles=nfiles, force=bool(force))
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if given:
        run = dataclasses.replace(run, config=run.config.replace(given))
    return run


def versions() -> dict[str, str]:
    """ratag_xr's and its main dependencies' versions (looked up once per process: a
    package upgraded under a running command is not what the command runs)."""
    return dict(_versions())


@functools.cache
def _versions() -> dict[str, str]:
    out = {}
    for name in ("ratag_xr", *_DEPENDENCIES):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def manifest_hash(run: Run, sets=None, first: int | None = None) -> str:
    """Hash of the raw files a result depends on: name, role, size, frames and slots of
    every planned or ingested file of ``sets`` (default: every set), or only of the files
    holding each set's ``first`` frames.  A file is planned before it is read (in the
    read-once path, read by the analysis itself), so the hash is the same before and
    after; a raw file that changes after planning is refused by ingest."""
    from ratag_xr.store.ingest import first_files

    manifest = Manifest.load(manifest_path(run.store))
    names = sets if sets is not None else sorted({s for s, _ in manifest.entries})
    chosen = {s: set(first_files(manifest, s, first)) for s in names}
    rows = sorted((e["set"], e["file"], e.get("role", "pmt"),
                   e.get("fingerprint", {}).get("size"), e.get("n_frames"), e.get("slot0"))
                  for e in manifest.entries.values()
                  if e["status"] in ("planned", "ok") and e["set"] in chosen
                  and (e.get("twin_of") or e["file"]) in chosen[e["set"]])
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def persist_with_progress(client, collection, label: str, show: bool = True):
    """Start ``collection`` on the cluster, show a bar of its chunks finishing (stderr),
    and return it persisted (results stay on the workers)."""
    persisted = client.persist(collection)
    if show:
        import sys

        from distributed import as_completed, futures_of
        from tqdm import tqdm

        futures = futures_of(persisted)
        for _ in tqdm(as_completed(futures, loop=client.loop), total=len(futures), desc=label,
                      unit="chunk", file=sys.stderr, leave=False):
            pass
    return persisted
