"""Command line: a thin shell over the Python API (``ratag-xr --help``)."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from ratag_xr.config import Config, load_config
from ratag_xr.errors import RatagError
from ratag_xr.startup import imports_uncollected

#: True in the ``ratag-xr`` command's own process (set by :func:`entry`), False where
#: :func:`main` is called by a test or a notebook: only the former freezes its imports
#: (:mod:`ratag_xr.startup`).
_OWN_PROCESS = False


def _count(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _cluster_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster")
    g.add_argument("--cluster", default=None,
                   help="local (default), slurm, pbs, or a scheduler address tcp://host:port")
    g.add_argument("--workers", type=_count, default=None,
                   help="worker processes (local: default one per core; slurm/pbs: per job)")
    g.add_argument("--threads", type=_count, default=None, help="threads per worker")
    g.add_argument("--memory", default=None, help="memory limit per worker, e.g. 4GiB")
    g.add_argument("--jobs", type=_count, default=None, help="batch jobs for slurm/pbs")


def _client(args, config: Config | None = None):
    """A client from the command-line options, falling back key by key on the run
    config's ``cluster`` section."""
    from ratag_xr.cluster import make_client

    c = (config or Config()).cluster
    pick = {k: getattr(args, k) if getattr(args, k) is not None else getattr(c, k)
            for k in ("workers", "threads", "memory", "jobs")}
    return make_client(args.cluster or c.spec, **pick)


