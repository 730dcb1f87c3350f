"""Run configuration: every run parameter and stage parameter, with defaults.

A run config is a YAML file with one mapping per section (``run``, ``ingest``,
``prepare``, ``integrate``, ``xray``, ``calibrate``, ``cluster``)::

    run:
      run_dir: RUN8            # relative to the YAML file
      pressure: 2.0            # bar
    prepare:
      s2_method: mad

Unknown keys and values of the wrong type are :class:`~ratag_xr.errors.ConfigError`
naming the key and the file.  Defaults follow ALGORITHMS.md.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ratag_xr.errors import ConfigError


@dataclass(frozen=True)
class RunParams:
    """Detector and gas parameters of a run (ALGORITHMS.md "Run parameters")."""

    run_dir: str | None = None  # the raw run folder (CLI argument wins)
    run_id: str | None = None  # defaults to the run folder's name
    pressure: float = 2.0  # bar
    temperature: float = 293.0  # K
    drift_gap: float = 1.4  # cm
    el_gap: float = 0.8  # cm
    w_value: float = 22.0  # eV per electron-ion pair
    e_xray: float = 12300.0  # eV
    e_recoil: float | None = None  # eV; None compares with the X-ray's expected electrons
    polarity: str = "negative"  # "negative" (PMT pulses go down) or "positive"
    channel: int | None = None  # keep only `*_ch<N>.wfm` files; None keeps all
    #: channel number of each role (ALGORITHMS.md §11); the newer DAQ uses {pmt: 3, alpha: 4}
    channels: dict = field(default_factory=lambda: dict(DEFAULT_CHANNELS))
    sets: tuple[str, ...] | None = None  # glob patterns of set folders to use (None: all)
    exclude: tuple[str, ...] = ()  # glob patterns of set folders to leave out

    def __post_init__(self):
        _check_channels(self.channels)
        if self.polarity not in ("negative", "positive"):
            raise ConfigError(
                f"run.polarity must be 'negative' or 'positive', got {self.polarity!r}"
            )
        for name in ("pressure", "temperature", "drift_gap", "el_gap", "w_value", "e_xray"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"run.{name} must be > 0, got {getattr(self, name)!r}")

    @property
    def sign(self) -> float:
        """Multiplier that makes PMT pulses positive-going."""
        return -1.0 if self.polarity == "negative" else 1.0

    @property
    def pmt_channel(self) -> int:
        return int(self.channels["pmt"])

    @property
    def alpha_channel(self) -> int | None:
        """The alpha detector's channel; None when the run has no alpha role."""
        value = self.channels.get("alpha")
        return None if value is None else int(value)


#: ALGORITHMS.md §11: the older DAQ's channels (PMT on 1, silicon alpha detector on 4)
DEFAULT_CHANNELS = {"pmt": 1, "alpha": 4}
CHANNEL_ROLES = ("pmt", "alpha")


def _check_channels(channels) -> None:
    """``run.channels``: role -> channel number; ``pmt`` required, ``alpha`` optional."""
    if not isinstance(channels, dict):
        raise ConfigError(f"run.channels: expected a mapping of roles {list(CHANNEL_ROLES)} to "
                          f"channel numbers, e.g. {{pmt: 3, alpha: 4}}, got {channels!r}")
    unknown = sorted(set(map(str, channels)) - set(CHANNEL_ROLES))
    if unknown:
        raise ConfigError(f"run.channels: unknown role(s) {unknown}; roles are "
                          f"{list(CHANNEL_ROLES)}")
    if "pmt" not in channels:
        raise ConfigError(f"run.channels: the pmt role needs a channel number, got {channels!r}")
    for role, number in channels.items():
        if number is None and role == "alpha":
            continue
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ConfigError(f"run.channels.{role}: expected a channel number >= 1, "
                              f"got {number!r}")
    numbers = [n for n in channels.values() if n is not None]
    if len(set(numbers)) != len(numbers):
        raise ConfigError(f"run.channels: each role needs its own channel, got {channels!r}")


