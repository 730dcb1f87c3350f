"""The group's own run configurations (one YAML per run, RUN19–RUN30), read as they are.

Their layout: ``run_id``, ``description``, ``data`` (``raw_data_path``, ``output_base``),
``experiment``, ``multi_isotope``, ``energy_mapping`` (older files nest it inside
``multi_isotope``; both are accepted), ``pipeline`` (``preparation``, ``integration``,
``xray_classification``) and ``recombination_analysis``.  :data:`RULES` is the one table
of how each of their keys becomes ratag_xr keys, :data:`IGNORED` the keys with no meaning
here and why; an unknown key is a :class:`~ratag_xr.errors.ConfigError` naming it and the
file.  :func:`convert` makes the equivalent :class:`~ratag_xr.config.Config` (whose
``origin`` is the :class:`GroupFile` saying how), :func:`converted_yaml` writes it as a
ratag_xr YAML with a comment per key (``ratag-xr config import``), :func:`mapping_table`
is the README's table (``python -m ratag_xr.group_config README.md`` regenerates it).

What needs the data is done where the data are known: their ``dt`` and
``sampling_rate`` are compared with the headers once the run is ingested (a warning
naming both when they disagree: the headers' spacing is what ratag_xr integrates with),
and ``max_frames`` becomes ``ingest.nfiles`` once the frames per file are known
(:func:`resolve`, with a warning).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ratag_xr.config import Config, is_windows_path
from ratag_xr.errors import ConfigError, RatagError
from ratag_xr.params import PARAMS, declare_data_warning, replace_generated

#: Their top-level sections (any of them, or ``run_id``, marks their layout).
SECTIONS = ("data", "experiment", "multi_isotope", "energy_mapping", "pipeline",
            "recombination_analysis")
TOP_KEYS = ("run_id", "description")
#: Older files nest ``energy_mapping`` inside ``multi_isotope``.
OLDER_NESTING = ("multi_isotope.energy_mapping", "energy_mapping")


@dataclass(frozen=True)
class Rule:
    """How one of their keys becomes ratag_xr keys.

    ``keys``: the ratag_xr keys it sets; ``note``: what differs or is worth knowing;
    ``convert(value, theirs) -> {ratag key: value}`` (default: the value itself, to
    ``keys[0]``; ``theirs``: their whole file, flattened, for keys that depend on another).
    """

    keys: tuple[str, ...]
    note: str = ""
    convert: Callable | None = None
    #: why it sets its keys after the first (implied settings)
    implied: str = ""

    def apply(self, value, theirs: dict) -> dict:
        if self.convert is not None:
            return self.convert(value, theirs)
        return {self.keys[0]: value}


def _same(key: str, note: str = "") -> Rule:
    return Rule((key,), note)


def _switch(value, theirs):
    """A key that only decides how another is read."""
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {value!r}")
    return {}


#: why their ranges are not used in multi-isotope mode
_COMPUTED_RANGES = ("multi_isotope.enabled is true: frames are tagged by the calibrated "
                    "ranges (§13), as their pipeline's computed ranges do")


def _isotope_ranges(value, theirs):
    """Their ranges tag the frames only where their pipeline does: single-isotope mode."""
    return {} if theirs.get("multi_isotope.enabled", False) else {"alpha.isotope_ranges": value}


def _order(value, theirs):
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {value!r}")
    return {"alpha.order": 2 if value else 1}


#: Their fit (``fit_s2_area_auto``) is the two-stage right-tailed Crystal Ball: a file
#: giving its background settings asks for it.
_CRYSTAL_BALL = {"integrate.fit_model": "crystal_ball", "integrate.two_stage": True}
_FIT_NOTE = "; their fit is the two-stage Crystal Ball (§15), so this also sets " \
            "integrate.fit_model: crystal_ball, integrate.two_stage: true"


def _fit(key: str, note: str) -> Rule:
    return Rule((key, *_CRYSTAL_BALL), note + _FIT_NOTE,
                lambda value, theirs: {key: value, **_CRYSTAL_BALL},
                implied="their fit is the two-stage Crystal Ball (§15)")


def _frames_to_files(value, theirs):
    return {}  # resolved from the headers (:func:`resolve`): theirs reads whole files


def _recoil_kev(value, theirs):
    return {"run.e_recoil": None if value is None else float(value) * 1e3}


_ONE_CONDITIONING = ("one pedestal and one moving average serve every per-frame step "
                     "(§2): where integration_config and xray_classification differ, "
                     "integration_config's is used (a warning says so)")
_MAX_FRAMES = ("test mode: ceil(max_frames / frames per file) files of each set, as "
               "theirs reads whole files; resolved from the first file of each set once the "
               "run folder is known (a warning says so); null: every frame")

RULES: dict[str, Rule] = {
    "run_id": _same("run.run_id"),
    "data.raw_data_path": _same("run.run_dir", "relative to their file; a run folder "
                                "given on the command line wins (`ratag-xr run RUN_DIR "
                                "--config THEIR.yaml`); a Windows path that does not exist "
                                "here is reported"),
    "experiment.el_field": _same("run.el_field", "V/cm, given directly: replaces the EL "
                                 "field from the set name's voltages"),
    "experiment.target_isotope": _same("alpha.target_isotope", "the run's recombination r "
                                       "is against this isotope's recoil energy Q·4/A "
                                       "(§14: Ra224 103.37 keV); theirs used 96.8 keV "
                                       "(Th228) for every run"),
    "experiment.recoil_energy": Rule(("run.e_recoil",), "keV there, eV here", _recoil_kev),
    "experiment.pressure": _same("run.pressure", "bar"),
    "experiment.temperature": _same("run.temperature", "K"),
    "experiment.el_gap": _same("run.el_gap", "cm"),
    "experiment.drift_gap": _same("run.drift_gap", "cm"),
    "experiment.width_s2": _same("integrate.width_s2", "µs: the fallback integration "
                                 "window's width (§5)"),
    "experiment.W_value": _same("run.w_value", "eV"),
    "experiment.E_gamma_xray": _same("run.e_xray", "eV"),
    "multi_isotope.enabled": Rule((), "false: their isotope_ranges tag the frames; true: "
                                  "the ranges come from the run's alpha calibration (§13), "
                                  "as their computed ranges do", _switch),
    "multi_isotope.isotope_ranges": Rule(("alpha.isotope_ranges",), "SCA MeV (their "
                                         "comments say keV: the values are §12's SCA scale); "
                                         "only when multi_isotope.enabled is false",
                                         _isotope_ranges),
    "energy_mapping.savgol_window": _same("alpha.savgol_window", "samples"),
    "energy_mapping.nbins": _same("alpha.nbins"),
    "energy_mapping.energy_range": _same("alpha.energy_range", "SCA MeV"),
    "energy_mapping.n_sigma": _same("alpha.n_sigma", "range half-width in peak sigmas "
                                    "(§13)"),
    "energy_mapping.use_quadratic": Rule(("alpha.order",), "true: 2, false: 1 (ratag_xr's "
                                         "default null chooses by the peaks fitted)",
                                         _order),
    "pipeline.preparation.max_frames_s1": _same("prepare.s1_frames", "the first N frames "
                                                "exactly (theirs rounds up to whole "
                                                "files); with max_frames_s2, every later "
                                                "raw byte is read once"),
    "pipeline.preparation.max_frames_s2": _same("prepare.s2_window_frames", "as "
                                                "max_frames_s1"),
    "pipeline.preparation.threshold_s2": _same("prepare.threshold_s2", "mV"),
    "pipeline.preparation.s2_duration_cuts": _same("prepare.s2_duration_cuts", "µs"),
    "pipeline.integration.max_frames": Rule(("ingest.nfiles",), _MAX_FRAMES,
                                            _frames_to_files),
    "pipeline.integration.max_files": _same("ingest.nfiles", "test mode: the first N files "
                                            "of each set"),
    "pipeline.integration.integration_config.n_pedestal": _same("prepare.n_pedestal",
                                                                "samples; " + _ONE_CONDITIONING),
    "pipeline.integration.integration_config.ma_window": _same("prepare.ma_window",
                                                               "samples; " + _ONE_CONDITIONING),
    "pipeline.integration.integration_config.bs_threshold": _same("integrate.bs_threshold",
                                                                  "mV"),
    "pipeline.integration.integration_config.n_sigma_start": _same("integrate.n_sigma_start"),
    "pipeline.integration.integration_config.n_sigma_end": _same("integrate.n_sigma_end"),
    "pipeline.integration.fit_config.bin_cuts": _same("integrate.bin_cuts", "mV·µs"),
    "pipeline.integration.fit_config.nbins": _same("integrate.nbins"),
    "pipeline.integration.fit_config.exclude_index": _same("integrate.exclude_index",
                                                           "their two-stage fit does not use "
                                                           "it; here a one-stage fit does"),
    "pipeline.integration.fit_config.bg_threshold": _fit("integrate.bg_threshold", "mV·µs: "
                                                         "their comment calls it a fraction, "
                                                         "but their code, like ratag_xr's, "
                                                         "counts the areas at or below it "
                                                         "(the fraction is 0.077 in both: "
                                                         "integrate.bg_fraction)"),
    "pipeline.integration.fit_config.bg_cutoff": _fit("integrate.bg_cutoff", "mV·µs"),
    "pipeline.integration.fit_config.n_sigma": _fit("integrate.n_sigma", "background "
                                                    "sigmas"),
    "pipeline.integration.fit_config.upper_limit": _fit("integrate.upper_limit", "mV·µs"),
    "pipeline.xray_classification.max_frames": Rule(("ingest.nfiles",), "as "
                                                    "integration.max_frames (one pass "
                                                    "serves both)", _frames_to_files),
    "pipeline.xray_classification.bs_threshold": _same("xray.bs_threshold", "mV"),
    "pipeline.xray_classification.max_area_s1": _same("xray.max_area_s1", "a sum of samples "
                                                      "in mV (their comment says mV·µs): the "
                                                      "same number"),
    "pipeline.xray_classification.max_area_s2": _same("xray.max_area_s2", "as max_area_s1"),
    "pipeline.xray_classification.min_xray_area": _same("xray.min_xray_area", "mV·µs"),
    "pipeline.xray_classification.min_s2_sep": _same("xray.min_s2_sep", "µs"),
    "pipeline.xray_classification.min_s1_sep": _same("xray.min_s1_sep", "µs"),
    "pipeline.xray_classification.n_pedestal": _same("prepare.n_pedestal", _ONE_CONDITIONING),
    "pipeline.xray_classification.ma_window": _same("prepare.ma_window", _ONE_CONDITIONING),
    "recombination_analysis.gs2_path": Rule(("calibrate.g_s2",), "their X-ray run's JSON "
                                            "{gs2, d_gs2, Wi} is read when the file is: "
                                            "{value: gs2, error: d_gs2} (d_gs2 taken as a "
                                            "95 % half-width, like g_S2_err); a ratag_xr "
                                            "output folder is followed by its lineage"),
}

_STORAGE = "their energy-map files; ratag_xr keeps the alpha channel in its store"
_SPACING = "the headers' sample spacing is used (§2); a value that contradicts them is " \
           "a warning naming both"
IGNORED: dict[str, str] = {
    "description": "free text (the converted config keeps it as a comment)",
    "data.output_base": "ratag_xr writes into --out (default: the run folder), in its own "
                        "layout (§10)",
    "experiment.sampling_rate": _SPACING,
    "energy_mapping.generate": _STORAGE,
    "energy_mapping.files_per_chunk": _STORAGE,
    "energy_mapping.format": _STORAGE,
    "energy_mapping.scale": _STORAGE,
    "energy_mapping.pattern": "alpha files are found by their channel tag (run.channels, "
                              "§11)",
    "pipeline.preparation.threshold_s1": "their S1 search thresholds each frame; §3 finds "
                                         "the S1 peak in frame-chunk means "
                                         "(prepare.s1_min_height, 0.001 mV), where one "
                                         "frame's threshold does not apply",
    "pipeline.integration.integration_config.dt": _SPACING,
    "pipeline.xray_classification.dt": _SPACING,
}
#: Ignored keys checked against the headers: their key -> (units, to µs of spacing)
CHECKED = {
    "experiment.sampling_rate": ("Hz", lambda hz: 1e6 / hz),
    "pipeline.integration.integration_config.dt": ("µs", lambda us: us),
    "pipeline.xray_classification.dt": ("µs", lambda us: us),
}
_KNOWN = (*RULES, *IGNORED)
_PREFIXES = {".".join(k.split(".")[:i]) for k in _KNOWN for i in range(1, k.count(".") + 1)}


# ---------------------------------------------------------------- the conversion


@dataclass
class Mapped:
    """One of their keys and what it became (``values``: ratag key -> value used)."""

    key: str
    value: object
    values: dict
    rule: Rule


@dataclass
class GroupFile:
    """How a config was converted from one of the group's files (``Config.origin``)."""

    path: Path
    layout: str  # "current" or "older" (energy_mapping inside multi_isotope)
    mapped: list[Mapped] = field(default_factory=list)
    ignored: list[tuple[str, object, str]] = field(default_factory=list)  # key, value, why
    #: their values to compare with the headers: key -> (value, units, spacing in µs)
    expected: dict = field(default_factory=dict)
    #: their max_frames still to turn into ingest.nfiles: (their key, frames) or None
    max_frames: tuple[str, int] | None = None
    description: str = ""
    warnings: list[str] = field(default_factory=list)
    #: their raw_data_path, as written
    raw_data_path: str | None = None

    def summary(self) -> str:
        """What was mapped and what was left out, and the warnings, for the command line."""
        lines = [f"{self.path}: one of the group's run configurations ({self.layout} "
                 f"layout): {len(self.mapped)} keys mapped (README: The group's run "
                 f"configurations), {len(self.ignored)} with no meaning here:"]
        lines += [f"  {key} = {_show(value)}: {why}" for key, value, why in self.ignored]
        lines += [f"warning: {text}" for text in self.warnings]
        return "\n".join(lines)


