"""Figures drawn in helper processes of their own, beside the command.

matplotlib draws in Python, under one interpreter lock: figures drawn as threads of the
command (or of a threaded cluster) are drawn one after the other, while the command's
own work waits for the lock too.  :class:`FigureHelpers` starts a few plain Python
processes (``python -m ratag_xr.plots.helpers``) when a command will draw figures; each
imports matplotlib and the figure modules while the command starts up, then draws the
figures it is asked for, one at a time, from the stored results (nothing but names and
paths travels, as one JSON line each way).

A figure asked for before its stages are done is never asked for: the runner asks for
each figure once every stage it draws is stored (:class:`~ratag_xr.stages.plots.
FigureRound`), so the figures of the early stages are drawn while the later stages
compute.  An error in a helper comes back as the same error in the command; a helper
that dies fails the figure it was drawing with a :class:`~ratag_xr.errors.RatagError`
naming it, and the remaining figures go to the other helpers.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path

#: helper processes started by a command (at most one per core)
HELPERS = 2


def helper_count() -> int:
    return max(1, min(HELPERS, os.cpu_count() or 1))


class FigureHelpers:
    """``n`` helper processes and a queue of figures to draw (see the module doc).

    ``submit(request)`` returns a :class:`concurrent.futures.Future` of the files the
    figure wrote; ``close()`` ends the helpers (figures not yet drawn are cancelled).
    One process is started; once it has imported the figure modules it forks the others
    (where the system can fork), so the imports are paid once."""

    def __init__(self, n: int | None = None):
        n = n or helper_count()
        self._todo: queue.Queue = queue.Queue()
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [package_root, *filter(None, [env.get("PYTHONPATH")])])
        pairs, theirs = [], []
        for _ in range(n):
            req_r, req_w = os.pipe()
            rep_r, rep_w = os.pipe()
            pairs.append((os.fdopen(req_w, "w"), os.fdopen(rep_r, "r")))
            theirs.append((req_r, rep_w))
        groups = [theirs] if hasattr(os, "fork") else [[pair] for pair in theirs]
        self._procs = []
        try:
            for group in groups:
                self._procs.append(subprocess.Popen(
                    [sys.executable, "-m", "ratag_xr.plots.helpers",
                     ",".join(f"{r}:{w}" for r, w in group)],
                    pass_fds=[fd for pair in group for fd in pair], env=env,
                    stdin=subprocess.DEVNULL))
        finally:
            for fd in (fd for pair in theirs for fd in pair):
                os.close(fd)
        self._pairs = pairs
        self._threads = [threading.Thread(target=self._serve, args=(pair,), daemon=True,
                                          name=f"figure-helper-{i}")
                         for i, pair in enumerate(pairs)]
        self._alive = len(pairs)
        self._lock = threading.Lock()
        for thread in self._threads:
            thread.start()
        self._closed = False

    def submit(self, request: dict) -> Future:
        if self._closed:
            raise RuntimeError("figure helpers already closed")
        future: Future = Future()
        self._todo.put((request, future))
        return future

    def _serve(self, pair) -> None:
        requests, replies = pair
        while True:
            item = self._todo.get()
            if item is None:
                return
            request, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                requests.write(json.dumps(request) + "\n")
                requests.flush()
                line = replies.readline()
            except (OSError, ValueError):
                line = ""
            if line:
                _settle(future, json.loads(line))
                continue
            # this helper is gone: the figure goes to another one, if any is alive
            with self._lock:
                self._alive -= 1
                alive = self._alive
            if alive:
                retry: Future = Future()
                retry.add_done_callback(lambda f, fut=future: _copy(f, fut))
                self._todo.put((request, retry))
            else:
                from ratag_xr.errors import RatagError

                future.set_exception(RatagError(
                    f"figure {request['figure']!r}: every figure helper process has "
                    "exited (see the messages above)"))
                self._fail_queued()
            return

    def _fail_queued(self) -> None:
        from ratag_xr.errors import RatagError

        while True:
            try:
                item = self._todo.get_nowait()
            except queue.Empty:
                return
            if item is not None and item[1].set_running_or_notify_cancel():
                item[1].set_exception(RatagError(
                    f"figure {item[0]['figure']!r}: every figure helper process has exited"))

    def close(self) -> None:
        """End the helpers: no new figures; those queued are cancelled."""
        if self._closed:
            return
        self._closed = True
        while True:
            try:
                item = self._todo.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[1].cancel()
        for _ in self._threads:
            self._todo.put(None)
        for thread in self._threads:
            thread.join(timeout=60)
        for requests, replies in self._pairs:
            for f in (requests, replies):
                try:
                    f.close()
                except OSError:
                    pass
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _copy(source: Future, target: Future) -> None:
    if source.cancelled():
        target.cancel()
    elif source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())


def _settle(future: Future, reply: dict) -> None:
    if "paths" in reply:
        future.set_result([Path(p) for p in reply["paths"]])
        return
    future.set_exception(_error(reply))


def _error(reply: dict) -> BaseException:
    """The error a helper reported, as the same type where it is an OSError or one of
    ratag_xr's own errors."""
    from ratag_xr import errors

    kind, message = reply.get("error", "RuntimeError"), reply.get("message", "")
    if kind == "OSError" or reply.get("errno") is not None:
        return OSError(reply.get("errno"), reply.get("strerror") or message,
                       reply.get("filename"))
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, errors.RatagError):
        try:
            return cls(message)
        except TypeError:  # an error class with other arguments
            pass
    return errors.RatagError(f"{kind}: {message}")


