"""A process of ratag_xr's own imports with the cyclic collector paused and then frozen;
a caller that is not (a test, a notebook) keeps its collector as it is."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

from ratag_xr.cli import main
from ratag_xr.startup import imports_uncollected

PROBE = """
import gc, json, weakref
from ratag_xr.startup import imports_uncollected
before = gc.get_freeze_count()
with imports_uncollected():
    paused = gc.isenabled()
    import xarray, dask.array  # noqa: F401
frozen = gc.get_freeze_count()

class Node:  # made after the imports: a cycle the collector must still find
    pass

a, b = Node(), Node()
a.other, b.other = b, a
gone = []
weakref.finalize(a, gone.append, 1)
del a, b
gc.collect()
print(json.dumps(dict(before=before, paused=paused, frozen=frozen, enabled=gc.isenabled(),
                      collected=bool(gone))))
"""


def _probe(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_imports_are_frozen_and_later_garbage_is_still_collected():
    got = _probe(PROBE)
    assert got["before"] == 0 and got["paused"] is False
    assert got["frozen"] > 50_000  # xarray's and Dask's objects, out of the collector's walk
    assert got["enabled"] is True
    assert got["collected"] is True


def test_not_own_process_leaves_the_collector_alone():
    frozen, enabled = gc.get_freeze_count(), gc.isenabled()
    with imports_uncollected(own_process=False):
        assert gc.isenabled() == enabled
        import json as _json  # noqa: F401
    assert (gc.get_freeze_count(), gc.isenabled()) == (frozen, enabled)


def test_main_called_in_process_does_not_freeze(tmp_path):
    frozen = gc.get_freeze_count()
    assert main(["ingest", str(tmp_path / "no-such-run")]) == 2  # after its imports
    assert gc.get_freeze_count() == frozen and gc.isenabled()


def test_the_command_process_freezes_its_imports(tmp_path):
    code = ("import gc, json, ratag_xr.cli as cli\n"
            "cli._OWN_PROCESS = True  # as entry() sets it\n"
            f"status = cli.main(['ingest', {str(tmp_path / 'no-such-run')!r}])\n"
            "print(json.dumps(dict(status=status, frozen=gc.get_freeze_count(),"
            " enabled=gc.isenabled())))\n")
    got = _probe(code)
    assert got["status"] == 2
    assert got["frozen"] > 50_000 and got["enabled"] is True