@dataclass(frozen=True)
class IngestParams:
    """How raw files become the Zarr waveform store (see ratag_xr.store.layout)."""

    chunk_mb: float = 16.0  # target uncompressed size of one (set, frame-chunk, time) chunk
    # lz4 + bit shuffle: the best ratio of the Blosc codecs measured on simulated PMT frames
    # within a few %, at ~3 GB/s per core (zstd + byte shuffle: 150-250 MB/s), so ingest is
    # bound by I/O, not compression (benchmarks/bench_ingest.py, benchmarks/README.md).
    compressor: str = "lz4"  # Blosc codec: zstd, lz4, lz4hc, zlib, blosclz
    clevel: int = 5
    shuffle: str = "auto"  # auto: bit shuffle; or shuffle, bitshuffle, noshuffle
    nfiles: int | None = None  # only the first N files of each set (test mode)


@dataclass(frozen=True)
class PrepareParams:
    """S1 time (§3), S2 window (§4) and the shared signal conditioning (§2).

    Names equal the per-frame kernels' parameter names, so a declaration's parameters are
    looked up here directly.
    """

    n_pedestal: int = 2000  # samples averaged for the pedestal
    ma_window: int = 9  # samples of the centred moving average
    s1_batches: int = 5  # frame chunks averaged for the S1 estimate
    s1_min_height: float = 0.001  # mV
    s1_min_distance: int = 200  # samples
    s1_sigma_threshold: float = 1.0
    s1_hist_bins: int = 50
    s2_clip: float = 0.02  # mV: smoothed values below are set to 0
    threshold_s2: float = 0.4  # mV
    s2_method: str = "percentile"  # percentile | mad | std
    s2_duration_cuts: tuple[float, ...] = (5.0, 25.0)  # µs
    s2_min_values: int = 10

    def __post_init__(self):
        if self.s2_method not in ("percentile", "mad", "std"):
            raise ConfigError(f"prepare.s2_method must be percentile, mad or std, "
                              f"got {self.s2_method!r}")
        cuts = self.s2_duration_cuts
        if len(cuts) != 2 or not cuts[0] < cuts[1]:
            raise ConfigError(f"prepare.s2_duration_cuts must be [low, high] with low < high, "
                              f"got {list(self.s2_duration_cuts)}")
        if self.n_pedestal < 1 or self.ma_window < 1 or self.s1_batches < 1:
            raise ConfigError("prepare.n_pedestal, ma_window and s1_batches must be >= 1")


@dataclass(frozen=True)
class XrayParams:
    """X-ray event classification (§7); computed in the same pass as the S2 window."""

    bs_threshold: float = 0.8  # mV
    ts2_tol: float = -2.7  # µs: X-ray S2 search ends at t_s1 + time_drift + ts2_tol
    max_area_s2: float = 1e5  # mV (a sum of samples)
    min_s2_sep: float = 1.0  # µs
    min_s1_sep: float = 1.0  # µs


@dataclass(frozen=True)
class IntegrateParams:
    """Ion S2 area (§5) and its per-set Gaussian fit (§6)."""

    use_estimated_s2_windows: bool = True
    bs_threshold: float = 0.8  # mV
    ts2_tol: float = -2.7  # µs, fallback window start = t_s1 + time_drift + ts2_tol
    width_s2: float = 1.1  # µs, fallback window width
    bin_cuts: tuple[float, ...] = (0.0, 4.0)  # mV·µs
    nbins: int = 100
    exclude_index: int = 1  # leading bins left out of the fit (zero-area frames)
    auto_range: bool = False  # range from robust statistics instead of bin_cuts
    per_set: dict = field(default_factory=dict)  # {set name: {bin_cuts, nbins, auto_range}}

    def __post_init__(self):
        if len(self.bin_cuts) != 2 or not self.bin_cuts[0] < self.bin_cuts[1]:
            raise ConfigError(f"integrate.bin_cuts must be [low, high] with low < high, "
                              f"got {list(self.bin_cuts)}")
        allowed = {"bin_cuts", "nbins", "auto_range"}
        for name, values in self.per_set.items():
            if not isinstance(values, dict) or set(values) - allowed:
                raise ConfigError(f"integrate.per_set.{name}: expected a mapping with keys "
                                  f"from {sorted(allowed)}, got {values!r}")

    def histogram_for(self, set_name: str) -> dict:
        """bin_cuts, nbins and auto_range for one set (per-set values win)."""
        spec = {"bin_cuts": tuple(self.bin_cuts), "nbins": self.nbins,
                "auto_range": self.auto_range}
        spec.update(self.per_set.get(set_name, {}))
        spec["bin_cuts"] = tuple(float(v) for v in spec["bin_cuts"])
        return spec


