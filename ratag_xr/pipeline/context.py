"""The analysis handle of a run: where its raw data, stores and outputs live, its
configuration, its Dask client, and the lineage that decides when a stage is stale."""

from __future__ import annotations

import dataclasses
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
    client: object | None = None  # a distributed.Client, or None for a temporary local one
    nfiles: int | None = None  # test mode: first N files of each set
    force: bool = False  # recompute stages even when their lineage is unchanged
    progress: bool = True  # progress bars (stderr) on the passes over the waveforms
    computed: set = field(default_factory=set)  # stages computed by this handle (force once)

    def reuse(self, stage: str, lineage: dict) -> bool:
        """True when ``stage`` is stored with this lineage and need not be recomputed:
        ``force`` redoes a stage once per handle, not every time a later stage needs it."""
        from ratag_xr.pipeline.results import stage_is_current

        if self.force and stage not in self.computed:
            return False
        return stage_is_current(self.results, stage, lineage)

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
                  nfiles: int | None = None, force: bool = False) -> Run:
    """A :class:`Run` from a run directory or a YAML run config (``run.run_dir`` inside)."""
    if isinstance(target, Run):
        return target
    path = Path(target)
    if path.suffix.lower() in (".yaml", ".yml"):
        config = load_config(path)
        if config.run.run_dir is None:
            raise ConfigError(f"{path}: run.run_dir is not set")
        path = Path(config.run.run_dir)
    config = config or Config()
    nfiles = nfiles if nfiles is not None else config.ingest.nfiles
    return Run(run_dir=path, out=Path(out) if out is not None else path, config=config,
               client=client, nfiles=nfiles, force=force)


def versions() -> dict[str, str]:
    """ratag_xr's and its main dependencies' versions."""
    out = {}
    for name in ("ratag_xr", *_DEPENDENCIES):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


def manifest_hash(run: Run) -> str:
    """Hash of the ingested file manifest (names, sizes, content hashes of ok files)."""
    manifest = Manifest.load(manifest_path(run.store))
    ok = sorted((e["set"], e["file"], e["fingerprint"]["size"], e.get("hash", ""))
                for e in manifest.entries.values() if e["status"] == "ok")
    return hashlib.sha256(json.dumps(ok).encode()).hexdigest()


def lineage(run: Run, stage: str, sections: tuple[str, ...], upstream: dict | None = None) -> dict:
    """What a stage's output depends on; its ``hash`` changes when any input changes."""
    config = {name: dataclasses.asdict(getattr(run.config, name)) for name in sections}
    if "run" in config:
        config["run"].pop("run_dir")  # where the raw files are does not change a result
    body = {"stage": stage, "config": config, "versions": versions(),
            "manifest_hash": manifest_hash(run), "nfiles": run.nfiles,
            "upstream": {k: v["hash"] for k, v in (upstream or {}).items()}}
    text = json.dumps(body, sort_keys=True, default=str)
    body["hash"] = hashlib.sha256(text.encode()).hexdigest()
    return body


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


def with_units(ds, table: dict):
    """Set ``units`` and ``long_name`` of the variables of ``ds`` listed in ``table``
    (name -> (units, long_name)); returns ``ds``."""
    for name, (unit, long_name) in table.items():
        if name in ds.variables:
            ds[name].attrs.update(units=unit, long_name=long_name)
    return ds
