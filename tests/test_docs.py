"""The README documents what the code has: every config key, every CLI command."""

from __future__ import annotations

from ratag_xr.cli import build_parser
from ratag_xr.config import Config
from ratag_xr.params import PARAMS, TABLE_END, TABLE_START, readme_with_table
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_the_config_table_is_the_declared_parameters():
    """The README's table is generated from the declarations (`python -m ratag_xr.params
    README.md`); a key declared or changed without regenerating it fails here."""
    Config()  # every built-in declaration loaded
    assert readme_with_table(README) == README
    table = README.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert {row.split("`")[1] for row in rows} == set(PARAMS)
    assert "| `prepare.threshold_s2` | 0.4 | mV |" in table


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


def test_the_cli_knows_every_registered_stage_in_run_order():
    from ratag_xr.cli import STAGE_HELP
    from ratag_xr.stages import STAGES

    assert list(STAGE_HELP) == list(STAGES)
    assert all(f"| `{name}` |" in README for name in STAGES)  # the README's stage table


def test_the_group_config_table_is_the_mapping():
    """The README's table of the group's run-config keys is generated from the one mapping
    table (`python -m ratag_xr.group_config README.md`)."""
    from ratag_xr import group_config

    assert group_config.readme_with_table(README) == README
    table = README.split(group_config.TABLE_START, 1)[1].split(group_config.TABLE_END, 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert {row.split("`")[1] for row in rows} == set(group_config.RULES) | set(
        group_config.IGNORED)