@dataclass(frozen=True)
class CalibrateParams:
    """Combined X-ray fit and calibration (§8), diffusion (§9)."""

    xray_bin_cuts: tuple[float, ...] = (0.6, 20.0)  # mV·µs
    xray_nbins: int = 100
    xray_exclude_index: int = 0  # the range already starts above the pedestal peak


@dataclass(frozen=True)
class ClusterParams:
    """Where Dask runs (see ratag_xr.cluster); CLI options override these."""

    spec: str = "local"  # local | slurm | pbs | tcp://host:port
    workers: int | None = None
    threads: int | None = None
    memory: str | None = None
    jobs: int | None = None


@dataclass(frozen=True)
class Config:
    """A whole run configuration."""

    run: RunParams = field(default_factory=RunParams)
    ingest: IngestParams = field(default_factory=IngestParams)
    prepare: PrepareParams = field(default_factory=PrepareParams)
    xray: XrayParams = field(default_factory=XrayParams)
    integrate: IntegrateParams = field(default_factory=IntegrateParams)
    calibrate: CalibrateParams = field(default_factory=CalibrateParams)
    cluster: ClusterParams = field(default_factory=ClusterParams)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_type(value, annotation, where: str):
    """Return ``value`` coerced to ``annotation`` (int -> float allowed) or raise ConfigError."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(value, option, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(annotation)
        item_type = args[0] if args else Any
        return tuple(_check_type(v, item_type, where) for v in value)
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if annotation is Any:
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {annotation!r}")


def _join(where: str, key: str) -> str:
    return f"{where} {key}" if where.endswith(":") else f"{where}.{key}"


def build_section(cls, values: dict | None, where: str):
    """Build the dataclass ``cls`` from a mapping, refusing unknown keys and wrong types."""
    values = values or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        place = where.rstrip(":")
        raise ConfigError(f"{place}: unknown key(s) {', '.join(unknown)}; known: {sorted(known)}")
    kwargs = {}
    for key, value in values.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = build_section(hint, value, _join(where, key))
        else:
            kwargs[key] = _check_type(value, hint, _join(where, key))
    try:
        return cls(**kwargs)
    except ConfigError as err:
        file = where.split(":")[0] if ":" in where else where
        raise ConfigError(f"{file}: {err}") from None


def config_from_dict(values: dict | None, source: str = "<config>") -> Config:
    """A :class:`Config` from nested mappings (as read from YAML)."""
    return build_section(Config, values, f"{source}:")


def load_config(path: str | Path) -> Config:
    """Read a YAML run config; ``run.run_dir`` is resolved relative to the file."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    config = config_from_dict(values, str(path))
    run_dir = config.run.run_dir
    if run_dir is not None and not Path(run_dir).is_absolute():
        run = dataclasses.replace(config.run, run_dir=str((path.parent / run_dir).resolve()))
        config = dataclasses.replace(config, run=run)
    return config


def with_overrides(config: Config, section: str, **values) -> Config:
    """A copy of ``config`` with keys of one section replaced (None values are ignored)."""
    values = {k: v for k, v in values.items() if v is not None}
    if not values:
        return config
    current = dataclasses.asdict(getattr(config, section))
    current.update(values)
    new = build_section(type(getattr(config, section)), current, section)
    return dataclasses.replace(config, **{section: new})
