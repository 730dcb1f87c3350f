"""How a process of ratag_xr's own starts: its imports made with Python's cyclic garbage
collector paused, then moved out of the collector's reach.

A command imports a few hundred thousand objects (modules, classes, functions of numba,
xarray, Dask, scipy; matplotlib in a figure helper) that live as long as the process.
Each full collection walks every one of them while it holds the interpreter lock, so
the threads of a threaded cluster wait too: measured on a `ratag-xr run` of 876 MB
(read-once), 0.50 s of the command's main process in ~750 collections (0.35 s in 5 full
ones), and ~0.3 s in each figure helper.  Imported with the collector off and then
:func:`gc.freeze`-d, what is left to collect is what the work makes: 0.02 s for the same
run.  Nothing else changes: the collector runs as before on every object made later.

Only the processes ratag_xr starts do this (the ``ratag-xr`` command, its figure helpers):
a test or a notebook that calls :func:`ratag_xr.cli.main` keeps its collector as it is,
since freezing would keep that process's garbage of the moment for good.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def imports_uncollected(own_process: bool = True) -> Iterator[None]:
    """Run the block (the imports) with the cyclic collector paused, then freeze every
    object made so far and resume collecting.  ``own_process=False``: do nothing (a
    caller that is not a process of ratag_xr's own)."""
    if not own_process:
        yield
        return
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
