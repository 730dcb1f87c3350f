"""The one place that makes a Dask client.

``spec`` is ``None``/``"local"`` (a LocalCluster sized to the machine or to
``workers``/``threads``/``memory``), a scheduler address (``tcp://host:8786``), or
``"slurm"``/``"pbs"`` (dask-jobqueue, configured from Dask's config, see
``deploy/jobqueue.yaml``).  A ``distributed.Client`` passes through unchanged.
"""

from __future__ import annotations

import contextlib
import os

from ratag_xr.errors import ConfigError


def _local_cluster(workers: int | None, threads: int | None, memory: str | None):
    from distributed import LocalCluster

    n_cores = os.cpu_count() or 1
    workers = workers or n_cores
    threads = threads or max(1, n_cores // workers)
    kwargs = {"n_workers": workers, "threads_per_worker": threads, "processes": True,
              "dashboard_address": ":0"}
    if memory:
        kwargs["memory_limit"] = memory
    return LocalCluster(**kwargs)


def _jobqueue_cluster(kind: str, jobs: int | None):
    try:
        import dask_jobqueue
    except ImportError:
        raise ConfigError(f"cluster '{kind}' needs dask-jobqueue: pip install "
                          "'ratag_xr[cluster]'") from None
    cls = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[kind]
    cluster = cls()
    cluster.scale(jobs=jobs or 1)
    return cluster


def make_client(spec=None, *, workers: int | None = None, threads: int | None = None,
                memory: str | None = None, jobs: int | None = None):
    """A ``distributed.Client`` for ``spec`` (see module doc); the caller closes it."""
    from distributed import Client

    if isinstance(spec, Client):
        return spec
    if spec in (None, "local"):
        return Client(_local_cluster(workers, threads, memory), set_as_default=False)
    if isinstance(spec, str) and "://" in spec:
        return Client(spec, set_as_default=False)
    if spec in ("slurm", "pbs"):
        client = Client(_jobqueue_cluster(spec, jobs), set_as_default=False)
        client.wait_for_workers(1, timeout=600)
        return client
    raise ConfigError(f"cluster spec {spec!r}: expected 'local', 'slurm', 'pbs' or a "
                      "scheduler address like tcp://host:8786")


@contextlib.contextmanager
def managed_client(client=None, **kwargs):
    """Yield ``client`` if given (left open), else a new one that is closed afterwards."""
    from distributed import Client

    if isinstance(client, Client):
        yield client
        return
    new = make_client(client, **kwargs)
    try:
        yield new
    finally:
        cluster = new.cluster
        new.close()
        if cluster is not None:
            cluster.close()
