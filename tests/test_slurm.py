"""A run analysed by SLURM batch-job workers equals the same run on a LocalCluster.

Starts a real single-node SLURM with ``deploy/slurm-single-node.sh`` in a private scratch
directory on free ports (so a second test run on the same machine does not collide), runs
``ratag-xr run --cluster slurm --jobs 2`` in a subprocess, and stops SLURM afterwards.
Needs root and the Debian packages slurmctld, slurmd, slurm-client and munge (``.ci/run``
installs them); skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ratag_xr.cluster import make_client
from ratag_xr.errors import ConfigError
from ratag_xr.pipeline import run_pipeline
from ratag_xr.simulate import simulate_run
from tests.conftest import REPO
from tests.test_cluster import ANALYSIS, SMALL_RUN, assert_same_results

pytestmark = pytest.mark.slurm

SCRIPT = REPO / "deploy" / "slurm-single-node.sh"
BINARIES = ("slurmctld", "slurmd", "sinfo", "squeue", "sbatch", "scancel", "munged")
APT = "apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"


def _why_not() -> str | None:
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return f"SLURM is not installed (missing {', '.join(missing)}; {APT})"
    if os.geteuid() != 0:
        return "the single-node SLURM needs root (munged runs as user munge)"
    return None


def _free_port_pair() -> int:
    """A port p with p and p + 1 free (slurmctld and slurmd)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


class Slurm:
    """One single-node SLURM instance driven through the deploy script."""

    def __init__(self, scratch: Path, port: int):
        self.scratch, self.port = scratch, port
        self.env = {**os.environ, "SLURM_CONF": str(scratch / "slurm.conf"),
                    "RATAG_SLURM_PORT": str(port)}

    def script(self, action: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), action, str(self.scratch)], env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)

    def squeue(self) -> str:
        return subprocess.run(["squeue", "-h"], env=self.env, capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()

    def diagnostics(self) -> str:
        """The queue and the daemons' last log lines, for failure messages."""
        queue = subprocess.run(["squeue", "-o", "%i %T %r %M"], env=self.env,
                               capture_output=True, text=True, timeout=30, check=False)
        logs = [f"squeue:\n{queue.stdout}{queue.stderr}"]
        for name in ("log/slurmctld.log", "log/slurmd.log"):
            path = self.scratch / name
            if path.is_file():
                tail = "\n".join(path.read_text(errors="replace").splitlines()[-25:])
                logs.append(f"{name}:\n{tail}")
        return "\n".join(logs)

    def pids(self) -> dict[str, int]:
        files = {"slurmctld": "run/slurmctld.pid", "slurmd": "run/slurmd.pid",
                 "munged": "munge/munged.pid"}
        return {name: int((self.scratch / f).read_text()) for name, f in files.items()
                if (self.scratch / f).is_file()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def slurm():
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    scratch = Path(tempfile.mkdtemp(prefix="ratag-slurm-"))
    instance = Slurm(scratch, _free_port_pair())
    started = instance.script("start")
    try:
        assert started.returncode == 0, f"start failed:\n{started.stderr}\n" \
            f"{instance.diagnostics()}"
        assert f"export SLURM_CONF={scratch / 'slurm.conf'}" in started.stdout
        yield instance
    finally:
        stopped = instance.script("stop")
        shutil.rmtree(scratch, ignore_errors=True)
        assert stopped.returncode == 0, stopped.stderr


def _wait_queue_empty(slurm: Slurm, seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    while (queue := slurm.squeue()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return queue


def test_start_is_idempotent(slurm):
    before = slurm.pids()
    assert set(before) == {"slurmctld", "slurmd", "munged"}
    again = slurm.script("start")
    assert again.returncode == 0, again.stderr
    assert slurm.pids() == before
    status = slurm.script("status")
    assert status.returncode == 0 and "idle" in status.stdout
    # every CPU this process may use, even with OMP_NUM_THREADS=1 set by Dask in os.environ
    cpus = subprocess.run(["sinfo", "-h", "-N", "-o", "%c"], env=slurm.env, capture_output=True,
                          text=True, timeout=30, check=True).stdout.split()
    assert cpus == [str(len(os.sched_getaffinity(0)))]


def test_slurm_workers_give_the_local_results(slurm, client, tmp_path):
    run_dir = simulate_run(tmp_path / "raw", SMALL_RUN)
    run_pipeline(run_dir, out=tmp_path / "local", client=client,
                 stages=("ingest", *ANALYSIS), progress=False)
    # The workers run on this machine: talk over loopback (a user's Dask setting, which
    # wins over the shipped defaults, like any other jobqueue key).
    env = {**slurm.env, "DASK_JOBQUEUE__SLURM__INTERFACE": "lo", "RATAG_WORKER_TIMEOUT": "300"}
    cmd = [sys.executable, "-m", "ratag_xr", "run", str(run_dir), "--out",
           str(tmp_path / "slurm"), "--cluster", "slurm", "--jobs", "2", "--workers", "1",
           "--threads", "1", "--memory", "1GiB", "--quiet", "--stages", "ingest", *ANALYSIS]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{slurm.diagnostics()}"
    assert "Dask: 2 worker(s), 2 thread(s)" in done.stderr
    assert "dashboard http" in done.stderr
    # the workers really were batch jobs: their job output files are in the cwd
    assert len(list(tmp_path.glob("slurm-*.out"))) >= 2
    assert _wait_queue_empty(slurm) == "", f"jobs left behind:\n{slurm.diagnostics()}"
    assert_same_results(tmp_path / "local", tmp_path / "slurm")


def test_jobs_that_cannot_start_time_out_clearly(slurm, monkeypatch, tmp_path):
    pytest.importorskip("dask_jobqueue")  # its defaults must be loaded before config.set
    import dask

    monkeypatch.setenv("SLURM_CONF", slurm.env["SLURM_CONF"])
    monkeypatch.chdir(tmp_path)
    # more cores than the node has: the job stays pending for ever
    with dask.config.set({"jobqueue.slurm.interface": "lo"}):
        with pytest.raises(ConfigError, match=r"(?s)only 0 of 1 Dask worker.*squeue says"):
            make_client("slurm", jobs=1, workers=1, threads=os.cpu_count() + 1,
                        memory="1GiB", timeout=3, quiet=True)
    assert _wait_queue_empty(slurm) == "", "the pending job was not cancelled"


def test_stop_ends_every_daemon(slurm):
    pids = slurm.pids()
    stopped = slurm.script("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert slurm.pids() == {}
    assert not any(_alive(pid) for pid in pids.values())
    assert slurm.script("status").returncode != 0
    assert slurm.script("stop").returncode == 0  # stopping twice is fine
