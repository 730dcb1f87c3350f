"""compute_features: registered kernels mapped over a lazy (set, frame, time) array."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster
from numba import guvectorize

from ratag_xr.config import Config
from ratag_xr.driver import code_scaling, compute_features, time_axis
from ratag_xr.errors import AnalysisError, RatagError
from ratag_xr.features import (
    FEATURES,
    Feature,
    Output,
    SetInput,
    arguments,
    register,
    select,
    unregister,
)

try:
    from tests.test_kernels import PASS1_OUTPUTS, reference_pass1, reference_pass2
except ImportError:  # tests/ is not a package: pytest put it on sys.path
    from test_kernels import PASS1_OUTPUTS, reference_pass1, reference_pass2

N_SAMPLES, T0, DT = 3000, -3.0, 0.01
SCALE, OFFSET = -0.004, 1.5  # mV per code (negative polarity), mV
N_VALID = {"setA": 5, "setB": 3}  # frames per set; 6 slots each, the rest is padding
N_SLOTS = 6
T_S1 = [-1.0, -0.6]
TIME_DRIFT = [12.0, 15.0]
CONFIG = Config({"prepare": {"n_pedestal": 100, "ma_window": 9},
                 "xray": {"max_area_s2": 400.0}})


def make_frames(rng) -> np.ndarray:
    """int16 codes (set, slot, time): baseline, noise, S1, S2 and sometimes an X-ray."""
    t = T0 + np.arange(N_SAMPLES) * DT
    raw = np.zeros((len(N_VALID), N_SLOTS, N_SAMPLES), np.int16)
    for s, n_valid in enumerate(N_VALID.values()):
        for f in range(n_valid):
            mv = rng.normal(0.0, 0.15, N_SAMPLES)
            mv += 3.0 * np.exp(-0.5 * ((t - T_S1[s]) / 0.05) ** 2)
            t_s2 = T_S1[s] + TIME_DRIFT[s] + rng.normal(0.0, 0.3)
            mv[(t >= t_s2) & (t <= t_s2 + rng.uniform(2.0, 6.0))] += rng.uniform(0.3, 2.0)
            if rng.random() < 0.6:
                tx = rng.uniform(T_S1[s] + 1.5, T_S1[s] + TIME_DRIFT[s] - 4.5)
                mv += rng.uniform(1.0, 4.0) * np.exp(-0.5 * ((t - tx) / 0.2) ** 2)
            raw[s, f] = np.round(200 + mv / SCALE).astype(np.int16)
    return raw


@pytest.fixture(scope="module")
def threads_client():
    """In-process workers: fast, and they share this module's READS counter."""
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def raw():
    return make_frames(np.random.default_rng(42))


READS = []  # chunk shapes seen by count_read (tasks run in this process: processes=False)


def count_read(block):
    """Stands for reading a chunk from the store; module level, so workers share READS."""
    READS.append(block.shape)
    return block


def waveform_array(raw, chunks=None, count_reads=False) -> xr.DataArray:
    """A lazy waveform DataArray as the store provides it."""
    data = da.from_array(raw, chunks=chunks or (1, 2, -1))
    if count_reads:
        data = data.map_blocks(count_read, meta=np.empty((0, 0, 0), raw.dtype))
    valid = np.arange(N_SLOTS)[None, :] < np.array(list(N_VALID.values()))[:, None]
    time = T0 + np.arange(N_SAMPLES) * DT
    return xr.DataArray(
        data, dims=("set", "frame", "time"),
        coords={"set": list(N_VALID), "frame": np.arange(N_SLOTS), "time": time,
                "valid": (("set", "frame"), valid)},
        attrs={"scale_factor": SCALE, "add_offset": OFFSET, "units": "mV"})


def per_set() -> xr.Dataset:
    sets = list(N_VALID)
    start = np.array(T_S1) + np.array(TIME_DRIFT) - 0.5
    return xr.Dataset({"t_s1": ("set", T_S1), "time_drift": ("set", TIME_DRIFT),
                       "s2_window_start": ("set", start), "s2_window_end": ("set", start + 5)},
                      coords={"set": sets})


def per_set_params(features=None, config=CONFIG) -> dict:
    """The kernels' inputs as the pipeline resolves them: config values, per-set values."""
    return arguments(select(features), config, per_set())


