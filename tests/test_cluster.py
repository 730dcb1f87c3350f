"""Cluster selection (ratag_xr.cluster) and a worker killed in the middle of an analysis."""

from __future__ import annotations

import os
import signal
import threading
import time

import dask
import pytest
import xarray as xr
import yaml
from dask.utils import parse_bytes

from ratag_xr.cluster import (
    ClusterSpec,
    close_client,
    jobqueue_options,
    make_client,
    parse_spec,
)
from ratag_xr.errors import ConfigError
from ratag_xr.pipeline import load_results, run_pipeline
from ratag_xr.simulate import SimConfig, simulate_run
from tests.conftest import REPO

SHIPPED = REPO / "deploy" / "jobqueue.yaml"

#: 3 sets x 2 files x 40 frames of 29 000 int8 samples (7 MB): analysed in seconds.  Half
#: the frames carry an X-ray so that the X-ray fit (>= 20 accepted) and calibration succeed.
SMALL_RUN = SimConfig(sets=((100, 1600), (200, 1700), (300, 1800)), files_per_set=2,
                      frames_per_file=40, sampling_rate_gs=1.0, record_start_us=-4.0,
                      record_end_us=25.0, xray_fraction=0.5, seed=11)
ANALYSIS = ("prepare", "integrate", "classify", "calibrate")


def assert_same_results(out_a, out_b) -> None:
    """Every stored dataset of two analyses of the same run is identical, values and
    attributes, and so is every stage's lineage (which records no paths)."""
    a, b = load_results(out_a), load_results(out_b)
    for part in ("sets", "frames", "run"):
        xr.testing.assert_identical(getattr(a, part), getattr(b, part))
    assert a.lineage == b.lineage
    # The comparison means something: fits converged and frames have areas.
    assert bool(a.sets.s2_fit_success.all())
    assert bool(a.run.xray_fit_success)
    assert int(a.frames.s2_area.notnull().sum()) > 200


# -- spec parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "expected"), [
    (None, ClusterSpec("local")),
    ("local", ClusterSpec("local")),
    (" LOCAL ", ClusterSpec("local")),
    ("slurm", ClusterSpec("slurm")),
    ("PBS", ClusterSpec("pbs")),
    ("tcp://10.1.2.3:8786", ClusterSpec("address", "tcp://10.1.2.3:8786")),
    ("tls://scheduler.example.org:8786", ClusterSpec("address",
                                                     "tls://scheduler.example.org:8786")),
])
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["sge", "", "tcp://host", "tcp://:8786", "host:8786",
                                  "tcp://host:port", 8786])
def test_bad_spec_is_a_config_error(spec):
    with pytest.raises(ConfigError, match="cluster spec"):
        parse_spec(spec)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"workers": 0}, "cluster.workers"),
    ({"threads": -1}, "cluster.threads"),
    ({"jobs": 1.5}, "cluster.jobs"),
    ({"memory": "lots"}, "cluster.memory 'lots'"),
])
def test_bad_sizes_are_refused_before_starting_anything(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_client("local", **kwargs)


# -- local and address clients ---------------------------------------------------------------


def test_local_client_has_the_asked_workers():
    c = make_client("local", workers=2, threads=1, memory="1GiB", quiet=True)
    try:
        workers = c.scheduler_info()["workers"].values()  # lists up to 5
        assert len(workers) == 2
        assert [w["nthreads"] for w in workers] == [1, 1]
        assert [w["memory_limit"] for w in workers] == [2**30, 2**30]
        assert c.dashboard_link.startswith("http")
        assert len(set(c.run(os.getpid).values())) == 2  # two processes
    finally:
        close_client(c)
    assert c.status == "closed"


def test_address_client_joins_a_running_scheduler(client, capsys):
    c = make_client(client.scheduler.address, workers=2)
    try:
        assert c.scheduler.address == client.scheduler.address
        assert c.submit(sum, [1, 2, 3]).result() == 6
    finally:
        close_client(c)  # leaves the shared cluster alone
    assert client.submit(sum, [4, 5]).result() == 9
    assert "dashboard" in capsys.readouterr().err


def test_waiting_for_absent_workers_times_out_clearly():
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, dashboard_address=":0") as empty:
        with pytest.raises(ConfigError, match=r"only 0 of 1 Dask worker\(s\) connected"):
            make_client(empty.scheduler_address, timeout=1)


# -- jobqueue configuration -------------------------------------------------------------------


@pytest.fixture
def jobqueue(monkeypatch):
    """dask-jobqueue imported (its defaults loaded into Dask's config *before* a test's
    ``dask.config.set``, which would otherwise drop them on exit) and the shipped defaults
    in use."""
    module = pytest.importorskip("dask_jobqueue")
    monkeypatch.delenv("RATAG_JOBQUEUE_CONFIG", raising=False)
    return module


def test_packaged_jobqueue_defaults_equal_the_documented_copy():
    packaged = REPO / "ratag_xr" / "jobqueue.yaml"
    assert packaged.read_bytes() == SHIPPED.read_bytes()