@dataclass
class GroupConversion:
    """A converted file: the ratag_xr config and how it was made."""

    config: Config
    origin: GroupFile


def is_group_layout(values: dict) -> bool:
    """The mapping read from a YAML file is in the group's layout (not ratag_xr's)."""
    return isinstance(values, dict) and any(k in values for k in (*SECTIONS, *TOP_KEYS))


def _show(value) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)


def _flatten(values: dict, path: Path) -> tuple[dict, str]:
    """Their file as {dotted key: value} in the current nesting, and its layout."""
    from ratag_xr.params import sections

    ours = sorted(set(values) & set(sections()))
    if ours:
        raise ConfigError(f"{path}: mixes the group's layout with ratag_xr sections "
                          f"({', '.join(ours)}); write one or the other")
    flat, layout = {}, "current"

    def walk(mapping, prefix: str, shown: str):
        nonlocal layout
        for key, value in mapping.items():
            written = f"{shown}{key}"
            if shown and f"{prefix}{key}" == OLDER_NESTING[0]:
                layout, dotted = "older", OLDER_NESTING[1]
            else:
                dotted = f"{prefix}{key}"
            if dotted in _KNOWN:
                if dotted in flat:
                    raise ConfigError(f"{path}: {dotted} is given twice (also as {written}); "
                                      "keep one")
                flat[dotted] = value
            elif dotted in _PREFIXES:
                if value is None:
                    continue
                if not isinstance(value, dict):
                    raise ConfigError(f"{path}: {written}: expected a mapping of keys, got "
                                      f"{value!r}")
                walk(value, f"{dotted}.", f"{written}.")
            else:
                here = sorted({k[len(prefix):].split(".")[0] for k in _KNOWN
                               if k.startswith(prefix)})
                raise ConfigError(f"{path}: unknown key {written} (the group's run-config "
                                  f"layout); known here: {', '.join(here)}")
    walk(values, "", "")
    return flat, layout


