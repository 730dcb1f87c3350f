"""The one place that makes a Dask client.

A cluster spec is one of

``None`` / ``"local"``
    a LocalCluster on this machine: one worker process per core (or ``workers``), each
    with ``threads`` threads and ``memory`` (e.g. ``"4GiB"``) of memory;
``"tcp://host:8786"`` (any ``scheme://``)
    an already running scheduler; waits for ``workers`` (default 1) workers to be there;
``"slurm"`` / ``"pbs"``
    dask-jobqueue submits ``jobs`` batch jobs, each running ``workers`` worker processes
    of ``threads`` threads and ``memory`` each (without them, the config's ``processes``,
    ``cores / processes`` and ``memory / processes``).  Everything else (queue, walltime,
    interface, local directory, extra directives, ...) comes from Dask's config
    ``jobqueue.slurm`` / ``jobqueue.pbs``; keys the user's Dask config leaves at
    dask-jobqueue's defaults take the values shipped with ratag_xr (``deploy/jobqueue.yaml``,
    also installed as ``ratag_xr/jobqueue.yaml``; ``$RATAG_JOBQUEUE_CONFIG`` names another
    file).

A ``distributed.Client`` passes through unchanged (notebooks bring their own).  Waiting for
workers gives up after ``timeout`` seconds (default ``$RATAG_WORKER_TIMEOUT`` or 600 s) with
a :class:`~ratag_xr.errors.ConfigError` that says how many arrived and why jobs wait.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from ratag_xr.errors import ConfigError

CONFIG_ENV = "RATAG_JOBQUEUE_CONFIG"
TIMEOUT_ENV = "RATAG_WORKER_TIMEOUT"
DEFAULT_TIMEOUT = 600.0  # s: batch jobs may sit in a queue for a while
JOBQUEUE_KINDS = ("slurm", "pbs")
_REPO_COPY = Path(__file__).resolve().parents[1] / "deploy" / "jobqueue.yaml"
_PENDING_QUERY = {"slurm": ["squeue", "-h", "-o", "%i %T %r", "-j"],
                  "pbs": ["qstat"]}


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed cluster spec: ``kind`` is local, address, slurm or pbs."""

    kind: str
    address: str | None = None  # scheduler address when kind == "address"


def parse_spec(spec: str | None) -> ClusterSpec:
    """Parse ``spec`` (see the module doc); anything else is a ConfigError."""
    if spec is None:
        return ClusterSpec("local")
    if not isinstance(spec, str):
        raise ConfigError(f"cluster spec must be a string, got {spec!r}")
    text = spec.strip()
    if text.lower() in ("local", *JOBQUEUE_KINDS):
        return ClusterSpec(text.lower())
    scheme, sep, rest = text.partition("://")
    host, _, port = rest.rpartition(":")
    if sep and scheme and host and port.isdigit():
        return ClusterSpec("address", text)
    raise ConfigError(f"cluster spec {spec!r}: expected 'local', 'slurm', 'pbs' or a "
                      "scheduler address like tcp://host:8786")


# -- shipped jobqueue defaults -----------------------------------------------------------------


