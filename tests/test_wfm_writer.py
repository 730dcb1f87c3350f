"""WFM writer: round trip through the reader, and the header read the way Tektronix reads it.

The header check does not use ratag_xr's layout module: it reads fields at the byte offsets
of Tektronix's own example reader (``tekwfm.py`` in Tektronix/Programmatic-Control-Examples,
ReadWfmExample), and that helper is first checked on a real oscilloscope file.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from ratag_xr.errors import RatagError, WfmError
from ratag_xr.io.wfm import read_wfm
from ratag_xr.io.wfm_writer import WfmWriter, write_wfm

SHARED = Path(os.environ.get("RATAG_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SAMPLES = SHARED / "wfm-samples"


def tekwfm_style_read(path):
    """Decode a v3 WFM file at the fixed offsets Tektronix's example reader uses.

    Returns volts (frames, samples), t0, dt, tt_offsets, frac_sec, gmt_sec and the header
    fields checked by the tests.
    """
    b = Path(path).read_bytes()
    bo = {b"\x0f\x0f": "<", b"\xf0\xf0": ">"}[b[:2]]

    def at(fmt, offset):
        return struct.unpack_from(bo + fmt, b, offset)[0]

    meta = {
        "version": b[2:10],
        "bytes_per_point": at("b", 15),
        "curve_offset": at("i", 16),
        "frames": at("I", 72) + 1,
        "fastframe": at("I", 78),
        "imp_dim_count": at("I", 114),
        "exp_dim_count": at("I", 118),
        "record_type": at("I", 122),
        "format_code": at("i", 240),
        "storage_type": at("I", 244),
        "time_base": at("I", 768),
        "data_start": at("I", 822),
        "postcharge_start": at("I", 826),
        "postcharge_stop": at("I", 830),
    }
    bps = meta["bytes_per_point"]
    dtype = {(7, 1): "i1", (0, 2): "i2", (4, 4): "f4"}[(meta["format_code"], bps)]
    n = meta["frames"]
    tt = np.empty(n)
    frac = np.empty(n)
    gmt = np.empty(n)
    tt[0], frac[0], gmt[0] = at("d", 788), at("d", 796), at("i", 804)
    if meta["fastframe"] == 1:
        table = np.frombuffer(b, f"{bo}u4,{bo}f8,{bo}f8,{bo}i4", count=n - 1, offset=838)
        tt[1:], frac[1:], gmt[1:] = table["f1"], table["f2"], table["f3"]
    per_frame = meta["postcharge_stop"] // bps
    codes = np.frombuffer(b, bo + dtype, count=per_frame * n, offset=meta["curve_offset"])
    codes = codes.reshape(n, per_frame)
    codes = codes[:, meta["data_start"] // bps : meta["postcharge_start"] // bps]
    volts = codes * at("d", 168) + at("d", 176)
    return volts, at("d", 496), at("d", 488), tt, frac, gmt, meta


def test_tekwfm_style_helper_reads_a_real_fastframe_file():
    path = SAMPLES / "sample_ff2.wfm"
    if not path.exists():
        pytest.skip(f"WFM samples folder absent: {SAMPLES}")
    expected = np.load(SAMPLES / "sample_ff2.expected.npz")
    volts, t0, dt, tt, frac, gmt, _ = tekwfm_style_read(path)
    np.testing.assert_allclose(volts, expected["volts"], rtol=1e-12, atol=0)
    assert t0 == expected["time"][0]
    assert dt == expected["x_spacing"]
    np.testing.assert_array_equal(tt, expected["tt_offsets"])
    np.testing.assert_array_equal(frac, expected["gmt_frac"])
    np.testing.assert_array_equal(gmt, expected["gmt_sec"])


def _codes(dtype, n_frames, n_samples, seed=0):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    return rng.integers(info.min, info.max, (n_frames, n_samples), endpoint=True, dtype=dtype)


CASES = [
    # dtype, frames, samples, pre, post, byte order
    ("i1", 1, 1000, 0, 0, "<"),
    ("i2", 1, 777, 16, 16, "<"),
    ("i1", 7, 500, 16, 16, "<"),
    ("i2", 5, 1000, 32, 32, "<"),
    ("i2", 4, 300, 0, 0, ">"),
    ("i1", 3, 250, 8, 4, ">"),
    ("i2", 6, 129, 32, 0, ">"),
    ("i1", 400, 50, 2, 3, ">"),  # more buffers than one vectored read takes
]


@pytest.mark.parametrize(("dtype", "n_frames", "n_samples", "pre", "post", "bo"), CASES)
def test_round_trip(tmp_path, dtype, n_frames, n_samples, pre, post, bo):
    raw = _codes(dtype, n_frames, n_samples)
    gmt = 1_700_000_000 + np.arange(n_frames) * 3
    frac = np.linspace(0.05, 0.95, n_frames)
    tt = np.linspace(0.9, 0.1, n_frames)
    path = write_wfm(
        tmp_path / "rt.wfm", raw, y_scale=6.875e-5, y_offset=1.7, x_spacing=2e-10,
        x_start=-3e-6, gmt_sec=gmt, gmt_frac=frac, tt_offsets=tt,
        pre_charge=pre, post_charge=post, byte_order=bo,
    )
    with read_wfm(path) as w:
        assert (w.version, w.byte_order) == (3, bo)
        assert (w.n_frames, w.n_samples) == (n_frames, n_samples)
        assert w.raw_dtype == np.dtype(dtype)
        assert (w.y_scale, w.y_offset, w.x_spacing, w.x_start) == (6.875e-5, 1.7, 2e-10, -3e-6)
        np.testing.assert_array_equal(w.raw, raw)
        np.testing.assert_array_equal(w.frames(), raw)
        assert w.frames().dtype.isnative
        np.testing.assert_array_equal(w.frames(1, 3), raw[1:3])
        np.testing.assert_array_equal(w.volts(), raw * 6.875e-5 + 1.7)
        np.testing.assert_array_equal(w.gmt_sec, gmt)
        np.testing.assert_array_equal(w.gmt_frac, frac)
        np.testing.assert_array_equal(w.tt_offsets, tt)
        volts, t0, dt, tt_tek, frac_tek, gmt_tek, meta = tekwfm_style_read(path)
    np.testing.assert_array_equal(volts, raw * 6.875e-5 + 1.7)
    item = np.dtype(dtype).itemsize
    record = pre + n_samples + post
    stored = np.frombuffer(Path(path).read_bytes(), bo + dtype, count=n_frames * record,
                           offset=meta["curve_offset"]).reshape(n_frames, record)
    np.testing.assert_array_equal(stored[:, :pre], np.repeat(raw[:, :1], pre, axis=1))
    np.testing.assert_array_equal(stored[:, pre + n_samples :],
                                  np.repeat(raw[:, -1:], post, axis=1))
    assert meta["data_start"] == pre * item
    assert meta["postcharge_stop"] - meta["postcharge_start"] == post * item
    assert Path(path).stat().st_size == (
        838 + (n_frames - 1) * 54 + n_frames * (pre + n_samples + post) * item + 8
    )


def test_header_fields_at_tektronix_offsets(tmp_path):
    raw = _codes("i2", 5, 1000)
    frac = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    path = write_wfm(
        tmp_path / "ff.wfm", raw, y_scale=6.875e-5, y_offset=1.7, x_spacing=3.2e-10,
        x_start=-1.6e-7, gmt_sec=[1537384245] * 5, gmt_frac=frac,
        tt_offsets=[0.5, 0.5, 0.45, 0.47, 0.46], pre_charge=32, post_charge=32,
    )
    volts, t0, dt, tt, frac_tek, gmt, meta = tekwfm_style_read(path)
    assert meta["version"] == b":WFM#003"
    assert meta["bytes_per_point"] == 2 and meta["format_code"] == 0
    assert meta["frames"] == 5 and meta["fastframe"] == 1
    assert meta["curve_offset"] == 838 + 4 * 54
    assert (meta["imp_dim_count"], meta["exp_dim_count"], meta["record_type"]) == (1, 1, 2)
    assert meta["storage_type"] == 0 and meta["time_base"] == 0
    assert (meta["data_start"], meta["postcharge_start"], meta["postcharge_stop"]) == (
        64, 2064, 2128,
    )
    assert (t0, dt) == (-1.6e-7, 3.2e-10)
    np.testing.assert_array_equal(tt, [0.5, 0.5, 0.45, 0.47, 0.46])
    np.testing.assert_array_equal(frac_tek, frac)
    np.testing.assert_array_equal(gmt, [1537384245] * 5)
    np.testing.assert_allclose(volts, raw * 6.875e-5 + 1.7, rtol=1e-15)
    b = Path(path).read_bytes()
    # bytes-to-EOF counts from byte 15, and the file ends with the sum of all its bytes
    assert struct.unpack_from("<I", b, 11)[0] == len(b) - 15
    assert struct.unpack_from("<Q", b, len(b) - 8)[0] == sum(b[:-8])
    # same size as the oscilloscope's own 5 x 1000 int16 FastFrame file with 32/32 charge
    assert len(b) == 11702


def test_single_frame_file_is_not_fastframe(tmp_path):
    raw = _codes("i1", 1, 64)[0]
    path = write_wfm(tmp_path / "one.wfm", raw, y_scale=0.0024, x_spacing=2e-11, x_start=-1e-8)
    _, _, _, _, _, _, meta = tekwfm_style_read(path)
    assert meta["fastframe"] == 0 and meta["frames"] == 1 and meta["format_code"] == 7
    with read_wfm(path) as w:
        np.testing.assert_array_equal(w.frames()[0], raw)
        assert w.y_offset == 0.0


def test_default_time_stamps_increase(tmp_path):
    path = write_wfm(tmp_path / "d.wfm", _codes("i2", 4, 10), y_scale=1e-3, x_spacing=1e-9,
                     x_start=0.0)
    with read_wfm(path) as w:
        np.testing.assert_array_equal(w.gmt_sec, [0, 1, 2, 3])
        np.testing.assert_array_equal(w.gmt_frac, 0.0)
        assert np.all(np.diff(w.trigger_time) == np.timedelta64(1, "s"))


def test_streaming_blocks_equal_one_shot(tmp_path):
    raw = _codes("i2", 9, 333, seed=3)
    kwargs = dict(y_scale=1e-4, x_spacing=2e-10, x_start=-1e-6, pre_charge=4, post_charge=2)
    one = write_wfm(tmp_path / "one.wfm", raw, **kwargs)
    with WfmWriter(tmp_path / "blocks.wfm", 9, 333, np.int16, **kwargs) as w:
        for block in (raw[:2], raw[2:3], raw[3], raw[4:9]):
            w.write_frames(block)
        assert not (tmp_path / "blocks.wfm").exists()  # only the temporary name so far
    assert (tmp_path / "blocks.wfm").read_bytes() == Path(one).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocks.wfm", "one.wfm"]


def test_missing_frames_raise_and_leave_no_file(tmp_path):
    w = WfmWriter(tmp_path / "short.wfm", 4, 10, "i2", y_scale=1e-3, x_spacing=1e-9,
                  x_start=0.0)
    w.write_frames(_codes("i2", 3, 10))
    with pytest.raises(RatagError, match="expected 4 frames, found 3"):
        w.close()
    assert list(tmp_path.iterdir()) == []


def test_too_many_frames_raise(tmp_path):
    with pytest.raises(WfmError, match="expected 2 frames"):
        with WfmWriter(tmp_path / "long.wfm", 2, 10, "i1", y_scale=1e-3, x_spacing=1e-9,
                       x_start=0.0) as w:
            w.write_frames(_codes("i1", 3, 10))
    assert list(tmp_path.iterdir()) == []


def test_error_inside_context_removes_partial_file(tmp_path):
    with pytest.raises(KeyError):
        with WfmWriter(tmp_path / "x.wfm", 2, 10, "i2", y_scale=1e-3, x_spacing=1e-9,
                       x_start=0.0) as w:
            w.write_frames(_codes("i2", 1, 10))
            raise KeyError("simulated failure")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(dtype="f8"), "int8, int16 or float32"),
        (dict(byte_order="="), "byte_order"),
        (dict(n_frames=0), ">= 1 frame"),
        (dict(y_scale=float("nan")), "y_scale must be finite"),
        (dict(gmt_sec=[0.5, 1]), "whole seconds"),
        (dict(gmt_frac=[0.0]), r"gmt_frac: expected shape \(2,\)"),
    ],
)
def test_bad_arguments_raise_before_creating_a_file(tmp_path, kwargs, message):
    args = dict(n_frames=2, n_samples=10, dtype="i2", y_scale=1e-3, x_spacing=1e-9,
                x_start=0.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        WfmWriter(tmp_path / "bad.wfm", **args)
    assert list(tmp_path.iterdir()) == []


def test_block_of_wrong_shape_or_dtype_is_refused(tmp_path):
    with WfmWriter(tmp_path / "b.wfm", 1, 10, "i1", y_scale=1e-3, x_spacing=1e-9,
                   x_start=0.0) as w:
        with pytest.raises(ValueError, match=r"\(k, 10\)"):
            w.write_frames(np.zeros((1, 11), np.int8))
        with pytest.raises(ValueError, match="cast safely"):
            w.write_frames(np.zeros((1, 10), np.int16))
        w.write_frames(np.zeros((1, 10), np.int8))
    assert (tmp_path / "b.wfm").exists()


def test_float32_curves_round_trip_with_nan(tmp_path):
    raw = np.random.default_rng(5).normal(size=(3, 64)).astype(np.float32)
    raw[1] = np.nan
    path = write_wfm(tmp_path / "f.wfm", raw, y_scale=1e-3, x_spacing=1e-9, x_start=-1e-6)
    with read_wfm(path) as wfm:
        assert wfm.raw_dtype == np.float32
        np.testing.assert_array_equal(wfm.frames(), raw)