def reference_params(s: int, config=CONFIG) -> dict:
    """Plain floats of set ``s``: every feature's parameters from ``config``, per-set
    inputs from :func:`per_set`."""
    p = {item.arg: float(item.kernel_value(config.get(item.key)))
         for f in FEATURES.values() for item in f.params}
    p.update({name: float(v[s]) for name, v in per_set().data_vars.items()})
    return p


def test_features_match_reference_per_frame(threads_client, raw):
    lazy = compute_features(waveform_array(raw), per_set_params())
    assert all(isinstance(v.data, da.Array) for v in lazy.data_vars.values())
    ds = lazy.compute()
    expected_vars = {*PASS1_OUTPUTS, "s2_area"}
    assert set(ds.data_vars) == expected_vars
    codes = set()
    for name, var in ds.data_vars.items():
        assert var.dims == ("set", "frame"), name
        assert var.attrs["units"] and var.attrs["long_name"], name
    assert ds.xray_code.dtype == np.int8
    assert list(ds.xray_code.attrs["flag_values"]) == [-1, 0, 1, 2, 3, 4, 5]
    assert ds.xray_code.attrs["flag_meanings"].split()[1] == "accepted"
    for s, n_valid in enumerate(N_VALID.values()):
        p = reference_params(s)
        for f in range(N_SLOTS):
            got = ds.isel(set=s, frame=f)
            if f >= n_valid:  # padding frame
                assert not got.valid
                assert int(got.xray_code) == -1
                assert all(np.isnan(got[k]) for k in expected_vars - {"xray_code"})
                continue
            expected = reference_pass1(raw[s, f], SCALE, OFFSET, T0, DT, p)
            assert int(got.xray_code) == expected["xray_code"]
            codes.add(expected["xray_code"])
            for name in ("pedestal", "s2_start", "s2_end", "s2_duration", "xray_area"):
                np.testing.assert_allclose(got[name], expected[name], rtol=1e-9, atol=1e-12,
                                           err_msg=name)
            np.testing.assert_allclose(got.s2_area,
                                       reference_pass2(raw[s, f], SCALE, OFFSET, T0, DT, p),
                                       rtol=1e-9, atol=1e-12)
    assert len(codes) >= 2  # the frames are not all alike
    assert ds.attrs["t_s1"] == T_S1 and ds.attrs["n_pedestal"] == 100.0
    assert ds.attrs["ma_window"] == 9.0 and ds.attrs["dt"] == DT


