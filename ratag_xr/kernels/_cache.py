"""Where numba caches the compiled kernels, so that they never go stale.

numba's on-disk cache (``cache=True``) checks only the source file of each compiled
function: a kernel in ``pass1.py`` that calls a helper in ``conditioning.py`` would keep
running the old helper after ``conditioning.py`` changed.  So the kernels are compiled
into a cache folder named after a hash of every source file of this package:
``kernels/__pycache__/numba-<hash>/`` (or ``~/.cache/ratag_xr/numba-<hash>/`` when the
package folder is read-only).  Any edit to any file here gives a new folder, and the
kernels are recompiled; folders of older hashes are removed (they are ours).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path

import numba

HERE = Path(__file__).resolve().parent
PREFIX = "numba-"


#: Compiled into the kernels besides their own files: the X-ray outcome codes.
ALSO_COMPILED = (HERE.parent / "vocabulary.py",)


def source_hash() -> str:
    """Hash of every ``.py`` file of ``ratag_xr/kernels`` and of :data:`ALSO_COMPILED`
    (names and contents)."""
    digest = hashlib.sha256()
    for path in [*sorted(HERE.glob("*.py")), *(p for p in ALSO_COMPILED if p.is_file())]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError:
        return False
    return True


def cache_dir(digest: str | None = None) -> Path | None:
    """The cache folder of the current kernel sources (None: nowhere writable)."""
    name = PREFIX + (digest or source_hash())
    for parent in (HERE / "__pycache__", Path.home() / ".cache" / "ratag_xr"):
        if _writable(parent):
            return parent / name
    return None


def _prune(current: Path) -> None:
    """Remove the caches of older kernel sources (folders of other hashes, and files
    numba wrote beside the sources before the kernels had a folder of their own)."""
    for old in current.parent.glob(PREFIX + "*"):
        if old != current and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    for stale in (HERE / "__pycache__").glob("*.nb[ic]"):
        stale.unlink(missing_ok=True)


@contextlib.contextmanager
def kernel_cache():
    """Compile (or load) the kernels imported in this block into :func:`cache_dir`.

    numba reads ``config.CACHE_DIR`` when a cached function is defined, so setting it
    around the imports affects ratag_xr's kernels only; a value set by the user
    (``NUMBA_CACHE_DIR``) is respected and left alone.
    """
    if numba.config.CACHE_DIR:
        yield
        return
    folder = cache_dir()
    if folder is None:
        yield
        return
    _prune(folder)
    numba.config.CACHE_DIR = str(folder)
    try:
        yield
    finally:
        numba.config.CACHE_DIR = ""
