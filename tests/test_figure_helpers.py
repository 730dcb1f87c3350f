"""Figures drawn in helper processes (ratag_xr.plots.helpers): the same files as drawn in
the command, each asked for as soon as its stages are stored, errors raised in the command
with their type, and a helper that dies does not take the figures with it."""

from __future__ import annotations

import errno
import signal
import time

import psutil
import pytest

from ratag_xr.errors import RatagError, StoreError
from ratag_xr.plots.figures import FIGURES, job_fields
from ratag_xr.plots.helpers import FigureHelpers
from ratag_xr.simulate import SimConfig
from ratag_xr.stages.plots import ANALYSIS, FigureRound, figure_job, render
from tests.conftest import analysed_run

RUN = SimConfig(sets=((100, 1600), (200, 1700)), files_per_set=2, frames_per_file=30,
                sampling_rate_gs=1.0, record_start_us=-4.0, record_end_us=25.0,
                xray_fraction=0.3, seed=11)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, client):
    return analysed_run(tmp_path_factory.mktemp("helpers"), client, RUN, ANALYSIS)


def _job(run, folder):
    job = figure_job(run, run.config)
    return type(job)(**{**job.__dict__, "plots_dir": folder})


def test_helpers_draw_the_files_drawn_here(analysed, tmp_path):
    here = render(_job(analysed, tmp_path / "here"), analysed.results, ANALYSIS)
    with FigureHelpers(2) as helpers:
        there = FigureRound(_job(analysed, tmp_path / "there"), analysed.results,
                            helpers).paths(ANALYSIS)
    assert [p.name for p in there] == [p.name for p in here]
    assert len(here) >= 2 * len(RUN.sets) + 5
    for a, b in zip(here, there, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert sorted(p.name for p in (tmp_path / "there").iterdir()) == sorted(
        p.name for p in there)  # no temporary file left


def test_a_figure_is_asked_for_once_its_stages_are_stored(analysed, tmp_path):
    with FigureHelpers(1) as helpers:
        figures = FigureRound(_job(analysed, tmp_path), analysed.results, helpers)
        # the waveform figure reads the store, which the frames stage completes when it
        # reads the raw files once: it waits for that stage, not only for prepare's results
        figures.stages_done(["prepare"])
        assert figures._asked == {}
        figures.stages_done(["prepare", "frames"])
        early = dict(figures._asked)
        assert {name for name, _, _ in early} == {
            f.name for f in FIGURES if f.waits_for <= {"prepare", "frames"}} == {
            "waveform_validation"}
        assert len(early) == len(RUN.sets)
        for future in early.values():  # drawn before any later stage is asked about
            assert future.result(timeout=120)[0].is_file()
        figures.stages_done(["prepare", "frames", "integrate"])
        ready = [f for f in FIGURES if f.waits_for <= {"prepare", "frames", "integrate"}]
        assert len(figures._asked) == sum(len(RUN.sets) if f.per == "set" else 1
                                          for f in ready) > len(early)
        paths = figures.paths(ANALYSIS)
        assert all(figures._asked[k] is v for k, v in early.items())  # not asked twice
    assert len(paths) == len(set(paths)) >= 2 * len(RUN.sets) + 5


def _request(run, folder, figure, set_name=None, results=None):
    return {"job": job_fields(_job(run, folder)), "figure": figure, "set": set_name,
            "results": str(results or run.results)}


def test_an_error_in_a_helper_is_raised_here_with_its_type(analysed, tmp_path):
    name = str(analysed.config.run.run_id or analysed.run_dir.name)
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    with FigureHelpers(1) as helpers:
        with pytest.raises(OSError) as err:
            helpers.submit(_request(analysed, blocker, "s2_vs_drift")).result(timeout=120)
        assert err.value.errno in (errno.ENOTDIR, errno.EEXIST)
        job = _request(analysed, tmp_path, "waveform_validation", "FieldScan_Gate100_Anode1600")
        job["job"]["store"] = str(tmp_path / "no-store.zarr")
        with pytest.raises(StoreError, match="figure waveform_validation"):
            helpers.submit(job).result(timeout=120)
        # the helper goes on drawing after an error
        assert helpers.submit(_request(analysed, tmp_path, "s2_vs_drift")).result(
            timeout=120)[0].name == f"{name}_s2_vs_drift.png"


def _helper_processes(helpers):
    procs = []
    for proc in helpers._procs:
        master = psutil.Process(proc.pid)
        procs += [master, *master.children()]
    return procs


def _kill(proc) -> None:
    """SIGKILL, then wait until it is gone (a forked helper stays a zombie until the helper
    it was forked from reaps it)."""
    proc.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
    raise AssertionError(f"helper {proc.pid} still running after SIGKILL")


def test_a_helper_that_dies_leaves_the_figures_to_the_others(analysed, tmp_path):
    with FigureHelpers(2) as helpers:
        # the first figure drawn: the helper has imported, and forked the other
        helpers.submit(_request(analysed, tmp_path / "first", "s2_vs_drift")).result(120)
        procs = _helper_processes(helpers)
        assert len(procs) == 2  # one started, one forked from it once it had imported
        _kill(procs[1])
        futures = [helpers.submit(_request(analysed, tmp_path / str(k), "s2_vs_drift"))
                   for k in range(3)]
        assert all(f.result(timeout=120)[0].is_file() for f in futures)
        _kill(procs[0])
        with pytest.raises(RatagError, match="figure helper"):
            helpers.submit(_request(analysed, tmp_path, "s2_vs_drift")).result(timeout=120)