def test_all_features_read_each_chunk_once(threads_client, raw):
    READS.clear()
    ds = compute_features(waveform_array(raw, count_reads=True), per_set_params())
    threads_client.compute(ds).result()
    assert READS == [(1, 2, N_SAMPLES)] * (len(N_VALID) * N_SLOTS // 2)


def test_selection_by_pass_and_config(threads_client, raw):
    config = CONFIG.replace({"prepare.n_pedestal": 2000})
    ds = compute_features(waveform_array(raw), per_set_params("pass2", config),
                          features="pass2").compute()
    assert list(ds.data_vars) == ["s2_area"]
    p = reference_params(1, config)
    assert p["n_pedestal"] == 2000.0
    np.testing.assert_allclose(ds.s2_area[1, 0], reference_pass2(raw[1, 0], SCALE, OFFSET,
                                                                  T0, DT, p), rtol=1e-9)


@guvectorize(["void(int16[:], float64, float64, float64, float64, float64[:])",
              "void(float64[:], float64, float64, float64, float64, float64[:])"],
             "(n),(),(),(),()->()", nopython=True)
def frame_max(raw, scale, offset, t0, dt, out):
    """Largest code of the frame in mV (a toy feature for the registry test)."""
    out[0] = raw.max() * scale + offset


def test_registered_feature_appears_in_output(threads_client, raw):
    feature = Feature(name="frame_max", kernel=frame_max, inputs=(),
                      outputs=(Output("max_code_mv", "mV", "largest code"),), pass_="pass1")
    register(feature)
    try:
        ds = compute_features(waveform_array(raw), per_set_params("pass1"), features="pass1")
        assert {"max_code_mv", "s2_start", "xray_code"} <= set(ds.data_vars)
        assert "s2_area" not in ds
        got = ds.max_code_mv.compute()
        assert got.attrs["units"] == "mV"
        np.testing.assert_allclose(got[0, :5], raw[0, :5].max(axis=1) * SCALE + OFFSET)
        assert np.isnan(got[1, 3:]).all()  # padding
        with pytest.raises(RatagError, match="already registered"):
            register(feature)
    finally:
        unregister("frame_max")
    assert "frame_max" not in FEATURES


def test_feature_declaration_must_match_kernel():
    with pytest.raises(RatagError, match="kernel takes 5 inputs"):
        Feature(name="bad", kernel=frame_max, inputs=(SetInput("t_s1", "µs"),),
                outputs=(Output("x", "mV", "x"),), pass_="pass1")
    with pytest.raises(RatagError, match="fill value"):
        Output("code", "1", "a code", dtype=np.int8)


def test_time_axis_split_into_chunks_is_refused(raw):
    waveform = waveform_array(raw, chunks=(1, 2, 1000))
    with pytest.raises(RatagError, match="time axis is split into 3 chunks"):
        compute_features(waveform, per_set_params())


def test_missing_parameter_is_refused(raw):
    with pytest.raises(AnalysisError, match="'t_s1'"):
        arguments(select("pass1"), CONFIG, per_set().drop_vars("t_s1"))
    args = per_set_params("pass1")
    del args["s2_window_xray"]["t_s1"]
    with pytest.raises(AnalysisError, match="'t_s1'"):
        compute_features(waveform_array(raw), args, features="pass1")


@pytest.mark.parametrize("seed", range(20))
def test_time_axis_reproduces_coordinate_exactly(seed):
    rng = np.random.default_rng(seed)
    t0, dt = rng.uniform(-5.0, 0.0), rng.uniform(1e-4, 1e-2)
    n = int(rng.integers(2, 200000))
    coord = t0 + np.arange(n) * dt
    got_t0, got_dt = time_axis(coord)
    assert np.array_equal(got_t0 + np.arange(n) * got_dt, coord)


def test_time_axis_refuses_irregular_times():
    with pytest.raises(RatagError, match="not uniform"):
        time_axis(np.array([0.0, 1.0, 2.5, 3.0]))
    with pytest.raises(RatagError, match="must increase"):
        time_axis(np.array([3.0, 2.0, 1.0]))


def test_code_scaling_sources():
    codes = xr.DataArray(np.zeros(3, np.int16), attrs={"scale_factor": -0.5})
    assert code_scaling(codes) == (-0.5, 0.0)
    encoded = xr.DataArray(np.zeros(3, np.int16))
    encoded.encoding = {"scale_factor": 2.0, "add_offset": 1.0}
    assert code_scaling(encoded) == (2.0, 1.0)
    decoded = xr.DataArray(np.zeros(3))
    decoded.encoding = {"scale_factor": 2.0, "add_offset": 1.0}
    assert code_scaling(decoded) == (1.0, 0.0)  # already mV


def test_kernels_run_in_worker_processes(client, raw):
    """Tasks are serialized to worker processes: the cached kernels must survive that."""
    ds = compute_features(waveform_array(raw), per_set_params("pass2"), features="pass2")
    got = client.compute(ds.s2_area).result()
    p = reference_params(0)
    np.testing.assert_allclose(got[0, 0], reference_pass2(raw[0, 0], SCALE, OFFSET, T0, DT, p),
                               rtol=1e-9)


def test_a_channel_stored_in_volts_reaches_the_kernels_in_mv(threads_client, raw):
    """The kernel contract is mV; the store keeps the alpha channel in V (units "V"): the
    driver converts its scale and offset, a channel of other units is refused."""
    alpha = np.arange(len(N_VALID) * N_SLOTS * 50, dtype=np.int16).reshape(
        len(N_VALID), N_SLOTS, 50)
    pmt = waveform_array(raw)
    node = xr.Dataset(
        {"waveform": pmt.drop_vars("valid"),
         "alpha_waveform": (("set", "frame", "alpha_time"), da.from_array(alpha, chunks=(1, 2, -1)),
                            {"scale_factor": 0.04, "add_offset": 0.1, "units": "V"})},
        coords={"alpha_time": np.arange(50) * 0.004, "valid": pmt.valid})
    register(Feature(name="alpha_last", kernel=frame_last, inputs=(),
                     outputs=(Output("alpha_last", "mV", "last alpha sample"),),
                     pass_="pass1", channel="alpha"))
    try:
        ds = compute_features(node, {}, features=["alpha_last"]).compute()
        ok = pmt.valid.values
        np.testing.assert_allclose(ds.alpha_last.values[ok],
                                   (alpha[..., -1] * 0.04 + 0.1)[ok] * 1000.0, rtol=1e-12)
        assert ds.attrs["alpha_scale_factor"] == pytest.approx(40.0)
        node["alpha_waveform"].attrs["units"] = "counts"
        with pytest.raises(RatagError, match="units 'counts'"):
            compute_features(node, {}, features=["alpha_last"])
        # "every feature" of a PMT waveform alone: the alpha features are not among them
        alone = compute_features(pmt, per_set_params())
        assert "alpha_last" not in alone and "alpha_energy_sca" not in alone
    finally:
        unregister("alpha_last")


def test_numpy_backed_waveform_gives_the_same_result(threads_client, raw):
    lazy = compute_features(waveform_array(raw), per_set_params())
    eager = compute_features(waveform_array(raw).compute(), per_set_params())
    assert not any(isinstance(v.data, da.Array) for v in eager.data_vars.values())
    xr.testing.assert_identical(eager, lazy.compute())


@guvectorize(["void(int16[:], float64, float64, float64, float64, float64[:])"],
             "(n),(),(),(),()->()", nopython=True)
def frame_last(raw, scale, offset, t0, dt, out):
    """Last sample of the frame in the channel's unit (a toy feature of the alpha channel)."""
    out[0] = raw[raw.shape[0] - 1] * scale + offset


def test_features_of_two_channels_run_in_one_task_per_chunk(threads_client, raw):
    """A node with both channels: the alpha feature reads alpha_waveform (its own time axis,
    scaling and alpha_valid mask), the PMT features read waveform, one task per chunk."""
    rng = np.random.default_rng(3)
    alpha = rng.integers(-100, 100, size=(len(N_VALID), N_SLOTS, 700)).astype(np.int16)
    pmt = waveform_array(raw)
    alpha_valid = pmt.valid.values.copy()
    alpha_valid[0, 1] = False  # a frame without its alpha twin
    node = xr.Dataset(
        {"waveform": pmt.drop_vars("valid"),
         "alpha_waveform": (("set", "frame", "alpha_time"),
                            da.from_array(alpha, chunks=(1, 2, -1)),
                            {"scale_factor": 0.5, "add_offset": 1.0})},
        coords={"alpha_time": np.arange(700) * 0.004, "valid": pmt.valid,
                "alpha_valid": (("set", "frame"), alpha_valid)})
    register(Feature(name="alpha_last", kernel=frame_last, inputs=(),
                     outputs=(Output("alpha_last", "mV", "last alpha sample"),),
                     pass_="pass1", channel="alpha"))
    try:
        args = per_set_params(["s2_area", "alpha_last"])
        lazy = compute_features(node, args, features=["s2_area", "alpha_last"])
        (optimized,) = dask.optimize(lazy.alpha_last.data)
        n_chunks = len(N_VALID) * N_SLOTS // 2
        from dask._task_spec import Task  # real tasks, not the aliases fusion leaves

        work = [v for v in dict(optimized.__dask_graph__()).values() if type(v) is Task]
        assert len(work) == n_chunks  # both channels' reads fused into one task per chunk
        ds = lazy.compute()
        want = alpha[..., -1] * 0.5 + 1.0
        ok = alpha_valid
        np.testing.assert_array_equal(ds.alpha_last.values[ok], want[ok])
        assert np.isnan(ds.alpha_last.values[~ok]).all()
        assert np.isfinite(ds.s2_area.values[0, 1])  # the PMT frame keeps its results
        alone = compute_features(pmt, per_set_params(["s2_area"]), features="s2_area")
        xr.testing.assert_equal(ds.s2_area.drop_vars("alpha_valid"), alone.s2_area.compute())
        with pytest.raises(RatagError, match="node Dataset"):
            compute_features(pmt, args, features=["alpha_last"])
    finally:
        unregister("alpha_last")
