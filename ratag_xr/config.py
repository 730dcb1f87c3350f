"""Run configuration: the values of every declared parameter, with their defaults.

A run config is a YAML file with one mapping per section::

    run:
      run_dir: RUN8            # relative to the YAML file
      pressure: 2.0            # bar
    prepare:
      s2_method: mad

The keys are the declared parameters (:mod:`ratag_xr.params`): the run, ingest and cluster
keys below, the parameters of the features (:mod:`ratag_xr.features`) and of the stages
(:mod:`ratag_xr.stages`).  Unknown keys, values of the wrong type, values outside their
range and duplicated keys are a :class:`~ratag_xr.errors.ConfigError` naming the key and
the file, raised when the config is read: before any work starts.  Values that can only
be checked against the data (``n_pedestal`` against the record length, ``per_set`` names)
are checked by the runner once the run is discovered, still before any pass.  A file in
the group's own run-config layout (``experiment``, ``pipeline``, ``data`` ...) is read too:
:func:`load_config` converts it (:mod:`ratag_xr.group_config`).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml
from numcodecs.blosc import list_compressors
from zarr.codecs import BloscCname, BloscShuffle

from ratag_xr.errors import ConfigError
from ratag_xr.params import (
    PARAMS,
    Param,
    at_least,
    at_most,
    declare,
    declare_check,
    one_of,
    positive,
    section_params,
    sections,
)

RUN_PARAMS = declare(
    Param("run.run_dir", None, str | None, "", "the raw run folder (the command-line argument "
          "wins); relative to the YAML file", lineage=False),
    Param("run.run_id", None, str | None, "", "run id used in plot and file names (default: "
          "the run folder's name)"),
    Param("run.pressure", 2.0, float, "bar", "gas pressure", checks=(positive,)),
    Param("run.temperature", 293.0, float, "K", "gas temperature", checks=(positive,)),
    Param("run.drift_gap", 1.4, float, "cm", "drift gap", checks=(positive,)),
    Param("run.el_gap", 0.8, float, "cm", "EL gap", checks=(positive,)),
    Param("run.el_field", None, float | None, "V/cm", "EL field of every set, given "
          "directly (null: (V_anode - V_gate) / el_gap from the set name, §1)",
          checks=(positive,)),
    Param("run.w_value", 22.0, float, "eV", "W-value per electron-ion pair",
          checks=(positive,)),
    Param("run.e_xray", 12300.0, float, "eV", "X-ray energy", checks=(positive,)),
    Param("run.e_recoil", None, float | None, "eV", "recoil energy E_R (null: compare with "
          "the X-ray's expected electrons)", checks=(positive,)),
    Param("run.polarity", "negative", str, "", "PMT pulse polarity (negative: pulses go down "
          "and are flipped)", checks=(one_of("negative", "positive"),)),
    Param("run.channel", None, int | None, "", "keep only `*_ch<N>.wfm` files (as the PMT)",
          checks=(at_least(0),)),
    Param("run.channels", {"pmt": 1, "alpha": 4}, dict, "", "channel number of each role in "
          "`..._Ch<N>.wfm` / `..._CH<N>.wfm` names (ALGORITHMS.md §11; newer DAQ: {pmt: 3, "
          "alpha: 4}); other channels are ignored"),
    Param("run.sets", None, tuple[str, ...] | None, "", "glob patterns of the set folders to "
          "analyse (null: all); a pattern matching no folder is an error"),
    Param("run.exclude", (), tuple[str, ...], "", "glob patterns of set folders to leave out"),
    owner="config",
)
CHANNEL_ROLES = ("pmt", "alpha")


def _check_channels(config) -> str | None:
    """``run.channels``: role -> channel number; ``pmt`` required, ``alpha`` optional."""
    channels = config.run.channels
    unknown = sorted(set(map(str, channels)) - set(CHANNEL_ROLES))
    if unknown:
        return f"run.channels: unknown role(s) {unknown}; roles are {list(CHANNEL_ROLES)}"
    if "pmt" not in channels:
        return f"run.channels: the pmt role needs a channel number, got {channels!r}"
    for role, number in channels.items():
        if number is None and role == "alpha":
            continue
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            return f"run.channels.{role}: expected a channel number >= 1, got {number!r}"
    numbers = [n for n in channels.values() if n is not None]
    if len(set(numbers)) != len(numbers):
        return f"run.channels: each role needs its own channel, got {channels!r}"
    return None


declare_check("run.channels", _check_channels)
#: The Blosc codecs and shuffles a store can be written with (what zarr and numcodecs take).
BLOSC_COMPRESSORS = tuple(sorted({c.value for c in BloscCname} & set(list_compressors())))
BLOSC_SHUFFLES = ("auto", *(s.value for s in BloscShuffle))

INGEST_PARAMS = declare(
    Param("ingest.chunk_mb", 16.0, float, "MB", "target size of one (set, frame-chunk, time) "
          "Zarr chunk", checks=(positive,), lineage=False),
    # lz4 + bit shuffle: the best ratio of the Blosc codecs measured on simulated PMT frames
    # within a few %, at ~3 GB/s per core (zstd + byte shuffle: 150-250 MB/s), so ingest is
    # bound by I/O, not compression (benchmarks/bench_ingest.py, benchmarks/README.md).
    Param("ingest.compressor", "lz4", str, "", "Blosc codec of a new store; chosen by "
          "measurement, see benchmarks/README.md",
          checks=(one_of(*BLOSC_COMPRESSORS),), lineage=False),
    Param("ingest.clevel", 5, int, "", "Blosc compression level of a new store",
          checks=(at_least(0), at_most(9)),
          lineage=False),
    Param("ingest.shuffle", "auto", str, "", "Blosc shuffle of a new store (auto: bit "
          "shuffle)", checks=(one_of(*BLOSC_SHUFFLES),),
          lineage=False),
    Param("ingest.direct_io", "auto", str, "", "chunk files written past the page cache "
          "(O_DIRECT, where the filesystem takes it): auto = by the read-once file tasks, "
          "whose chunks the run does not read again; on = by every ingest; off = never "
          "(a slow disk and a run smaller than the free memory: the page cache absorbs it)",
          checks=(one_of("auto", "on", "off"),), lineage=False),
    Param("ingest.nfiles", None, int | None, "", "only the first N files of each set (test "
          "mode)", checks=(at_least(1),), lineage=False),
    owner="config",
)
CLUSTER_PARAMS = declare(
    Param("cluster.spec", "local", str, "", "local, slurm, pbs or tcp://host:port",
          lineage=False),
    Param("cluster.workers", None, int | None, "", "workers (local: one per core)",
          checks=(at_least(1),), lineage=False),
    Param("cluster.threads", None, int | None, "", "threads per worker",
          checks=(at_least(1),), lineage=False),
    Param("cluster.memory", None, str | None, "", "memory per worker, e.g. 4GiB",
          lineage=False),
    Param("cluster.jobs", None, int | None, "", "batch jobs for slurm/pbs",
          checks=(at_least(1),), lineage=False),
    Param("cluster.processes", "auto", str, "", "local cluster: worker processes (true), "
          "threads of the command's own process (false), or auto: threads for runs of "
          "less than 2 GB of raw data (they start in a fraction of a second), processes "
          "above", checks=(one_of("auto", "true", "false"),), lineage=False),
    owner="config",
)


def _declared() -> None:
    """Import the features and stages, whose modules declare their parameters."""
    import ratag_xr.features
    import ratag_xr.stages  # noqa: F401


def _alpha_channel(run) -> int | None:
    value = run.channels.get("alpha")
    return None if value is None else int(value)


#: Values computed from a section's keys, read like keys (``config.run.sign``).
DERIVED = {
    ("run", "sign"): lambda run: -1.0 if run.polarity == "negative" else 1.0,
    ("run", "pmt_channel"): lambda run: int(run.channels["pmt"]),
    ("run", "alpha_channel"): _alpha_channel,
}


class Section:
    """The values of one config section; ``section.key`` reads a value (and the few
    values derived from them, :data:`DERIVED`: ``run.sign``, ``run.pmt_channel``,
    ``run.alpha_channel``)."""

    __slots__ = ("_name", "_values")

    def __init__(self, name: str, values: dict):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, key: str):
        values = object.__getattribute__(self, "_values")
        if key in values:
            return values[key]
        name = object.__getattribute__(self, "_name")
        if (name, key) in DERIVED:
            return DERIVED[name, key](self)
        param = PARAMS.get(f"{name}.{key}")
        if param is None:
            raise AttributeError(f"config section {name!r} has no key {key!r}")
        return param.default

    def __setattr__(self, key, value):
        raise AttributeError("a config is read-only: use Config.replace")

    def to_dict(self) -> dict:
        return {p.name: getattr(self, p.name) for p in section_params(self._name)}

    def __repr__(self) -> str:
        return f"Section({self._name!r}, {self.to_dict()!r})"


class Config:
    """A whole run configuration: ``config.prepare.threshold_s2``, ``config.get(key)``.

    ``values`` maps sections to mappings of keys (as read from YAML); every value is
    checked against its declaration, and keys not given take their declared default.
    """

    def __init__(self, values: dict | None = None, source: str = "<config>"):
        _declared()
        values = values or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping of sections, got {values!r}")
        known = sections()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"{source}: unknown section(s) {', '.join(unknown)}; known: "
                              f"{', '.join(known)}")
        checked: dict[str, dict] = {}
        for name, given in values.items():
            given = {} if given is None else given
            if not isinstance(given, dict):
                raise ConfigError(f"{source}: {name}: expected a mapping of keys, got "
                                  f"{given!r}")
            declared = {p.name: p for p in section_params(name)}
            bad = sorted(set(given) - set(declared))
            if bad:
                raise ConfigError(f"{source}: {name}: unknown key(s) {', '.join(bad)}; known: "
                                  f"{', '.join(declared)}")
            checked[name] = {k: declared[k].validate(v, source) for k, v in given.items()}
        self._values = checked
        self.source = source
        #: where the values came from when they were converted from another layout (the
        #: group's run configurations: a :class:`ratag_xr.group_config.GroupFile`); not a
        #: value, so not in any lineage
        self.origin = None
        from ratag_xr.params import check_config

        check_config(self)

    def __getattr__(self, section: str) -> Section:
        if section.startswith("_") or section not in sections():
            raise AttributeError(f"config has no section {section!r}")
        return Section(section, self._values.get(section, {}))

    def get(self, key: str) -> Any:
        """The value of ``section.name`` (its declared default when not given)."""
        if key not in PARAMS:
            raise ConfigError(f"{key!r} is not a declared parameter")
        section, name = key.split(".")
        return self._values.get(section, {}).get(name, PARAMS[key].default)

    def given(self) -> dict[str, dict]:
        """Only the values given (not defaulted), by section."""
        return {s: dict(v) for s, v in self._values.items()}

    def to_dict(self) -> dict[str, dict]:
        """Every declared value, by section (defaults included)."""
        return {s: getattr(self, s).to_dict() for s in sections()}

    def replace(self, values: dict[str, Any]) -> Config:
        """A copy with ``{"section.name": value}`` replaced (checked like the file's)."""
        merged = self.given()
        for key, value in values.items():
            if key not in PARAMS:
                raise ConfigError(f"{key!r} is not a declared parameter")
            section, name = key.split(".")
            merged.setdefault(section, {})[name] = value
        config = Config(merged, self.source)
        config.origin = self.origin
        return config

    def __eq__(self, other) -> bool:
        return isinstance(other, Config) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Config({self.given()!r})"


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (YAML keeps the last)."""


def _unique_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"key {key!r} given twice (lines {seen[key] + 1} and "
                              f"{key_node.start_mark.line + 1}); keep one")
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 _unique_mapping)
# YAML 1.2 numbers that YAML 1.1 (PyYAML) reads as strings: 1e5, 1.0e5, 5.0e9 (an exponent
# without a sign, or without a dot); the group's files write them so.
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def config_from_dict(values: dict | None, source: str = "<config>") -> Config:
    """A :class:`Config` from nested mappings (as read from YAML)."""
    return Config(values, source)


#: Keys naming files or folders: relative to the YAML file they are given in.
PATH_KEYS = ("run.run_dir", "calibrate.g_s2")
_WINDOWS = re.compile(r"^[A-Za-z]:[\\/]|\\")


def is_windows_path(text: str) -> bool:
    """``text`` is a Windows path (a drive letter, or backslashes): it is not resolved
    against a YAML file's folder, and where it does not exist the message says so."""
    return bool(_WINDOWS.search(str(text)))


def read_yaml(path: str | Path) -> dict:
    """The mappings of a YAML file (a key given twice in one mapping is an error)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config: {err.strerror}") from None
    try:
        values = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {values!r}")
    return values


def load_config(path: str | Path) -> Config:
    """Read a YAML run config; ``run.run_dir`` (and a ``calibrate.g_s2`` folder) is
    resolved relative to the file.  A file in the group's own layout (top-level
    ``experiment``, ``pipeline``, ``data`` ...) is converted
    (:mod:`ratag_xr.group_config`); ``config.origin`` then says how."""
    from ratag_xr import group_config

    path = Path(path)
    values = read_yaml(path)
    if group_config.is_group_layout(values):
        conversion = group_config.convert(values, path)
        print(f"ratag-xr: {conversion.origin.summary()}", file=sys.stderr, flush=True)
        return conversion.config
    config = Config(values, str(path))
    relative = {}
    for key in PATH_KEYS:
        value = config.get(key)
        if isinstance(value, str) and not Path(value).is_absolute() \
                and not is_windows_path(value):
            relative[key] = str((path.parent / value).resolve())
    return config.replace(relative) if relative else config


def with_overrides(config: Config, section: str, **values) -> Config:
    """A copy of ``config`` with keys of one section replaced (None values are ignored)."""
    values = {f"{section}.{k}": v for k, v in values.items() if v is not None}
    return config.replace(values) if values else config


def run_section(**values) -> Section:
    """A checked ``run`` section with ``values`` (the rest defaults), e.g. for
    :func:`~ratag_xr.store.discover_run`."""
    return Config({"run": values}).run
