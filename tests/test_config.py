"""Run configuration: defaults, strict keys and types, YAML loading."""

from __future__ import annotations

import pytest

from ratag_xr.config import Config, config_from_dict, load_config, with_overrides
from ratag_xr.errors import ConfigError
from ratag_xr.stages.integrate import histogram_spec


def test_defaults_follow_algorithms_md():
    c = Config()
    assert (c.run.pressure, c.run.temperature, c.run.drift_gap, c.run.el_gap) == (
        2.0, 293.0, 1.4, 0.8)
    assert (c.run.w_value, c.run.e_xray, c.run.polarity) == (22.0, 12300.0, "negative")
    assert (c.prepare.n_pedestal, c.prepare.ma_window, c.prepare.threshold_s2) == (2000, 9, 0.4)
    assert c.prepare.s2_duration_cuts == (5.0, 25.0)
    assert (c.integrate.bin_cuts, c.integrate.nbins, c.integrate.exclude_index) == (
        (0.0, 4.0), 100, 1)
    assert (c.xray.bs_threshold, c.xray.max_area_s2, c.xray.ts2_tol) == (0.8, 1e5, -2.7)
    assert c.calibrate.xray_bin_cuts == (0.6, 20.0)


@pytest.mark.parametrize(("values", "message"), [
    ({"prepare": {"ma_windw": 9}}, "prepare: unknown key(s) ma_windw"),
    ({"prepare": {"ma_window": "nine"}}, "prepare.ma_window: expected a whole number"),
    ({"run": {"pressure": "high"}}, "run.pressure: expected a number"),
    ({"run": {"pressure": -1}}, "run.pressure = -1.0 must be > 0"),
    ({"integrate": {"bin_cuts": [4, 0]}}, "integrate.bin_cuts"),
    ({"integrate": {"per_set": {"A": {"bins": 3}}}}, "integrate.per_set.A"),
    ({"prepare": {"s2_method": "mean"}}, "s2_method"),
    ({"nonsense": {}}, "unknown section(s) nonsense"),
])
def test_bad_values_name_the_key_and_the_file(values, message):
    with pytest.raises(ConfigError, match="run.yaml") as err:
        config_from_dict(values, "run.yaml")
    assert message in str(err.value)


def test_yaml_resolves_run_dir_and_per_set_overrides(tmp_path):
    (tmp_path / "RUN8").mkdir()
    path = tmp_path / "cfg" / "run.yaml"
    path.parent.mkdir()
    path.write_text("run:\n  run_dir: ../RUN8\n  pressure: 2\n"
                    "integrate:\n  nbins: 50\n  per_set:\n    S1: {bin_cuts: [0, 2]}\n")
    c = load_config(path)
    assert c.run.run_dir == str((tmp_path / "RUN8").resolve())
    assert c.run.pressure == 2.0 and isinstance(c.run.pressure, float)
    assert histogram_spec(c.integrate, "S1") == {"bin_cuts": (0.0, 2.0), "nbins": 50,
                                                 "auto_range": False}
    assert histogram_spec(c.integrate, "S2")["bin_cuts"] == (0.0, 4.0)
    assert with_overrides(c, "ingest", nfiles=2).ingest.nfiles == 2


def test_unreadable_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