@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_shipped_defaults_fill_what_dask_config_leaves_unset(kind, jobqueue):
    shipped = yaml.safe_load(SHIPPED.read_text())["jobqueue"][kind]
    with dask.config.set({f"jobqueue.{kind}.cores": None, f"jobqueue.{kind}.memory": None,
                          f"jobqueue.{kind}.processes": None,
                          f"jobqueue.{kind}.walltime": "00:30:00"}):
        options = jobqueue_options(kind)
    assert options["cores"] == shipped["cores"]
    assert options["processes"] == shipped["processes"]
    assert parse_bytes(options["memory"]) // 2**20 == parse_bytes(shipped["memory"]) // 2**20
    assert options["walltime"] == shipped["walltime"]  # dask-jobqueue's default is replaced


def test_user_dask_config_and_overrides_win(jobqueue):
    with dask.config.set({"jobqueue.slurm.walltime": "07:00:00",
                          "jobqueue.slurm.queue": "long"}):
        options = jobqueue_options("slurm", workers=2, threads=3, memory="1.5GiB")
    assert options["walltime"] == "07:00:00"
    assert options["queue"] == "long"
    # 2 workers x 3 threads per job; 2 x 1.5 GiB = 3072 MiB per job
    assert (options["processes"], options["cores"], options["memory"]) == (2, 6, "3072MiB")


def test_more_workers_per_job_keep_the_shape_of_a_worker(jobqueue):
    with dask.config.set({"jobqueue.slurm.cores": 8, "jobqueue.slurm.processes": 4,
                          "jobqueue.slurm.memory": "16GiB"}):
        options = jobqueue_options("slurm", workers=6)
    # a worker stays 8 / 4 = 2 threads and 16 / 4 = 4 GiB
    assert (options["processes"], options["cores"], options["memory"]) == (6, 12, "24576MiB")
    with dask.config.set({"jobqueue.slurm.memory": "lots"}):
        with pytest.raises(ConfigError, match="'lots'"):
            jobqueue_options("slurm")


def test_pbs_job_script_from_the_options(jobqueue):
    options = jobqueue_options("pbs", workers=2, threads=3, memory="1.5GiB")
    with jobqueue.PBSCluster(**options, scheduler_options={"dashboard_address": ":0"}) as cluster:
        script = cluster.job_script()
    assert "#PBS -l select=1:ncpus=6:mem=3072MB" in script
    assert "#PBS -l walltime=02:00:00" in script
    assert "--nthreads 3" in script and "--nworkers 2" in script


def test_missing_cores_and_memory_is_a_config_error(tmp_path, monkeypatch, jobqueue):
    bare = tmp_path / "jobqueue.yaml"
    bare.write_text("jobqueue:\n  slurm:\n    walltime: '01:00:00'\n")
    monkeypatch.setenv("RATAG_JOBQUEUE_CONFIG", str(bare))
    with dask.config.set({"jobqueue.slurm.cores": None, "jobqueue.slurm.memory": None}):
        with pytest.raises(ConfigError, match="cores and memory per job are not set"):
            make_client("slurm", jobs=1)
        assert jobqueue_options("slurm", threads=2, memory="1GiB")["cores"] == 2


def test_missing_jobqueue_config_file_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("RATAG_JOBQUEUE_CONFIG", str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match="RATAG_JOBQUEUE_CONFIG=.*no such file"):
        jobqueue_options("slurm")


# -- a worker dies mid-analysis -----------------------------------------------------------


def test_killed_worker_does_not_change_the_results(tmp_path, client):
    run_dir = simulate_run(tmp_path / "raw", SMALL_RUN)
    run_pipeline(run_dir, out=tmp_path / "calm", client=client,
                 stages=("ingest", *ANALYSIS), progress=False)

    c = make_client("local", workers=2, threads=1, memory="2GiB", quiet=True)
    try:
        run_pipeline(run_dir, out=tmp_path / "hit", client=c, stages=("ingest",),
                     progress=False)
        pids = c.run(os.getpid)
        failure = []

        def analyse():
            try:
                run_pipeline(run_dir, out=tmp_path / "hit", client=c, stages=ANALYSIS,
                             progress=False)
            except BaseException as err:  # re-raised in the test below
                failure.append(err)

        thread = threading.Thread(target=analyse)
        thread.start()
        busy = []
        deadline = time.monotonic() + 120
        while not busy and thread.is_alive() and time.monotonic() < deadline:
            busy = [w for w, keys in c.processing().items() if keys and w in pids]
            time.sleep(0.005)
        assert busy, "no worker was ever seen running a task"
        assert thread.is_alive(), "the analysis ended before a worker could be killed"
        os.kill(pids[busy[0]], signal.SIGKILL)
        thread.join(timeout=300)
        assert not thread.is_alive()
        if failure:
            raise failure[0]
        c.wait_for_workers(2, timeout=60)  # the nanny started a new worker process
        assert pids[busy[0]] not in c.run(os.getpid).values()
    finally:
        close_client(c)
    assert_same_results(tmp_path / "calm", tmp_path / "hit")