# ---------------------------------------------------------------- the helper process


def _reply(request: dict) -> dict:
    from ratag_xr.plots.figures import draw_figure, job_from_fields

    try:
        paths = draw_figure(job_from_fields(request["job"]), request["figure"],
                            request["set"], Path(request["results"]))
    except OSError as err:
        return {"error": "OSError", "message": str(err), "errno": err.errno,
                "strerror": err.strerror, "filename": err.filename}
    except Exception as err:  # reported to the command, which raises it
        return {"error": type(err).__name__,
                "message": f"figure {request['figure']} ({request['set'] or 'run'}): {err}"}
    return {"paths": paths}


def _serve_pipes(requests, replies) -> None:
    for line in requests:
        if line.strip():
            replies.write(json.dumps(_reply(json.loads(line))) + "\n")
            replies.flush()


#: scheduling priority of a helper (``nice``): the figures take the cores the analysis
#: leaves free, so a large run's tasks are not slowed by figures drawn beside them.  (Linux's
#: idle class instead deferred the figures to the end of a run, where the plots stage waited
#: ~0.2 s longer for them, for no gain in the file tasks' time: measured on 2 cores.)
NICENESS = 10


def _yield_to_the_analysis() -> None:
    try:
        os.nice(NICENESS)
    except (AttributeError, OSError):  # no nice on this system: the same figures, later
        pass


def _warm_up() -> None:
    """Draw and encode one throwaway figure with what the figures use (fonts, math text,
    legend, errorbars, PNG encoding), so the first figure asked for does not pay for
    loading them: done while the command is still starting up, on a core it leaves idle."""
    import io

    from ratag_xr.io.atomic import save_png
    from ratag_xr.plots._common import new_figure

    fig = new_figure(3, 2)
    ax = fig.add_subplot()
    ax.errorbar([0, 1], [1, 2], yerr=[0.1, 0.2], fmt="o", label=r"$\sigma^2_\mathrm{obs}$ µs²")
    ax.hist([0.5, 1.0, 1.5], bins=3)
    ax.set_xlabel("t [µs]")
    ax.set_title("warm-up", y=1.0)
    ax.legend()
    save_png(io.BytesIO(), fig)


def main(argv=None) -> int:
    """A helper: ``python -m ratag_xr.plots.helpers R:W[,R:W...]``, one pair of pipe file
    descriptors (requests read, replies written) per process; the first pair is served
    here, each other one by a process forked once the imports are done."""
    import signal

    from ratag_xr.startup import imports_uncollected

    # Ctrl-C reaches the whole process group: the command stops and closes the helpers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdout = sys.stderr  # anything printed while drawing goes with the messages
    pairs = [tuple(int(fd) for fd in pair.split(":"))
             for pair in (argv or sys.argv[1:])[0].split(",")]
    with imports_uncollected():  # frozen before the fork: its pages stay shared, too
        import matplotlib

        matplotlib.use("Agg")
        from ratag_xr import plots
        from ratag_xr.plots import figures  # noqa: F401  (imported before the first request)

        for name in plots.__all__:
            getattr(plots, name)
        _warm_up()
    _yield_to_the_analysis()
    mine, children = pairs[0], []
    for pair in pairs[1:]:
        pid = os.fork()
        if pid == 0:
            mine, children = pair, []
            break
        children.append(pid)
    for pair in pairs:
        if pair != mine:
            for fd in pair:
                os.close(fd)
    with os.fdopen(mine[0], "r") as requests, os.fdopen(mine[1], "w") as replies:
        _serve_pipes(requests, replies)
    for pid in children:
        os.waitpid(pid, 0)
    # Every figure is written and renamed into place: the process ends at once, without
    # the interpreter's teardown of matplotlib and the rest (a third of a second, which
    # the command would wait for).  A forked helper has nothing of the parent's to run.
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