def _resolve_path(text, base: Path) -> str:
    """``text`` relative to ``base`` (a Windows path stays as written)."""
    if not isinstance(text, str):
        raise ConfigError(f"expected a path, got {text!r}")
    if is_windows_path(text) or Path(text).is_absolute():
        return text
    return str((base / text).resolve())


def _gain(value, flat: dict, path: Path, strict: bool, notes: list[str]):
    """``calibrate.g_s2`` from their gs2_path: a JSON {gs2, d_gs2, Wi} becomes {value,
    error}; a ratag_xr output folder stays a folder.  A path that does not exist here is
    an error (``strict``) or a warning leaving the gain to this run's X-ray fit."""
    where = f"{value!r}"
    if value is None:
        return None
    target = Path(_resolve_path(value, path.parent))
    if not target.exists():
        what = " (a Windows path)" if is_windows_path(str(value)) else ""
        text = (f"{where} does not exist here{what}: copy the file (or give a ratag_xr output "
                "folder of the X-ray run) and put its path there")
        if strict:
            raise ConfigError(text)
        notes.append(f"{path}: recombination_analysis.gs2_path = {text}; calibrate.g_s2 "
                     "is left null")
        return None
    if target.is_dir():
        return str(target)
    try:
        data = json.loads(target.read_text())
        gain = {"value": float(data["gs2"]), "error": float(data["d_gs2"])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{where}: expected a JSON file with gs2 and d_gs2 (their X-ray "
                          f"calibration): {exc}") from None
    w_ours = flat.get("experiment.W_value", PARAMS["run.w_value"].default)
    if "Wi" in data and not math.isclose(float(data["Wi"]), float(w_ours), rel_tol=1e-9):
        notes.append(f"{path}: recombination_analysis.gs2_path = {where}: the X-ray run "
                     f"counted electrons with Wi = {data['Wi']} eV, this run's "
                     f"experiment.W_value is {w_ours} eV")
    return gain


def convert(values: dict, path: str | Path, *, strict: bool = True) -> GroupConversion:
    """The ratag_xr config equivalent to one of the group's files (``values``: as read
    from ``path``).  ``strict``: a ``gs2_path`` that does not exist here is an error (a
    run needs it); otherwise a warning (``ratag-xr config import`` still writes the
    rest)."""
    from ratag_xr.config import _declared

    _declared()  # every parameter the rules name
    path = Path(path)
    flat, layout = _flatten(values, path)
    origin = GroupFile(path=path, layout=layout)
    chosen: dict[str, tuple] = {}  # ratag key -> (value, their key)
    for key, value in flat.items():
        if key in IGNORED:
            origin.ignored.append((key, value, IGNORED[key]))
            if key in CHECKED and value is not None:
                units, spacing = CHECKED[key]
                try:
                    origin.expected[key] = (float(value), units, spacing(float(value)))
                except (TypeError, ValueError, ZeroDivisionError):
                    raise ConfigError(f"{path}: {key} = {value!r}: expected a positive "
                                      f"number ({units})") from None
            if key == "description" and value is not None:
                origin.description = str(value)
            continue
        if key == "multi_isotope.isotope_ranges" and flat.get("multi_isotope.enabled") is True:
            origin.ignored.append((key, value, _COMPUTED_RANGES))
            continue
        rule = RULES[key]
        try:
            if key == "data.raw_data_path":
                origin.raw_data_path = value
                given = {"run.run_dir": _resolve_path(value, path.parent)}
            elif key == "recombination_analysis.gs2_path":
                given = {"calibrate.g_s2": _gain(value, flat, path, strict, origin.warnings)}
            elif rule.convert is _frames_to_files:
                given = {}
                if value is not None:
                    frames = PARAMS["ingest.nfiles"].validate(value, f"{path}: {key}")
                    if origin.max_frames is None:
                        origin.max_frames = (key, frames)
                    elif origin.max_frames[1] != frames:
                        origin.warnings.append(
                            f"{path}: {key} = {frames} and {origin.max_frames[0]} = "
                            f"{origin.max_frames[1]}: one pass serves both here, "
                            f"{origin.max_frames[0]}'s is used")
            else:
                given = rule.apply(value, flat)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {key}: {exc}") from None
        for ratag_key, v in given.items():
            if ratag_key in chosen and chosen[ratag_key][0] != v:
                origin.warnings.append(
                    f"{path}: {key} = {_show(v)} and {chosen[ratag_key][1]} = "
                    f"{_show(chosen[ratag_key][0])} both set {ratag_key}, which ratag_xr has "
                    f"once: {chosen[ratag_key][1]}'s is used")
                continue
            chosen.setdefault(ratag_key, (v, key))
        origin.mapped.append(Mapped(key, value, {k: v for k, v in given.items()
                                                 if chosen[k][0] == v}, rule))
    if origin.max_frames is not None and "ingest.nfiles" in chosen:
        origin.warnings.append(f"{path}: {origin.max_frames[0]} is left out: "
                               f"{chosen['ingest.nfiles'][1]} sets ingest.nfiles")
        origin.max_frames = None
    sections: dict[str, dict] = {}
    for ratag_key, (v, their_key) in chosen.items():
        v = PARAMS[ratag_key].validate(v, f"{path}: {their_key}")
        section, name = ratag_key.split(".")
        sections.setdefault(section, {})[name] = v
    config = Config(sections, str(path))
    config.origin = origin
    return GroupConversion(config, origin)


# ---------------------------------------------------------------- what needs the run


def _warn(text: str) -> None:
    print(f"ratag-xr: warning: {text}", file=sys.stderr, flush=True)


def check_run_dir(config: Config) -> None:
    """A config converted from one of the group's files names a run folder that exists
    here; otherwise a :class:`~ratag_xr.errors.RatagError` saying how to give it."""
    origin = getattr(config, "origin", None)
    run_dir = config.run.run_dir
    if not isinstance(origin, GroupFile) or run_dir is None or Path(run_dir).is_dir():
        return
    what = "is a Windows path that does" if is_windows_path(str(origin.raw_data_path)) \
        else "does"
    raise RatagError(f"{origin.path}: data.raw_data_path = {origin.raw_data_path!r} {what} "
                     f"not exist here: give the run folder on the command line, "
                     f"`ratag-xr run RUN_DIR --config {origin.path}`")


def frames_per_file(run_dir, run_cfg) -> dict[str, int]:
    """Frames in the first raw file of each set of ``run_dir`` (from its header)."""
    from ratag_xr.io.wfm import read_wfm
    from ratag_xr.store import discover_run

    layout = discover_run(run_dir, run_cfg)
    return {s.name: int(read_wfm(s.files[0]).n_frames) for s in layout.sets
            if s.kind == "pmt" and s.files}


def resolve(config: Config, run_dir) -> Config:
    """``config`` with their ``max_frames`` turned into ``ingest.nfiles``:
    ceil(max_frames / frames per file) with the fewest frames per file of any set (so
    every set has at least max_frames), as their code reads whole files.  Said as a
    warning; a config without a pending ``max_frames`` is returned as it is."""
    origin = getattr(config, "origin", None)
    if not isinstance(origin, GroupFile) or origin.max_frames is None \
            or config.ingest.nfiles is not None:  # resolved already
        return config
    key, frames = origin.max_frames
    counts = frames_per_file(run_dir, config.run)
    if not counts:
        return config
    fewest = min(counts.values())
    nfiles = -(-frames // fewest)
    text = (f"{origin.path}: {key} = {frames} frames -> ingest.nfiles = {nfiles} (the first "
            f"{nfiles} files of each set, {fewest} frames per file in the set with the "
            "fewest; every frame of those files is analysed)")
    origin.warnings.append(text)
    _warn(text)
    resolved = config.replace({"ingest.nfiles": nfiles})
    resolved.origin = origin
    return resolved


def _spacing_warnings(config, facts) -> list[str]:
    """Their dt / sampling_rate against the headers' sample spacing."""
    origin = getattr(config, "origin", None)
    if not isinstance(origin, GroupFile):
        return []
    out = []
    for key, (value, units, spacing) in origin.expected.items():
        off = {s: dt for s, dt in facts.get("dt_us", {}).items()
               if not math.isclose(dt, spacing, rel_tol=1e-3)}
        if not off:
            continue
        name, dt = next(iter(off.items()))
        header = f"{1e6 / dt:g} Hz" if units == "Hz" else f"{dt:g} µs"
        more = f" and {len(off) - 1} more set(s)" if len(off) > 1 else ""
        out.append(f"{origin.path}: {key} = {value:g} {units} disagrees with the headers: "
                   f"{header} in set {name}{more}; the headers' sample spacing is used")
    return out


declare_data_warning("group config spacing", _spacing_warnings)


# ---------------------------------------------------------------- the converted file


def _yaml_value(value) -> str:
    text = yaml.safe_dump({"k": value}, default_flow_style=True, allow_unicode=True,
                          width=10**6, sort_keys=False).strip()
    return text[len("{k: "):-1]


def converted_yaml(conversion: GroupConversion) -> str:
    """The converted config as ratag_xr YAML: each key with a comment naming the key of
    theirs it comes from; their ignored keys and the warnings listed at the end."""
    origin, config = conversion.origin, conversion.config
    source: dict[str, list[str]] = {}
    implied: dict[str, tuple[list[str], str]] = {}
    for m in origin.mapped:
        for key in m.values:
            if m.rule.keys and key != m.rule.keys[0] and m.rule.implied:
                implied.setdefault(key, ([], m.rule.implied))[0].append(m.key)
                continue
            rule_note = f": {m.rule.note}" if m.rule.note else ""
            if m.value is not None and m.values[key] is None:
                rule_note += " (not found here: see the warnings at the end)"
            source.setdefault(key, []).append(f"{m.key} = {_show(m.value)}{rule_note}")
    for key, (keys, why) in implied.items():
        source.setdefault(key, []).append(f"implied by {', '.join(keys)}: {why}")
    if origin.max_frames is not None:
        source.setdefault("ingest.nfiles", []).append(
            f"{origin.max_frames[0]} = {origin.max_frames[1]}: {_MAX_FRAMES}")
    lines = [f"# ratag_xr run config converted from {origin.path} (the group's run-config "
             f"layout, {origin.layout} nesting) by `ratag-xr config import`."]
    if origin.description:
        lines.append(f"# description: {origin.description}")
    lines.append("# Each key says which of theirs it comes from; keys of theirs with no "
                 "meaning here are at the end.")
    given = config.given()
    for section in given:
        lines.append(f"{section}:")
        for name, value in given[section].items():
            key = f"{section}.{name}"
            notes = "; ".join(source.get(key, [])) or "set by this conversion"
            if key == "run.run_dir" and not Path(str(value)).is_dir():
                notes += " (not found here: give the run folder on the command line)"
            lines.append(f"  {name}: {_yaml_value(value)}  # {notes}")
    if origin.max_frames is not None and "ingest" not in given:
        lines.append(f"# ingest.nfiles: {origin.max_frames[0]} = {origin.max_frames[1]} "
                     "frames needs the frames per file: give ingest.nfiles (files per set)")
    deciding = [m for m in origin.mapped if not m.values]
    if deciding:
        lines.append("# keys of theirs that set nothing themselves here:")
        lines += [f"#   {m.key} = {_show(m.value)}: {m.rule.note or 'the default'}"
                  for m in deciding]
    lines.append("# keys of theirs with no meaning in ratag_xr:")
    lines += [f"#   {key} = {_show(value)}: {why}" for key, value, why in origin.ignored]
    for text in origin.warnings:
        lines.append(f"# warning: {text}")
    return "\n".join(lines) + "\n"


def import_config(source, target, *, run_dir=None) -> GroupConversion:
    """Convert one of the group's files to a ratag_xr YAML at ``target`` (atomic write).
    ``run_dir``: the run folder, when it exists here, to turn ``max_frames`` into
    ``ingest.nfiles`` (default: their raw_data_path)."""
    from ratag_xr.config import read_yaml
    from ratag_xr.io.atomic import atomic_write_text

    source = Path(source)
    values = read_yaml(source)
    if not is_group_layout(values):
        raise ConfigError(f"{source}: not in the group's run-config layout (no "
                          f"{', '.join(SECTIONS)}): it reads as a ratag_xr config already")
    conversion = convert(values, source, strict=False)
    folder = run_dir or conversion.config.run.run_dir
    if folder is not None and Path(folder).is_dir():
        config = resolve(conversion.config, folder)
        if run_dir is not None:
            config = config.replace({"run.run_dir": str(Path(run_dir).resolve())})
        conversion = GroupConversion(config, conversion.origin)
    atomic_write_text(target, converted_yaml(conversion))
    return conversion


# ---------------------------------------------------------------- the README table

TABLE_START = "<!-- group-config-table: generated -->"
TABLE_END = "<!-- /group-config-table -->"


def mapping_table() -> str:
    """The README's table of their keys (current nesting) and what each becomes."""
    rows = ["| their key | ratag_xr | note |", "|---|---|---|"]
    for key, rule in RULES.items():
        keys = ", ".join(f"`{k}`" for k in rule.keys) or "–"
        rows.append(f"| `{key}` | {keys} | {rule.note} |")
    for key, why in IGNORED.items():
        rows.append(f"| `{key}` | ignored | {why} |")
    return "\n".join(rows)


def readme_with_table(text: str) -> str:
    """``text`` (the README) with its mapping table replaced by :func:`mapping_table`."""
    return replace_generated(text, TABLE_START, TABLE_END, mapping_table())


if __name__ == "__main__":  # python -m ratag_xr.group_config README.md
    from ratag_xr import group_config  # the module itself (this file runs as __main__)

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    target.write_text(group_config.readme_with_table(target.read_text()))
