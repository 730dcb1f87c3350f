"""Declared parameters: every run-config key is one :class:`Param`, declared once.

A parameter is declared where it is used: a per-frame feature declares the parameters its
kernel takes (:mod:`ratag_xr.features`), a stage the ones its compute reads
(:mod:`ratag_xr.stages`), and :mod:`ratag_xr.config` the run, ingest and cluster keys.
Declaring one registers it in :data:`PARAMS`; from there come the run config's sections and
their validation, the README's config table (:func:`config_table`), and the lineage of
every stage that reads it.

A parameter knows its key (``section.name``), its type, its one default, its units, a
one-line description and the checks its values must pass.  Checks return ``None`` or a
short text saying what is allowed (the error names the key and the file around it).
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ratag_xr.errors import ConfigError, RatagError

#: Sections in the order the README and error messages list them; sections declared by
#: added features come after these, in declaration order.
SECTION_ORDER = ("run", "ingest", "prepare", "xray", "integrate", "calibrate", "alpha",
                 "cluster")

Check = Callable[[Any], "str | None"]


# ---------------------------------------------------------------- checks


def at_least(low: float) -> Check:
    def check(value):
        return None if value is None or value >= low else f"must be >= {low:g}"
    check.__doc__ = f">= {low:g}"
    return check


def greater_than(low: float) -> Check:
    def check(value):
        return None if value is None or value > low else f"must be > {low:g}"
    check.__doc__ = f"> {low:g}"
    return check


def at_most(high: float) -> Check:
    def check(value):
        return None if value is None or value <= high else f"must be <= {high:g}"
    check.__doc__ = f"<= {high:g}"
    return check


def odd(value):
    """odd"""
    return None if value is None or value % 2 == 1 else "must be odd (a centred window)"


def one_of(*choices) -> Check:
    def check(value):
        return None if value is None or value in choices else \
            f"must be one of {', '.join(map(str, choices))}"
    check.__doc__ = "one of: " + ", ".join(map(str, choices))
    return check


def increasing(value):
    """[low, high], low < high"""
    if value is None:
        return None
    if len(value) != 2 or not value[0] < value[1]:
        return "must be [low, high] with low < high"
    return None


def choice_code(*choices) -> Callable[[Any], float]:
    """``to_kernel`` of a choice: its position in ``choices`` (0.0, 1.0, ...)."""
    def code(value):
        return float(choices.index(value))
    code.__doc__ = "code of " + ", ".join(map(str, choices))
    return code


def none_is_inf(value) -> float:
    """``to_kernel`` of an optional limit: null (no limit) is infinity."""
    return math.inf if value is None else float(value)


def nonneg(value):
    """>= 0"""
    return at_least(0)(value)


def positive(value):
    """> 0"""
    return greater_than(0)(value)


# ---------------------------------------------------------------- the declaration


@dataclass(frozen=True)
class Param:
    """One run-config key.

    ``key`` is ``"section.name"``; ``type`` a Python type or annotation (``float``,
    ``int``, ``bool``, ``str``, ``tuple[float, ...]``, ``float | None``, ``dict``);
    ``default`` the one default there is; ``units`` and ``doc`` describe it; ``checks``
    are extra conditions (numbers are always finite).  ``arg`` is the name under which a
    kernel or a compute gets the value (default: the key's last part).  ``lineage=False``
    for keys that cannot change a result (where the raw files are, the cluster).
    ``to_kernel`` turns a value into the number a kernel takes (kernels take float64
    scalars: a choice becomes its code, "no limit" (null) infinity); the config, the
    lineage and the exports keep the value itself.
    """

    key: str
    default: Any
    type: Any = float
    units: str = "1"
    doc: str = ""
    checks: tuple[Check, ...] = ()
    arg: str | None = None
    lineage: bool = True
    to_kernel: Callable[[Any], float] | None = None

    def __post_init__(self):
        if self.key.count(".") != 1:
            raise RatagError(f"parameter key {self.key!r} must be 'section.name'")
        object.__setattr__(self, "checks", tuple(self.checks))
        if self.arg is None:
            object.__setattr__(self, "arg", self.name)
        if self.default is not None or not _optional(self.type):
            self.validate(self.default, "the declared default")

    @property
    def section(self) -> str:
        return self.key.split(".")[0]

    @property
    def name(self) -> str:
        return self.key.split(".")[1]

    def validate(self, value, where: str = ""):
        """``value`` coerced to the declared type and checked; ConfigError otherwise."""
        place = f"{where}: " if where else ""
        value = coerce(value, self.type, f"{place}{self.key}")
        for check in self.checks:
            problem = check(value)
            if problem:
                raise ConfigError(f"{place}{self.key} = {_show(value)} {problem}")
        return value

    def kernel_value(self, value) -> Any:
        """``value`` as a kernel input (see ``to_kernel``)."""
        return value if self.to_kernel is None else self.to_kernel(value)

    def allowed(self) -> str:
        """What the checks allow, in words (for the docs)."""
        return ", ".join(c.__doc__ for c in self.checks if c.__doc__)


def _show(value) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _optional(annotation) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and \
        type(None) in typing.get_args(annotation)


def coerce(value, annotation, where: str):
    """``value`` as ``annotation`` (int -> float allowed, lists -> tuples), or ConfigError."""
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
                return coerce(value, option, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(annotation)
        item_type = args[0] if args else Any
        return tuple(coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if annotation is Any:
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
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


# ---------------------------------------------------------------- the registry


PARAMS: dict[str, Param] = {}


_OWNER: dict[str, str] = {}  # key -> who declared it (for the error on a clash)
#: Checks across keys (``fn(config) -> problem or None``), run when a config is built.
CHECKS: dict[str, Callable] = {}


def declare(*params: Param, owner: str = "", replace: bool = False) -> tuple[Param, ...]:
    """Register ``params`` (the same object may be declared again by another user: a
    shared parameter such as ``prepare.n_pedestal`` has one declaration, used by several
    features).  A different declaration under a taken key is an error."""
    for p in params:
        known = PARAMS.get(p.key)
        if known is not None and known != p and not replace:
            raise RatagError(f"parameter {p.key!r} declared twice, differently (first by "
                             f"{_OWNER.get(p.key, '?')}, now by {owner or '?'}); "
                             "declare it once and import it")
        PARAMS[p.key] = p
        _OWNER.setdefault(p.key, owner)
    return params


def undeclare(key: str) -> None:
    PARAMS.pop(key, None)
    _OWNER.pop(key, None)


def declare_check(name: str, check: Callable) -> Callable:
    """Register a check across keys: ``check(config)`` returns None or what is wrong
    (the message should name the keys)."""
    CHECKS[name] = check
    return check


#: Checks against the run's data (``fn(config, facts) -> problem or None``), run once the
#: run is discovered and ingested, before any pass.  ``facts``: ``sets`` (names),
#: ``n_samples`` (set -> samples per frame of its PMT record), ``alpha_samples`` (set or
#: alpha monitor set -> samples per frame of its alpha record, where it has one), ``dt_us``
#: (set -> sample spacing of its PMT record, µs) and ``out`` (the output root).
DATA_CHECKS: dict[str, Callable] = {}


def declare_data_check(name: str, check: Callable) -> Callable:
    """Register a check of config values against the run (see :data:`DATA_CHECKS`)."""
    DATA_CHECKS[name] = check
    return check


#: Checks against the run's data that warn instead of refusing (``fn(config, facts) -> a
#: text, a list of texts or None``): a value that has no effect on the analysis but says
#: something about the data that the data contradict (the sampling rate of an imported
#: run config against the headers).  ``facts`` as for :data:`DATA_CHECKS`.
DATA_WARNINGS: dict[str, Callable] = {}


def declare_data_warning(name: str, check: Callable) -> Callable:
    """Register a warning check against the run (see :data:`DATA_WARNINGS`)."""
    DATA_WARNINGS[name] = check
    return check


def warnings_against_data(config, facts: dict) -> list[str]:
    """Every data warning's texts (none: the config and the data agree)."""
    out = []
    for check in DATA_WARNINGS.values():
        found = check(config, facts)
        out += [found] if isinstance(found, str) else list(found or ())
    return out


def check_against_data(config, facts: dict) -> None:
    """Run every data check; ConfigError naming the file."""
    for check in DATA_CHECKS.values():
        problem = check(config, facts)
        if problem:
            raise ConfigError(f"{config.source}: {problem}")


def check_config(config) -> None:
    """Run every cross-key check on ``config``; ConfigError naming the file."""
    for check in CHECKS.values():
        try:
            problem = check(config)
        except ConfigError as err:  # a check that validates values through a Param
            problem = str(err)
        if problem:
            raise ConfigError(f"{config.source}: {problem}")


def sections() -> list[str]:
    """Every declared section, known ones first."""
    present = {p.section for p in PARAMS.values()}
    extra = [s for s in dict.fromkeys(p.section for p in PARAMS.values())
             if s not in SECTION_ORDER]
    return [s for s in SECTION_ORDER if s in present] + extra


def section_params(section: str) -> list[Param]:
    return [p for p in PARAMS.values() if p.section == section]


def _default_text(p: Param) -> str:
    value = p.default
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def config_table() -> str:
    """The README's run-config table (markdown), from the declarations."""
    lines = ["| key | default | units | meaning |", "|---|---|---|---|"]
    for section in sections():
        for p in section_params(section):
            doc = p.doc
            allowed = p.allowed()
            if allowed:
                doc = f"{doc} ({allowed})" if doc else allowed
            lines.append(f"| `{p.key}` | {_default_text(p)} | {p.units or '–'} | {doc} |")
    return "\n".join(lines)


TABLE_START, TABLE_END = "<!-- config-table: generated -->", "<!-- /config-table -->"


def replace_generated(text: str, start: str, end: str, body: str) -> str:
    """``text`` with what lies between the markers ``start`` and ``end`` replaced by
    ``body`` (a generated README block)."""
    if start not in text or end not in text:
        raise RatagError(f"the README has no {start} ... {end} block")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def readme_with_table(text: str) -> str:
    """``text`` (the README) with its config table replaced by :func:`config_table`."""
    return replace_generated(text, TABLE_START, TABLE_END, config_table())


if __name__ == "__main__":  # python -m ratag_xr.params README.md: regenerate the table
    import sys
    from pathlib import Path

    import ratag_xr.config  # declares every built-in parameter
    from ratag_xr import params  # the registry (this file runs as __main__, a copy)

    ratag_xr.config.Config()
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    target.write_text(params.readme_with_table(target.read_text()))
