"""Discovery of a run's sets and files (ALGORITHMS.md "Raw data layout", §2, §11): natural
order, channel tags of both DAQs, twins, roles, monitor folders, skipped folders, run.sets /
run.exclude.  Discovery reads no file contents, so empty files stand in for raw files."""

from __future__ import annotations

import math

import pytest

from ratag_xr.config import config_from_dict, run_section
from ratag_xr.errors import ConfigError, RunLayoutError
from ratag_xr.store import discover_run, natural_key, natural_sorted, parse_set_name
from ratag_xr.store.discover import channel_tag, twin_name

OLD = "RUN8_20250101_Gate200_Anode1700_P2_{n}Wfm_Ch{c}.wfm"
NEW = "RUN9_20260101_Gate0200_Anode2100_Batch{n:03d}__CH{c}.wfm"


def touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def test_natural_order_compares_digit_runs_as_numbers():
    names = ["x_P2_10Wfm_Ch1.wfm", "x_P2_2Wfm_Ch1.wfm", "x_P2_1Wfm_Ch1.wfm", "x_P2_11Wfm_Ch1.wfm"]
    assert natural_sorted(names) == ["x_P2_1Wfm_Ch1.wfm", "x_P2_2Wfm_Ch1.wfm",
                                     "x_P2_10Wfm_Ch1.wfm", "x_P2_11Wfm_Ch1.wfm"]
    assert natural_key("A_2.wfm") < natural_key("a_10.wfm")  # text case-insensitive
    assert natural_sorted(["f01", "f1", "f001"]) == ["f001", "f01", "f1"]  # ties: total order
    assert natural_sorted(["R_0010", "R_0002"]) == ["R_0002", "R_0010"]  # padded: as before


@pytest.mark.parametrize(("name", "key", "channel"), [
    ("RUN8_P2_29Wfm_Ch1.wfm", "RUN8_P2_29Wfm", 1),
    ("RUN8_P2_29Wfm_ch4.WFM", "RUN8_P2_29Wfm", 4),
    ("base_Batch001__CH3.wfm", "base_Batch001", 3),
    ("ch2.wfm", "", 2),
    ("R_0001.wfm", "R_0001", None),
    ("Batch1.wfm", "Batch1", None),  # "ch1" inside a word is no tag
    ("x-Ch1.wfm", "x-Ch1", None),
])
def test_channel_tags_of_both_daqs(name, key, channel):
    assert channel_tag(name) == (key, channel)


def test_twin_name_keeps_the_tag_style():
    assert twin_name("a_P2_3Wfm_Ch1.wfm", 4) == "a_P2_3Wfm_Ch4.wfm"
    assert twin_name("b_Batch001__CH3.wfm", 4) == "b_Batch001__CH4.wfm"


def test_zero_padded_voltages():
    assert parse_set_name("FieldScan_Gate0200_Anode2100") == {
        "gate": 200.0, "anode": 2100.0, "sampling_gsps": None}


def test_old_daq_twins_in_natural_order(tmp_path):
    folder = tmp_path / "FieldScan_Gate200_Anode1700"
    touch(folder, *(OLD.format(n=n, c=c) for n in range(1, 12) for c in (1, 4)))
    (s,) = discover_run(tmp_path).sets
    assert [p.name for p in s.files] == [OLD.format(n=n, c=1) for n in range(1, 12)]
    assert [t.key for t in s.twins] == [f"RUN8_20250101_Gate200_Anode1700_P2_{n}Wfm"
                                        for n in range(1, 12)]
    assert all(t.alpha.name == twin_name(t.pmt.name, 4) for t in s.twins)
    assert s.kind == "pmt" and s.expects_alpha
    first = discover_run(tmp_path, nfiles=10).sets[0]
    assert [p.name for p in first.files][-1] == OLD.format(n=10, c=1)


def test_new_daq_roles_from_run_channels(tmp_path):
    folder = tmp_path / "FieldScan_Gate0200_Anode2100"
    touch(folder, *(NEW.format(n=n, c=c) for n in range(1, 4) for c in (3, 4)))
    (s,) = discover_run(tmp_path, run_section(channels={"pmt": 3, "alpha": 4})).sets
    assert (s.gate, s.anode) == (200.0, 2100.0)
    assert [t.key for t in s.twins] == [f"RUN9_20260101_Gate0200_Anode2100_Batch{n:03d}"
                                        for n in range(1, 4)]
    assert [t.alpha.name for t in s.twins] == [NEW.format(n=n, c=4) for n in range(1, 4)]
    # the default roles (pmt 1) on this run: channel 3 is ignored, said once
    layout = discover_run(tmp_path)
    assert not layout.sets[0].files
    assert [t.pmt for t in layout.sets[0].twins] == [None] * 3  # alpha files without PMT
    (notice,) = [n for n in layout.notices if "channel 3" in n]
    assert "run.channels" in notice and "pmt = 1" in notice


