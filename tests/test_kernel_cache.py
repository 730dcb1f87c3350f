"""Compiled kernels never go stale: editing a helper module recompiles the kernels.

numba's own cache checks only the file of each compiled function, so a kernel calling a
helper from another file keeps the old helper; the control case below shows it.  A
package whose kernels are imported inside ratag_xr's ``kernel_cache`` gets a cache folder
per hash of its sources, so the edit is seen.  Each case runs in fresh processes, as a
rerun of the pipeline would.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ratag_xr.kernels import _cache

HELPER = "from numba import njit\n\n\n@njit(cache=True)\ndef offset(x):\n    return x + {}\n"
KERNEL = textwrap.dedent("""
    from numba import njit

    from {pkg}.helper import offset


    @njit(cache=True)
    def kernel(x):
        return offset(x) * 2.0
    """)
CACHED_INIT = textwrap.dedent("""
    from {pkg}._cache import kernel_cache

    with kernel_cache():
        from {pkg} import helper, kern  # noqa: F401
    """)


def make_package(root: Path, pkg: str, guarded: bool) -> Path:
    folder = root / pkg
    folder.mkdir(parents=True)
    (folder / "helper.py").write_text(HELPER.format("1.0"))
    (folder / "kern.py").write_text(KERNEL.format(pkg=pkg))
    if guarded:
        shutil.copy(Path(_cache.__file__), folder / "_cache.py")
        (folder / "__init__.py").write_text(CACHED_INIT.format(pkg=pkg))
    else:
        (folder / "__init__.py").write_text("")
    return folder


def run_kernel(root: Path, pkg: str) -> float:
    code = f"from {pkg}.kern import kernel; print(kernel(1.0))"
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "HOME": str(root)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return float(proc.stdout.strip())


@pytest.mark.parametrize(("guarded", "after_edit"), [(False, 4.0), (True, 6.0)])
def test_editing_a_helper_recompiles_the_kernel(tmp_path, guarded, after_edit):
    pkg = "cached_kernels" if guarded else "plain_kernels"
    folder = make_package(tmp_path, pkg, guarded)
    assert run_kernel(tmp_path, pkg) == 4.0  # (1 + 1) * 2, compiled and cached
    assert run_kernel(tmp_path, pkg) == 4.0  # loaded from the cache
    (folder / "helper.py").write_text(HELPER.format("2.0"))
    # plain numba: the kernel's own file is unchanged, its cached code still adds 1
    # ratag_xr's cache: the package's sources changed, so a new folder, a recompile
    assert run_kernel(tmp_path, pkg) == after_edit


def test_the_cache_folder_follows_every_kernel_source():
    digest = _cache.source_hash()
    folder = _cache.cache_dir(digest)
    assert folder.name == f"numba-{digest}"
    sources = sorted(p.name for p in _cache.HERE.glob("*.py"))
    assert {"pass1.py", "pass2.py", "conditioning.py", "numeric.py", "alpha.py"} <= set(sources)