def shipped_config_text() -> tuple[str, str]:
    """(where, YAML text) of the jobqueue defaults: ``$RATAG_JOBQUEUE_CONFIG``, else the
    package's copy, else the repository's ``deploy/jobqueue.yaml``."""
    override = os.environ.get(CONFIG_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise ConfigError(f"{CONFIG_ENV}={override}: no such file")
        return str(path), path.read_text()
    packaged = resources.files("ratag_xr") / "jobqueue.yaml"
    if packaged.is_file():
        return str(packaged), packaged.read_text()
    if _REPO_COPY.is_file():
        return str(_REPO_COPY), _REPO_COPY.read_text()
    raise ConfigError("the jobqueue defaults (ratag_xr/jobqueue.yaml) are not installed: "
                      f"point {CONFIG_ENV} at a copy of deploy/jobqueue.yaml")


def shipped_defaults(kind: str) -> dict:
    """The ``jobqueue.<kind>`` section of the shipped defaults (hyphenated keys)."""
    where, text = shipped_config_text()
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML: {err}") from None
    section = (values.get("jobqueue") or {}).get(kind) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: jobqueue.{kind} must be a mapping, got {section!r}")
    return section


def _jobqueue_module():
    try:
        import dask_jobqueue
    except ImportError:
        raise ConfigError("clusters 'slurm' and 'pbs' need dask-jobqueue: "
                          "pip install 'ratag_xr[cluster]'") from None
    return dask_jobqueue


def jobqueue_settings(kind: str) -> dict:
    """The effective ``jobqueue.<kind>`` config: the user's Dask config, with the shipped
    defaults for every key the user left at dask-jobqueue's own default."""
    import dask

    _jobqueue_module()  # importing it loads its defaults into Dask's config
    from dask_jobqueue import config as jq_config

    with open(Path(jq_config.__file__).with_name("jobqueue.yaml")) as f:
        base = (yaml.safe_load(f) or {}).get("jobqueue", {}).get(kind, {})
    current = dict(dask.config.get(f"jobqueue.{kind}", default={}) or {})
    settings = dict(current)
    for key, value in shipped_defaults(kind).items():
        if key not in current or current[key] == base.get(key):
            settings[key] = value
    return settings


def _per_job(settings: dict, kind: str, workers, threads, memory) -> dict:
    """cores, processes and memory of one job after the CLI/run-config overrides.

    The config gives the shape of a worker (cores / processes threads, memory / processes
    bytes); ``workers`` changes how many a job runs, ``threads`` and ``memory`` the shape.
    """
    base_processes = settings.get("processes") or 1
    base_cores, base_memory = settings.get("cores"), settings.get("memory")
    if base_memory is not None:
        base_memory = _bytes(str(base_memory))  # a bad size fails here, not in the job
    processes = workers or base_processes
    if threads:
        cores = threads * processes
    elif base_cores is not None and workers:
        cores = max(1, base_cores // base_processes) * processes
    else:
        cores = base_cores
    if memory:
        job_memory = _bytes(memory) * processes
    elif base_memory is not None and workers:
        job_memory = base_memory // base_processes * processes
    else:
        job_memory = base_memory
    if cores is None or job_memory is None:
        raise ConfigError(f"cluster '{kind}': cores and memory per job are not set; set "
                          f"jobqueue.{kind}.cores/.memory in your Dask config "
                          "(~/.config/dask/jobqueue.yaml, see deploy/jobqueue.yaml) or "
                          "pass --threads and --memory")
    if cores < processes:
        raise ConfigError(f"cluster '{kind}': {cores} core(s) per job cannot run "
                          f"{processes} worker process(es)")
    return {"cores": int(cores), "processes": int(processes),
            "memory": f"{job_memory // 2**20}MiB"}


def jobqueue_options(kind: str, *, workers: int | None = None, threads: int | None = None,
                     memory: str | None = None) -> dict:
    """Keyword arguments of the dask-jobqueue cluster class for ``kind``.

    ``workers`` are worker processes per job, ``threads`` threads per worker, ``memory``
    memory per worker (the job asks for workers x memory).  Keys not named here are read
    by dask-jobqueue itself from Dask's config.
    """
    settings = jobqueue_settings(kind)
    options = {}
    for key in shipped_defaults(kind):
        value = settings.get(key)
        if value is not None:
            options["job_name" if key == "name" else key.replace("-", "_")] = value
    options.update(_per_job(settings, kind, workers, threads, memory))
    return options


# -- clients -----------------------------------------------------------------------------------


def _positive(name: str, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
        raise ConfigError(f"cluster.{name} must be a whole number >= 1, got {value!r}")


def _bytes(memory: str) -> int:
    from dask.utils import parse_bytes

    try:
        return int(parse_bytes(memory))
    except (ValueError, TypeError):
        raise ConfigError(f"cluster.memory {memory!r}: expected a size like 4GiB or "
                          "2000MB") from None


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _local_client(workers, threads, memory, processes: bool = True):
    from distributed import Client, LocalCluster

    n_cores = os.cpu_count() or 1
    if processes:
        workers = workers or n_cores
        threads = threads or max(1, n_cores // workers)
    else:  # one in-process worker whose threads share the already imported kernels
        workers = workers or 1
        threads = threads or max(1, n_cores // workers)
    kwargs = {"n_workers": workers, "threads_per_worker": threads, "processes": processes,
              "dashboard_address": ":0"}
    if memory:
        kwargs["memory_limit"] = memory if memory == "auto" else _bytes(memory)
    return Client(LocalCluster(**kwargs), set_as_default=False)


def _address_client(address: str, workers, timeout: float):
    from distributed import Client

    try:
        client = Client(address, set_as_default=False, timeout=min(timeout, 60))
    except (OSError, TimeoutError) as err:
        raise ConfigError(f"cannot reach the Dask scheduler at {address}: {err}") from None
    _wait(client, workers or 1, timeout, f"scheduler {address}",
          "Are dask workers started and pointed at this scheduler?")
    return client


def _pending_reasons(kind: str, cluster) -> str:
    """Queue states of the cluster's jobs, as the batch system reports them (best effort)."""
    ids = [str(job.job_id) for job in cluster.workers.values()
           if getattr(job, "job_id", None)]
    command = _PENDING_QUERY[kind]
    if not ids or shutil.which(command[0]) is None:
        return ""
    args = command + ([",".join(ids)] if kind == "slurm" else ids)
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = out.stdout.strip()
    return f"\n{command[0]} says:\n{lines}" if lines else ""


def _jobqueue_client(kind: str, workers, threads, memory, jobs, timeout: float):
    from distributed import Client

    module = _jobqueue_module()
    cls = {"slurm": module.SLURMCluster, "pbs": module.PBSCluster}[kind]
    options = jobqueue_options(kind, workers=workers, threads=threads, memory=memory)
    try:
        cluster = cls(**options)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"cluster '{kind}': {err}") from None
    jobs = jobs or 1
    cluster.scale(jobs=jobs)
    client = Client(cluster, set_as_default=False)
    per_job = options["processes"]
    where = (f"{kind} ({jobs} job(s) x {per_job} worker(s), {options['cores']} core(s) and "
             f"{options['memory']} per job)")
    try:
        _wait(client, jobs * per_job, timeout, where,
              "A job waits when it asks for more cores, memory or walltime than the queue "
              "gives (the batch system's reason is below); a job that runs but whose "
              "workers do not connect tells why in its output file",
              reasons=lambda: _pending_reasons(kind, cluster))
    except ConfigError:
        close_client(client)
        raise
    return client


def _wait(client, n: int, timeout: float, where: str, hint: str, reasons=None) -> None:
    """Wait for ``n`` workers or raise a ConfigError saying how many came and why not."""
    try:
        client.wait_for_workers(n, timeout=timeout)
    except TimeoutError:
        arrived = len(_scheduler_info(client).get("workers", {}))
        why = reasons() if reasons else ""
        raise ConfigError(f"{where}: only {arrived} of {n} Dask worker(s) connected within "
                          f"{timeout:g} s. {hint} (${TIMEOUT_ENV} sets how long to wait)"
                          f"{why}") from None


def _scheduler_info(client) -> dict:
    """The scheduler's info with every worker listed (recent versions list 5 by default)."""
    try:
        return client.scheduler_info(n_workers=-1)
    except TypeError:  # distributed < 2025.1 has no n_workers and lists them all
        return client.scheduler_info()


def describe(client) -> str:
    """One line: workers, threads, memory and the dashboard address of ``client``."""
    info = _scheduler_info(client)
    workers = info.get("workers", {}).values()
    threads = sum(w.get("nthreads", 0) for w in workers)
    memory = sum(w.get("memory_limit", 0) or 0 for w in workers)
    from dask.utils import format_bytes

    return (f"Dask: {len(workers)} worker(s), {threads} thread(s), {format_bytes(memory)} "
            f"memory; scheduler {info.get('address', '?')}; dashboard "
            f"{client.dashboard_link}")


def make_client(spec=None, *, workers: int | None = None, threads: int | None = None,
                memory: str | None = None, jobs: int | None = None,
                timeout: float | None = None, quiet: bool = False, processes: bool = True):
    """A ``distributed.Client`` for ``spec`` (see the module doc); the caller closes it
    (:func:`close_client` closes its cluster too).  Prints the dashboard address to
    stderr unless ``quiet``.  ``jobs`` only applies to slurm and pbs; ``processes``
    only to local clusters (False: threads of this process, which start in a fraction of
    a second and need no imports of their own: the better choice for small runs)."""
    from distributed import Client

    if isinstance(spec, Client):
        return spec
    parsed = parse_spec(spec)
    for name, value in (("workers", workers), ("threads", threads), ("jobs", jobs)):
        _positive(name, value)
    if memory is not None and memory != "auto":
        _bytes(memory)
    if timeout is None:
        text = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT))
        try:
            timeout = float(text)
        except ValueError:
            raise ConfigError(f"${TIMEOUT_ENV}={text!r}: expected seconds") from None
    if parsed.kind == "local":
        client = _local_client(workers, threads, memory, processes)
    elif parsed.kind == "address":
        client = _address_client(parsed.address, workers, timeout)
    else:
        client = _jobqueue_client(parsed.kind, workers, threads, memory, jobs, timeout)
    if not quiet:
        _say(describe(client))
    return client


def close_client(client) -> None:
    """Close ``client`` and the cluster it started (cancels batch jobs)."""
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()


@contextlib.contextmanager
def managed_client(client=None, **kwargs):
    """Yield ``client`` if it is a Client (left open) or the Client a factory ``client()``
    returns (its caller owns it, e.g. a :class:`LazyClient`), else a new one for the spec
    ``client`` and ``kwargs`` (see :func:`make_client`), closed afterwards."""
    from distributed import Client

    if isinstance(client, Client):
        yield client
        return
    if callable(client):
        yield client()
        return
    new = make_client(client, **kwargs)
    try:
        yield new
    finally:
        close_client(new)


@dataclass(frozen=True)
class TaskOSError:
    """An :class:`OSError` of a task, returned instead of raised: a full disk or an
    unwritable folder met by a worker then reaches the command as one clear message,
    without the worker logging a traceback of its own."""

    errno: int | None
    strerror: str | None
    filename: str | None

    def reraise(self):
        raise OSError(self.errno, self.strerror, self.filename)


def os_errors_returned(fn, *args, **kwargs):
    """Run ``fn`` (a task); an OSError comes back as a :class:`TaskOSError`."""
    try:
        return fn(*args, **kwargs)
    except OSError as err:
        return TaskOSError(err.errno, err.strerror, err.filename)


def task_result(future):
    """The result of a task submitted through :func:`os_errors_returned` (its OSError
    raised here)."""
    result = future.result()
    if isinstance(result, TaskOSError):
        result.reraise()
    return result


class LazyClient:
    """A Dask client made on first use: ``get()`` returns it (starting the cluster the
    first time), ``close()`` closes it if this object made it.  A command that finds
    everything current never starts a cluster."""

    def __init__(self, spec=None, **kwargs):
        self._spec, self._kwargs = spec, kwargs
        self._client = None
        self._owned = False

    @property
    def started(self) -> bool:
        return self._client is not None

    def get(self):
        if self._client is None:
            from distributed import Client

            if isinstance(self._spec, Client):
                self._client = self._spec
            elif isinstance(self._spec, LazyClient):  # shared: its owner closes it
                self._client = self._spec.get()
            elif callable(self._spec):
                self._client, self._owned = self._spec(), True
            else:
                self._client, self._owned = make_client(self._spec, **self._kwargs), True
        return self._client

    def close(self) -> None:
        if self._client is not None and self._owned:
            close_client(self._client)
        self._client, self._owned = None, False