def test_untagged_set_is_pmt_only_and_extra_channels_are_said_once(tmp_path):
    touch(tmp_path / "FieldScan_Gate100_Anode1600", "R_0001.wfm", "R_0002.wfm")
    for gate in (200, 300):
        touch(tmp_path / f"FieldScan_Gate{gate}_Anode{gate + 1500}",
              *(f"R_{n}Wfm_Ch{c}.wfm" for n in (1, 2) for c in (1, 2, 4)), "stray.wfm")
    layout = discover_run(tmp_path)
    plain = layout.sets[0]
    assert [p.name for p in plain.files] == ["R_0001.wfm", "R_0002.wfm"]
    assert not plain.expects_alpha and all(t.alpha is None for t in plain.twins)
    channel_notices = [n for n in layout.notices if "channel 2" in n]
    assert len(channel_notices) == 1 and "4 file(s)" in channel_notices[0]
    (untagged,) = [n for n in layout.notices if "without a channel tag" in n]
    assert "FieldScan_Gate200_Anode1700/stray.wfm" in untagged
    assert all(len(s.files) == 2 for s in layout.sets)


def test_legacy_single_channel_filter(tmp_path):
    touch(tmp_path / "FieldScan_Gate100_Anode1600", "a_1_ch1.wfm", "a_1_ch4.wfm", "a_2_CH1.wfm")
    (s,) = discover_run(tmp_path, run_section(channel=1)).sets
    assert [p.name for p in s.files] == ["a_1_ch1.wfm", "a_2_CH1.wfm"] and not s.expects_alpha


def test_monitor_folders_are_alpha_only_sets(tmp_path):
    touch(tmp_path / "FieldScan_Gate200_Anode1700", *(OLD.format(n=1, c=c) for c in (1, 4)))
    touch(tmp_path / "Ch4_noSCA", "m_1_Ch4.wfm", "m_2_Ch4.wfm", "m_10_Ch4.wfm", "m_1_Ch1.wfm")
    touch(tmp_path / "Ch4_SCA_5p2", "s_1.wfm")
    touch(tmp_path / "Ch3_noSCA", "t_1.wfm")
    layout = discover_run(tmp_path)
    kinds = {s.name: s.kind for s in layout.sets}
    assert kinds == {"FieldScan_Gate200_Anode1700": "pmt", "Ch4_noSCA": "alpha",
                     "Ch4_SCA_5p2": "alpha"}
    monitor = next(s for s in layout.sets if s.name == "Ch4_noSCA")
    assert [p.name for p in monitor.files] == ["m_1_Ch4.wfm", "m_2_Ch4.wfm", "m_10_Ch4.wfm"]
    assert math.isnan(monitor.gate) and all(t.pmt is None for t in monitor.twins)
    assert any("Ch3_noSCA" in n and "alpha channel" in n for n in layout.notices)
    assert any("channel 1" in n and "Ch4_noSCA/m_1_Ch1.wfm" in n for n in layout.notices)
    assert "Ch4_noSCA" not in layout.skipped


def test_folders_without_voltages_are_skipped_with_one_notice(tmp_path):
    touch(tmp_path / "FieldScan_Gate200_Anode1700", "R_0001.wfm")
    touch(tmp_path / "calibration_run", "c.wfm")
    touch(tmp_path / "Gate700_only", "g.wfm")
    (tmp_path / "plots").mkdir()  # no .wfm files: not a candidate at all
    layout = discover_run(tmp_path)
    assert layout.set_names() == ["FieldScan_Gate200_Anode1700"]
    assert layout.skipped == ("Gate700_only", "calibration_run")
    (notice,) = [n for n in layout.notices if "skipping" in n]
    assert "Gate700_only" in notice and "calibration_run" in notice and "run.sets" in notice


def test_run_sets_and_exclude_choose_folders(tmp_path):
    for gate in (100, 200, 300):
        touch(tmp_path / f"FieldScan_Gate{gate}_Anode{gate + 1500}", "R_0001.wfm")
    touch(tmp_path / "calibration_run", "c.wfm")
    params = run_section(sets=("FieldScan_*",), exclude=("*Gate300*",))
    layout = discover_run(tmp_path, params)
    assert layout.set_names() == ["FieldScan_Gate100_Anode1600", "FieldScan_Gate200_Anode1700"]
    assert not layout.skipped and not layout.notices  # calibration_run was not chosen
    with pytest.raises(ConfigError, match=r"run.sets.*'Gate999\*'"):
        discover_run(tmp_path, run_section(sets=("FieldScan_*", "Gate999*")))
    with pytest.raises(RunLayoutError, match="no set folders"):
        discover_run(tmp_path, run_section(exclude=("*",)))


@pytest.mark.parametrize(("channels", "message"), [
    ({"pmt": 3, "alpha": 3}, "each role needs its own channel"),
    ({"alpha": 4}, "the pmt role needs a channel"),
    ({"pmt": 1, "gamma": 2}, "unknown role(s) ['gamma']"),
    ({"pmt": "one"}, "run.channels.pmt: expected a channel number"),
    ([1, 4], "expected a mapping"),
])
def test_run_channels_are_validated(channels, message):
    with pytest.raises(ConfigError, match="run.yaml") as err:
        config_from_dict({"run": {"channels": channels}}, "run.yaml")
    assert message in str(err.value)


def test_run_channels_sets_exclude_from_yaml():
    c = config_from_dict({"run": {"channels": {"pmt": 3, "alpha": 4}, "sets": ["Field*"],
                                  "exclude": ["*Gate0300*"]}})
    assert (c.run.pmt_channel, c.run.alpha_channel) == (3, 4)
    assert c.run.sets == ("Field*",) and c.run.exclude == ("*Gate0300*",)
    assert config_from_dict({"run": {"channels": {"pmt": 2}}}).run.alpha_channel is None
