"""Analysis stages: each is one :class:`Stage` declaration plus its ``compute``.

A stage declares what it reads (other stages, the features it runs, config keys, the raw
waveforms), the parameters it owns, what it provides (result variables by part, files)
and a version.  The runner (:mod:`ratag_xr.runner`) derives the stage's lineage from
exactly those declarations, decides whether a stored result can be reused, starts the
Dask client when a stage needs one, calls ``compute`` with a :class:`StageContext` and
saves what it returns.  ``compute`` sees only what the stage declared: reading an
undeclared config key or stage is an error, so a value that changes a result is always in
its lineage.

Reads are strings: ``stage:<name>`` (its stored results), ``features:<pass>`` (every
registered feature of that pass, parameters included), ``config:<section>`` (every key of
the section that can change a result) or ``config:<section>.<key>``, ``waveforms``
(the ingested raw data of the PMT sets: the file manifest enters the lineage) and
``monitors`` (that of the alpha monitor sets, ALGORITHMS.md §11).

``ctx.load(stage, part)`` gives a stored part in memory; ``ctx.open(stage, part)`` opens
a part of more than one stored block lazily (a frames part as Dask arrays of its blocks;
one block: in memory), for per-set statistics reduced block by block
(:mod:`ratag_xr.pipeline.partials`: histograms, counts and maxima of the blocks add up),
whose memory then does not grow with the number of frames.

The built-in stages are the modules of this package, registered in run order.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import xarray as xr

from ratag_xr.errors import RatagError
from ratag_xr.params import PARAMS, Param, declare, section_params

PARTS = ("sets", "frames", "run")


@dataclass(frozen=True)
class Stage:
    """Declaration of an analysis stage (see the module doc).

    ``provides`` maps a result part (``sets``, ``frames``, ``run``) to the variable names
    it holds (``"features:pass1"`` stands for every output of those features); ``files``
    says in words which files it writes (the runner records the real paths and checks
    them on reuse).  Raise ``version`` when what ``compute`` does changes.
    """

    name: str
    version: int
    reads: tuple[str, ...]
    compute: Callable
    params: tuple[Param, ...] = ()
    provides: dict = field(default_factory=dict)
    files: tuple[str, ...] = ()
    doc: str = ""
    #: for a stage reading waveforms: how many frames from the start of each set it reads
    #: (``input_frames(config)``; None: all), so its lineage covers only their files
    input_frames: Callable | None = None
    #: the stage can add new raw files' results to its stored ones (``ctx.appendable``,
    #: ``ctx.previous``) when nothing but the raw files changed (live mode)
    incremental: bool = False
    #: what the stage reads from outside this run (``external(config) -> {what: {...}}``,
    #: e.g. another run's stored g_S2 and its lineage hash): it enters the lineage, so a
    #: changed source recomputes the stage
    external: Callable | None = None

    def __post_init__(self):
        object.__setattr__(self, "reads", tuple(self.reads))
        object.__setattr__(self, "params", tuple(self.params))
        bad = [r for r in self.reads if not r.startswith(
            ("stage:", "features:", "feature:", "config:")) and r not in ("waveforms",
                                                                          "monitors")]
        if bad:
            raise RatagError(f"stage {self.name!r}: unknown read(s) {bad}")
        unknown = set(self.provides) - set(PARTS)
        if unknown:
            raise RatagError(f"stage {self.name!r}: unknown result part(s) {sorted(unknown)}")

    @property
    def upstream(self) -> tuple[str, ...]:
        """The stages this one reads."""
        return tuple(r.split(":", 1)[1] for r in self.reads if r.startswith("stage:"))

    @property
    def reads_waveforms(self) -> bool:
        return "waveforms" in self.reads

    @property
    def reads_monitors(self) -> bool:
        return "monitors" in self.reads

    def features(self):
        """The registered features this stage runs (its ``features:``/``feature:`` reads)."""
        from ratag_xr.features import select

        out = []
        for r in self.reads:
            if r.startswith("features:"):
                out += select(r.split(":", 1)[1])
            elif r.startswith("feature:"):
                out += select([r.split(":", 1)[1]])
        return out

    def config_keys(self) -> list[str]:
        """Every config key whose value can change this stage's result: the declared
        ``config:`` reads, the stage's own parameters and its features' parameters."""
        keys = []
        for r in self.reads:
            if not r.startswith("config:"):
                continue
            target = r.split(":", 1)[1]
            if "." in target:
                if target not in PARAMS:
                    raise RatagError(f"stage {self.name!r} reads {target!r}, which is not "
                                     "a declared parameter")
                keys.append(target)
            else:
                keys += [p.key for p in section_params(target)]
        keys += [p.key for p in self.params]
        keys += [p.key for f in self.features() for p in f.params]
        return [k for k in dict.fromkeys(keys) if PARAMS[k].lineage]

    def provided(self, part: str) -> list[str]:
        """Variable names the stage promises in ``part`` (feature outputs expanded)."""
        from ratag_xr.features import select

        names = []
        for item in self.provides.get(part, ()):
            if item.startswith("features:"):
                names += [o for f in select(item.split(":", 1)[1]) for o in f.output_names]
            else:
                names.append(item)
        return names


@dataclass
class StageResult:
    """What a compute returns: result datasets by part, and the files it wrote."""

    sets: xr.Dataset | None = None
    frames: xr.Dataset | None = None
    run: xr.Dataset | None = None
    files: list = field(default_factory=list)

    def parts(self) -> dict[str, xr.Dataset]:
        return {p: getattr(self, p) for p in PARTS if getattr(self, p) is not None}


class _SectionView:
    __slots__ = ("_section", "_allowed", "_stage")

    def __init__(self, section, allowed: set[str], stage: str):
        object.__setattr__(self, "_section", section)
        object.__setattr__(self, "_allowed", allowed)
        object.__setattr__(self, "_stage", stage)

    def __getattr__(self, key: str):
        name = object.__getattribute__(self, "_section")._name
        if f"{name}.{key}" not in object.__getattribute__(self, "_allowed"):
            raise RatagError(f"stage {self._stage!r} reads config {name}.{key} without "
                             "declaring it (add it to the stage's reads or params, so that "
                             "it is in the stage's lineage)")
        return getattr(object.__getattribute__(self, "_section"), key)


class ConfigView:
    """The run config as a stage sees it: only the keys it declared (plus the ones that
    cannot change a result, such as the cluster)."""

    def __init__(self, config, allowed: set[str], stage: str):
        self._config, self._allowed, self._stage = config, allowed, stage

    def __getattr__(self, section: str):
        if section.startswith("_"):
            raise AttributeError(section)
        return _SectionView(getattr(self._config, section), self._allowed, self._stage)

    def get(self, key: str) -> Any:
        if key not in self._allowed:
            raise RatagError(f"stage {self._stage!r} reads config {key} without declaring "
                             "it (add it to the stage's reads or params)")
        return self._config.get(key)

    @property
    def full(self):
        """The whole config, for passing to feature resolution: the features of the stage
        were declared, so their parameters are in its lineage."""
        return self._config


STAGES: dict[str, Stage] = {}
ORDER = ("prepare", "frames", "integrate", "classify", "calibrate", "alpha", "isotopes",
         "export", "plots", "report")


def register(stage: Stage) -> Stage:
    """Add a stage (its name must be new) and declare its parameters."""
    if stage.name in STAGES:
        raise RatagError(f"a stage named {stage.name!r} is already registered")
    missing = [u for u in stage.upstream if u not in STAGES]
    if missing:
        raise RatagError(f"stage {stage.name!r} reads stage(s) {missing}, which are not "
                         "registered before it")
    declare(*stage.params, owner=f"stage {stage.name}")
    STAGES[stage.name] = stage
    return stage


def closure(names) -> list[str]:
    """``names`` and every stage they read, transitively, in run order."""
    wanted, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name not in STAGES:
            raise RatagError(f"unknown stage {name!r}; stages are {list(STAGES)}")
        if name not in wanted:
            wanted.add(name)
            todo += STAGES[name].upstream
    return [n for n in STAGES if n in wanted]


for _name in ORDER:
    importlib.import_module(f"{__name__}.{_name}")