def _is_yaml(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml")


def _run_and_config(target: str, config_path: str | None = None) -> tuple[Path, Config]:
    """A run directory (with ``--config``: and the run config to analyse it with, whose
    own run folder it replaces), or a YAML config whose ``run.run_dir`` names it (a file
    in the group's own layout is converted, :mod:`ratag_xr.group_config`)."""
    from ratag_xr import group_config

    path = Path(target)
    if config_path is not None:
        if _is_yaml(path):
            raise RatagError(f"{path}: give the run folder here when --config names the run "
                             "config")
        config = load_config(config_path)
        return path, config.replace({"run.run_dir": str(path.resolve())})
    if _is_yaml(path):
        config = load_config(path)
        if config.run.run_dir is None:
            where = "data.raw_data_path" if config.origin is not None else "run.run_dir"
            raise RatagError(f"{path}: {where} is not set: give the run folder, `ratag-xr "
                             f"run RUN_DIR --config {path}`")
        group_config.check_run_dir(config)
        return Path(config.run.run_dir), config
    return path, Config()


def cmd_ingest(args) -> int:
    with imports_uncollected(_OWN_PROCESS):
        from ratag_xr.cluster import LazyClient
        from ratag_xr.io.lock import output_lock
        from ratag_xr.store import default_store, ingest

    run_dir, config = _run_and_config(args.run, args.config)
    store = default_store(run_dir, args.out)
    lazy = LazyClient(lambda: _client(args, config))
    with output_lock(store.parent, wait=not args.no_wait):
        try:
            summary = ingest(run_dir, store, config=config, nfiles=args.nfiles,
                             rebuild=args.rebuild, client=lazy.get, progress=not args.quiet)
        finally:
            lazy.close()
    print(summary)
    return 0


def _pipeline(args, stages) -> int:
    """Run ``stages`` (None: every stage) as ``ratag-xr run`` does."""
    from ratag_xr.plots.helpers import FigureHelpers

    # Started first, so they import matplotlib while this command imports the rest and
    # reads its config; closed at once if the plots stage turns out to be current.
    figures = FigureHelpers() if stages is None or "plots" in stages else None
    try:
        with imports_uncollected(_OWN_PROCESS):
            from ratag_xr.pipeline import load_results
            from ratag_xr.pipeline.summary import run_failed, summary_table
            from ratag_xr.runner import PIPELINE, run_pipeline

        stages = tuple(stages or PIPELINE)
        run_dir, config = _run_and_config(args.run, args.config)
        client = None  # the run config's cluster, started only if a stage needs computing
        if any(v is not None for v in (args.cluster, args.workers, args.threads,
                                       args.memory, args.jobs)):
            client = lambda: _client(args, config)  # noqa: E731  (started on first use)
        run = run_pipeline(run_dir, out=args.out, config=config, client=client,
                           nfiles=args.nfiles, stages=stages, force=args.force,
                           rebuild=args.rebuild, wait=not args.no_wait,
                           progress=not args.quiet, figures=figures)
    finally:
        if figures is not None:
            figures.close()
    report = run.out / "report.html"
    if "report" in stages and report.is_file():
        print(f"report: {report}")
    if not set(stages) & {"prepare", "integrate", "classify", "calibrate", "alpha",
                          "isotopes"}:
        return 0
    results = load_results(run.out)
    print(summary_table(results))
    problems = run_failed(results)
    for problem in problems:
        print(f"ratag-xr: run failed: {problem}", file=sys.stderr)
    return 1 if problems else 0


def cmd_run(args) -> int:
    return _pipeline(args, args.stages)


def _stage_command(stage):
    def command(args) -> int:
        # The stage brings the stages it reads; they are reused when already current.
        return _pipeline(args, ("ingest", stage))
    return command


_SIM_OPTIONS = {  # CLI option -> SimConfig field
    "seed": "seed", "run_name": "run_name", "files_per_set": "files_per_set",
    "frames_per_file": "frames_per_file", "sampling_rate": "sampling_rate_gs",
    "record_start": "record_start_us", "record_end": "record_end_us", "dtype": "dtype",
    "pressure": "pressure_bar", "temperature": "temperature_k",
    "xray_fraction": "xray_fraction", "naming": "naming",
}


def _seconds(text: str) -> float:
    """An argparse type: a number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {text}")
    return value


def _parse_sets(text: str) -> tuple[tuple[int, int], ...]:
    try:
        return tuple((int(g), int(a)) for g, a in (item.split(":") for item in text.split(",")))
    except ValueError:
        raise RatagError(f"--sets {text!r}: expected GATE:ANODE[,GATE:ANODE...], "
                         "e.g. 100:1600,200:1700") from None


def cmd_simulate(args) -> int:
    from ratag_xr.simulate import simulate_run

    overrides = {field: getattr(args, opt) for opt, field in _SIM_OPTIONS.items()
                 if getattr(args, opt) is not None}
    if args.sets:
        overrides["sets"] = _parse_sets(args.sets)
    if args.alpha:
        overrides["alpha"] = True
    run_dir = simulate_run(args.out_dir, progress=not args.quiet,
                           seconds_per_file=args.live, **overrides)
    print(f"simulated run written to {run_dir} (ground truth: {run_dir / 'truth.json'})")
    return 0


def cmd_watch(args) -> int:
    with imports_uncollected(_OWN_PROCESS):
        import ratag_xr.runner  # noqa: F401  (the stages it runs on every refresh)
        from ratag_xr.watch import watch

    run_dir, config = _run_and_config(args.run, args.config)
    client = None
    if any(v is not None for v in (args.cluster, args.workers, args.threads, args.memory,
                                   args.jobs)):
        client = _client(args, config)
    try:
        result = watch(run_dir, out=args.out, config=config, client=client,
                       expect_files=args.expect_files, idle_timeout=args.idle_timeout,
                       poll=args.poll, refresh=args.refresh, progress=args.verbose)
    finally:
        if client is not None:
            from ratag_xr.cluster import close_client

            close_client(client)
    return 1 if result["incomplete"] else 0


def cmd_demo(args) -> int:
    with imports_uncollected(_OWN_PROCESS):
        import ratag_xr.runner  # noqa: F401  (the stages it runs)
        from ratag_xr.demo import run_demo

    explicit = any(v is not None for v in (args.cluster, args.workers, args.threads,
                                           args.memory, args.jobs))
    return run_demo(Path(args.out), client_factory=(lambda: _client(args)) if explicit else None,
                    alpha=args.alpha, naming=args.naming)


def _alpha_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--alpha", action="store_true",
                   help="two-channel run: an alpha-detector twin of every PMT file (Th-228 "
                        "chain), with the per-frame isotope and energy in the truth")
    p.add_argument("--naming", choices=("old", "new"), default=None,
                   help="file names of the older DAQ (..._P3_12Wfm_Ch1.wfm / _Ch4.wfm, "
                        "unpadded numbers; the default with --alpha) or the newer one "
                        "(FieldScan_Gate0200_Anode2100/..._Batch001__CH3.wfm / __CH4.wfm, "
                        "PMT on channel 3: analyse with run.channels {pmt: 3, alpha: 4})")


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="CONFIG.yaml",
                   help="with a run directory: the run config to analyse it with (ratag_xr's "
                        "or one of the group's own files); the run directory given wins "
                        "over the config's run folder")


def cmd_config_import(args) -> int:
    from ratag_xr.group_config import import_config

    conversion = import_config(args.source, args.output, run_dir=args.run_dir)
    print(conversion.origin.summary(), file=sys.stderr)
    print(f"ratag_xr run config written to {args.output}")
    return 0


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory, or a run config YAML")
    _config_arg(p)
    p.add_argument("--out", help="output root (default: the run directory)")
    p.add_argument("--nfiles", type=_count, help="test mode: only the first N files of each set")
    p.add_argument("--force", action="store_true", help="redo stages even when up to date")
    p.add_argument("--rebuild", action="store_true",
                   help="delete the waveform store (only if ratag_xr made it) and ingest again")
    p.add_argument("--no-wait", action="store_true",
                   help="refuse at once if another command writes into the output folder "
                        "(default: wait for it)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _cluster_args(p)


#: The stages in run order, for ``--help``: naming them here keeps the parser light (the
#: registry imports the compiled kernels); tests/test_docs.py checks this against it.
STAGE_HELP = {
    "prepare": "fields, S1 time, S2 window statistics",
    "frames": "one pass over every frame: every per-frame feature",
    "integrate": "per-set histograms and fits of the ion S2 areas",
    "classify": "X-ray outcome counts per set",
    "calibrate": "X-ray calibration, recombination, diffusion",
    "alpha": "alpha spectrum, peak fits, energy calibration, isotope ranges",
    "isotopes": "every frame's alpha energy and isotope; per-isotope S2 results",
    "export": "the JSON/NPY/parquet files of every set and of the run",
    "plots": "every diagnostic figure",
    "report": "report.html: the run on one page (tables, figures, files, lineage)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ratag-xr", description="RaTag / RITA gas-xenon analysis: WFM -> Zarr -> results")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="read a run's raw .wfm files into the Zarr store")
    p.add_argument("run", help="run directory, or a run config YAML")
    _config_arg(p)
    p.add_argument("--out", help="output root (store: OUT/waveforms.zarr; default: the run "
                                 "directory), or a path ending in .zarr for the store itself")
    p.add_argument("--nfiles", type=_count, help="only the first N files of each set")
    p.add_argument("--rebuild", action="store_true",
                   help="delete the store (only if ratag_xr made it) and start over")
    p.add_argument("--no-wait", action="store_true",
                   help="refuse at once if another command writes into the output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _cluster_args(p)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("run", help="run every stage: ingest, " + ", ".join(STAGE_HELP))
    _run_args(p)
    p.add_argument("--stages", nargs="+", metavar="STAGE",
                   help="only these stages (default: all, in order)")
    p.set_defaults(func=cmd_run)
    for stage, text in STAGE_HELP.items():
        p = sub.add_parser(stage, help=f"{text} (runs or reuses the stages it reads)")
        _run_args(p)
        p.set_defaults(func=_stage_command(stage))

    p = sub.add_parser("watch", help="follow an acquisition: analyse each file as it "
                                     "completes, keep results, figures and report current")
    p.add_argument("run", help="run directory, or a run config YAML")
    _config_arg(p)
    p.add_argument("--out", help="output root (default: the run directory)")
    p.add_argument("--expect-files", type=_count, metavar="N",
                   help="files each set will have: finish when every set has them, and "
                        "print the ETA")
    p.add_argument("--idle-timeout", type=float, default=60.0, metavar="S",
                   help="finish when nothing new arrived for S seconds (default 60)")
    p.add_argument("--poll", type=float, default=2.0, metavar="S",
                   help="look at the run folder every S seconds (default 2)")
    p.add_argument("--refresh", type=float, default=30.0, metavar="S",
                   help="refresh the exports, figures and report.html at most every S "
                        "seconds (default 30)")
    p.add_argument("--verbose", action="store_true",
                   help="also one line per stage and analysis (default: one line per update)")
    _cluster_args(p)
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("simulate", help="write a simulated run with its ground truth")
    p.add_argument("out_dir", help="folder to create the run in")
    p.add_argument("--seed", type=int, help="random seed (default: 1)")
    p.add_argument("--run-name", help="run folder name (default: RUN1)")
    p.add_argument("--sets", help="GATE:ANODE voltages per set, e.g. 100:1600,200:1700")
    p.add_argument("--files-per-set", type=int)
    p.add_argument("--frames-per-file", type=int)
    p.add_argument("--sampling-rate", type=float, help="GS/s (default 2; real data: 5)")
    p.add_argument("--record-start", type=float, help="first sample time, µs (default -3)")
    p.add_argument("--record-end", type=float, help="end of the record, µs (default 30)")
    p.add_argument("--dtype", choices=("int8", "int16"), help="raw code type (default int8)")
    p.add_argument("--pressure", type=float, help="bar (default 2.0)")
    p.add_argument("--temperature", type=float, help="K (default 293)")
    p.add_argument("--xray-fraction", type=float, help="frames with an X-ray (default 0.2)")
    _alpha_args(p)
    p.add_argument("--live", type=_seconds, metavar="SECONDS_PER_FILE",
                   help="write the run as the oscilloscope does, for following it with "
                        "`watch`: file after file at the final names, each the header first "
                        "and then its frames in several appends (both channels with "
                        "--alpha), taking about SECONDS_PER_FILE each; the same bytes as "
                        "without --live; truth.json and truth_frames.npz are written at the "
                        "end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("config", help="run configurations: convert one of the group's own "
                                      "files to a ratag_xr config")
    what = p.add_subparsers(dest="config_command", required=True)
    q = what.add_parser("import", help="write the ratag_xr config equivalent to one of the "
                                       "group's run-config files, a comment per key")
    q.add_argument("source", metavar="THEIR.yaml", help="the group's run config")
    q.add_argument("-o", "--output", required=True, metavar="RATAG.yaml",
                   help="the ratag_xr config to write")
    q.add_argument("--run-dir", help="the run folder here (default: their raw_data_path), "
                                     "to turn max_frames into files per set")
    q.set_defaults(func=cmd_config_import)

    p = sub.add_parser("demo", help="simulate a small run and analyse it into every output")
    p.add_argument("--out", default="demo-output", help="folder for the run and its outputs")
    _alpha_args(p)
    _cluster_args(p)
    p.set_defaults(func=cmd_demo)
    return parser


#: errno values of a full disk or quota: exit 1 (the command was right, the machine failed)
_FULL = {errno.ENOSPC, errno.EDQUOT}
#: errno values of a folder that cannot be written: exit 2 (choose another --out)
_UNWRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RatagError as err:
        print(f"ratag-xr: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        where = f" ({err.filename})" if err.filename else ""
        if err.errno in _FULL:
            print(f"ratag-xr: error: {err.strerror}{where}: free space and run the command "
                  "again; completed stages and ingested files are kept, nothing half-written "
                  "is used", file=sys.stderr)
            return 1
        if err.errno in _UNWRITABLE:
            print(f"ratag-xr: error: cannot write{where}: {err.strerror}; put the outputs "
                  "elsewhere with --out", file=sys.stderr)
            return 2
        raise


def entry() -> None:
    """The ``ratag-xr`` command: :func:`main`, then the process ends at once.  Everything
    the command writes is complete by then (files closed and renamed into place, the
    cluster and the figure helpers closed); what is left is the interpreter tearing down
    a few thousand modules, a third of a second of a small run."""
    import atexit
    import os

    global _OWN_PROCESS
    _OWN_PROCESS = True
    try:
        code = main()
    except SystemExit as stop:  # argparse's --help and usage errors
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
        if stop.code is not None and not isinstance(stop.code, int):
            print(stop.code, file=sys.stderr)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
