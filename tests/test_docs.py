"""The README documents what the code has: every config key, every CLI command."""

from __future__ import annotations

import dataclasses

from ratag_xr.cli import build_parser
from ratag_xr.config import Config
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_every_config_key_is_documented():
    for section in dataclasses.fields(Config):
        for key in dataclasses.fields(section.type if isinstance(section.type, type)
                                      else section.default_factory().__class__):
            assert f"`{section.name}.{key.name}`" in README, f"{section.name}.{key.name}"


def test_every_command_is_documented():
    block = README.split("## Command line", 1)[1].split("```")[1]
    documented = {word for line in block.splitlines() if line.startswith("ratag-xr ")
                  for word in line.split()[1].split("|")}
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == documented


def test_first_commands_are_demo_then_test():
    block = README.split("```bash", 1)[1].split("```", 1)[0]
    lines = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert lines[:2] == ["make demo", "make test"]
