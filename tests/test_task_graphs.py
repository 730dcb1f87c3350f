"""How the work reaches the cluster: a pass over the frames is one task per waveform chunk
(read and kernels fused), the pipeline's passes run no other per-chunk tasks, and figure
tasks do not send tasks of their own back to the cluster."""

from __future__ import annotations

import math

import dask
import numpy as np
import pytest
import xarray as xr
from dask._task_spec import Task
from distributed import get_task_stream

from ratag_xr.config import Config
from ratag_xr.driver import compute_features, frame_records
from ratag_xr.features import arguments, select
from ratag_xr.pipeline import load_results
from ratag_xr.pipeline.frames import analysis_nodes, compute_pass, map_features
from ratag_xr.simulate import SimConfig
from ratag_xr.stages.plots import ANALYSIS, figure_job, render
from tests.conftest import analysed_run

RUN = SimConfig(sets=((100, 1600), (200, 1700)), files_per_set=3, frames_per_file=30,
                sampling_rate_gs=1.0, record_start_us=-4.0, record_end_us=25.0,
                xray_fraction=0.3, seed=5)
CONFIG = Config()


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, client):
    return analysed_run(tmp_path_factory.mktemp("graphs"), client, RUN,
                        ("prepare", "integrate", "classify", "calibrate"))


def _windows(run) -> xr.Dataset:
    sets = load_results(run.out).sets
    return sets[["s2_window_start", "s2_window_end"]]


def _pass2_args(run, ds) -> dict:
    """pass-2 kernel inputs for node ``ds``, as the pipeline resolves them."""
    return arguments(select("pass2"), CONFIG, _windows(run).sel(set=ds.set.values))


def _keys(records) -> list[str]:
    return [k[0] if isinstance(k, tuple) else k for k in records]


def test_a_pass_is_one_task_per_chunk(analysed):
    nodes = analysis_nodes(analysed.store)
    n_tasks = 0
    for ds in nodes.values():
        records = frame_records(ds.waveform, _pass2_args(analysed, ds), "pass2")
        (optimized,) = dask.optimize(records.data)
        graph = dict(optimized.__dask_graph__())
        work = [key for key, node in graph.items() if type(node) is Task]
        n_chunks = math.prod(ds.waveform.data.numblocks)
        assert n_chunks >= 3
        assert len(work) == n_chunks  # no separate read, getitem, where or rechunk tasks
        n_tasks += len(work)
    assert n_tasks > 0


def test_compute_pass_equals_the_lazy_dataset_and_runs_no_other_chunk_tasks(analysed, client):
    nodes = analysis_nodes(analysed.store)
    windows = _windows(analysed)
    lazy = map_features(nodes, "pass2", CONFIG, per_set=windows)
    with get_task_stream(client) as stream:
        eager = compute_pass(nodes, "pass2", CONFIG, client, per_set=windows, progress=False)
    xr.testing.assert_identical(eager, lazy.compute(scheduler="synchronous"))
    assert np.isfinite(eager.s2_area.where(eager.valid)).sum() > 100
    n_chunks = sum(math.prod(ds.waveform.data.numblocks) for ds in nodes.values())
    keys = _keys(r["key"] for r in stream.data)
    assert sum("frame-features" in k for k in keys) >= n_chunks
    # per chunk: the fused task and its alias; per node: gathering the records
    assert len(keys) <= 2 * n_chunks + 2 * len(nodes)


def test_records_do_not_depend_on_the_chunking(analysed):
    ds = next(iter(analysis_nodes(analysed.store).values()))
    params = _pass2_args(analysed, ds)
    reference = compute_features(ds.waveform.compute(), params, "pass2")
    for chunks in ({"set": 1, "frame": 7}, {"set": 2, "frame": 45}, {"frame": -1}):
        got = compute_features(ds.waveform.chunk(chunks), params, "pass2")
        xr.testing.assert_identical(got.compute(scheduler="synchronous"), reference)


def test_figure_tasks_read_in_place(analysed, client):
    with get_task_stream(client) as stream:
        paths = render(figure_job(analysed, analysed.config), analysed.results,
                       ANALYSIS, client)
    keys = _keys(r["key"] for r in stream.data)
    assert len(paths) >= 2 * len(RUN.sets) + 5
    assert keys and all(k.startswith("figure-") for k in keys), sorted(set(keys))
    assert len(keys) == len(paths)  # one task per figure, each writing one file
