"""The notebooks in ``notebooks/`` run top to bottom, and are committed without outputs.

Each notebook is executed with nbclient in a fresh kernel of this interpreter, in a
temporary working directory, with ``RATAG_DATA_DIR`` pointing into a temporary folder (the
notebooks simulate and analyse their own small runs there).  A cell that raises fails the
test (``CellExecutionError``); the executed outputs are then checked for what each notebook
is meant to show.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL_NAME = "ratag-xr-notebooks"
CELL_TIMEOUT = 300  # s per cell

# notebook -> (patterns the output of its last code cell must match, minimum inline images)
EXPECTED = {
    "01_quickstart.ipynb": ([r"<xarray\.Dataset>", r"Dimensions:\s+\(set: 5\)",
                             r"\br_err\s+\(set\) float64"], 5),
    "02_compare_runs.ipynb": ([r"Dimensions:\s+\(run: 2, drift_field: 5\)",
                               r"\bnorm_A_ion\s+\(run, drift_field\) float64"], 2),
    "03_add_a_feature.ipynb": ([r"\bpeak_height\s+\(set, frame\) float64",
                                r"\bn_above_threshold\s+\(set, frame\) int32",
                                r"'peak_height': 'mV'", r"'prepare': 'reused'",
                                r"'frames': 'computed'",
                                r"'plots': 'computed'"], 1),
    "04_cluster.ipynb": ([r"Dask: 2 worker\(s\)", r"A_x = \d"], 0),
    "05_isotopes.ipynb": ([r"Dimensions:\s+\(set: 4, isotope: 5\)",
                           r"\biso_s2_area_mean\s+\(set, isotope\) float64",
                           r"\bn_untagged\s+\(set\) int64"], 4),
}
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def _ids(path: Path) -> str:
    return path.stem


def _text(output) -> str:
    if output.output_type == "stream":
        return output.text
    return output.get("data", {}).get("text/plain", "")


def _n_images(nb) -> int:
    return sum("image/png" in output.get("data", {})
               for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs)


def test_every_notebook_is_known_and_listed_in_the_readme():
    names = {p.name for p in NOTEBOOKS}
    assert names == set(EXPECTED)
    readme = (NOTEBOOK_DIR / "README.md").read_text()
    for name in names:
        assert name in readme, f"notebooks/README.md does not mention {name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_committed_notebook_is_stripped(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown", "a notebook opens with what it shows"
    for i, cell in enumerate(nb.cells):
        assert "execution" not in cell.metadata, f"{path.name} cell {i}: execution timings"
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has outputs"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory) -> KernelSpecManager:
    """A kernel spec that starts ipykernel with this interpreter (not whatever `python` is
    first on the PATH)."""
    kernels = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(kernels / KERNEL_NAME)
    return KernelSpecManager(kernel_dirs=[str(kernels)])


def execute(path: Path, workdir: Path, kernel_specs: KernelSpecManager):
    """The notebook at ``path`` executed top to bottom in ``workdir``."""
    nb = nbformat.read(path, as_version=4)
    km = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=kernel_specs)
    client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT, kernel_name=KERNEL_NAME,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return nb


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_runs(path, kernel_specs, tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.setenv("RATAG_DATA_DIR", str(data_dir))  # the kernel inherits it

    nb = execute(path, workdir, kernel_specs)

    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    last = "".join(_text(output) for output in code[-1].outputs)
    patterns, min_images = EXPECTED[path.name]
    for pattern in patterns:
        assert re.search(pattern, last), f"{path.name}: last cell lacks {pattern!r}:\n{last}"
    assert _n_images(nb) >= min_images
    # errors on the Dask workers are logged, not raised: none may have happened
    stderr = "".join(o.text for cell in code for o in cell.outputs
                     if o.output_type == "stream" and o.name == "stderr")
    assert "Traceback" not in stderr, stderr
    # everything was written under DATA_DIR: the run's results and waveform stores
    assert list(data_dir.rglob("results.zarr")) and list(data_dir.rglob("waveforms.zarr"))
    # the kernel ran this interpreter (see kernel_specs)
    assert nb.metadata["language_info"]["version"] == platform.python_version()
