"""The reader against real Tektronix files decoded by Tektronix's own reader.

``shared/wfm-samples/NAME.expected.npz`` holds what ``tm_data_types`` 0.5.0 decodes from
``NAME.wfm`` (see that folder's README).  Every frame and sample, the time axis, the scaling
and the FastFrame time stamps must agree; the bad files must raise the right typed error.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ratag_xr.errors import NotAnalogWaveformError, WfmFormatError, WfmUnsupportedError
from ratag_xr.io.wfm import read_wfm

SHARED = Path(os.environ.get("RATAG_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SAMPLES = SHARED / "wfm-samples"

GOOD = ["sample_1", "sample_ff1", "sample_ff2", "analog_waveform", "data_test_waveform",
        "golden_analog"]
#: frames x samples and raw dtype, from the samples README (not from the files)
SHAPES = {
    "sample_1": (1, 1000, "int8"),
    "sample_ff1": (5, 1000, "int16"),
    "sample_ff2": (100, 10000, "int8"),
    "analog_waveform": (1, 50000, "int16"),
    "data_test_waveform": (1, 1000, "int16"),
    "golden_analog": (1, 6, "int16"),
}

needs_samples = pytest.mark.skipif(
    not SAMPLES.is_dir(), reason=f"WFM samples folder absent: {SAMPLES} (set RATAG_SHARED)"
)
pytestmark = needs_samples


@pytest.fixture(params=GOOD)
def sample(request):
    name = request.param
    expected = dict(np.load(SAMPLES / f"{name}.expected.npz"))
    with read_wfm(SAMPLES / f"{name}.wfm") as wfm:
        yield name, wfm, expected


def test_shape_and_scaling(sample):
    name, wfm, expected = sample
    n_frames, n_samples, dtype = SHAPES[name]
    assert (wfm.n_frames, wfm.n_samples) == (n_frames, n_samples)
    assert wfm.raw.shape == (n_frames, n_samples)
    assert wfm.raw_dtype == np.dtype(dtype) == np.dtype(str(expected["raw_dtype"]))
    assert wfm.y_scale == expected["y_spacing"]
    assert wfm.y_offset == expected["y_offset"]
    assert wfm.x_spacing == expected["x_spacing"]
    assert wfm.version == 3 and wfm.byte_order == "<"


def test_every_frame_and_sample_in_volts(sample):
    _, wfm, expected = sample
    volts = wfm.volts()
    assert volts.dtype == np.float64
    np.testing.assert_allclose(volts, expected["volts"], rtol=1e-12, atol=0)


def test_raw_codes_exact(sample):
    _, wfm, expected = sample
    codes = np.round((expected["volts"] - expected["y_offset"]) / expected["y_spacing"])
    np.testing.assert_array_equal(wfm.frames(), codes)
    np.testing.assert_array_equal(wfm.raw, codes)
    assert wfm.frames().flags.c_contiguous
    assert not wfm.raw.flags.writeable


def test_frame_slices(sample):
    _, wfm, expected = sample
    n = wfm.n_frames
    codes = np.round((expected["volts"] - expected["y_offset"]) / expected["y_spacing"])
    np.testing.assert_array_equal(wfm.frames(n - 1), codes[n - 1 :])
    np.testing.assert_array_equal(wfm.frames(0, 1), codes[:1])
    np.testing.assert_allclose(wfm.volts(n // 2, n), expected["volts"][n // 2 :], rtol=1e-12)
    assert wfm.frames(n, n).shape == (0, wfm.n_samples)


def test_time_axis(sample):
    _, wfm, expected = sample
    assert wfm.time.shape == expected["time"].shape
    assert wfm.x_start == expected["time"][0]
    # Tektronix's reader builds the axis with numpy.arange(start, stop, step), which rounds
    # differently from start + i * step; the two differ by < 1e-6 of a sample spacing.
    np.testing.assert_allclose(wfm.time, expected["time"], rtol=0, atol=1e-6 * wfm.x_spacing)


@pytest.mark.parametrize("name", ["sample_ff1", "sample_ff2"])
def test_fastframe_time_stamps(name):
    expected = np.load(SAMPLES / f"{name}.expected.npz")
    with read_wfm(SAMPLES / f"{name}.wfm") as wfm:
        np.testing.assert_array_equal(wfm.gmt_sec, expected["gmt_sec"])
        np.testing.assert_array_equal(wfm.gmt_frac, expected["gmt_frac"])
        np.testing.assert_array_equal(wfm.tt_offsets, expected["tt_offsets"])
        stamps = wfm.trigger_time
    seconds = stamps.astype("datetime64[s]")
    np.testing.assert_array_equal(seconds.astype(np.int64), expected["gmt_sec"])
    ns = (stamps - seconds).astype(np.int64)
    np.testing.assert_allclose(ns * 1e-9, expected["gmt_frac"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ["sample_1", "analog_waveform", "golden_analog"])
def test_single_waveform_has_one_stamp(name):
    with read_wfm(SAMPLES / f"{name}.wfm") as wfm:
        assert wfm.gmt_sec.shape == wfm.gmt_frac.shape == wfm.tt_offsets.shape == (1,)
        assert wfm.trigger_time.dtype == np.dtype("datetime64[ns]")


def test_fastframe_last_frame_and_charge_points():
    """The mistakes the README warns about: losing the last frame, shifted frames 2..N."""
    expected = np.load(SAMPLES / "sample_ff1.expected.npz")
    with read_wfm(SAMPLES / "sample_ff1.wfm") as wfm:
        assert wfm.n_frames == expected["volts"].shape[0] == 5
        np.testing.assert_allclose(wfm.volts(4, 5)[0], expected["volts"][4], rtol=1e-12)
        np.testing.assert_allclose(wfm.volts(1, 2)[0], expected["volts"][1], rtol=1e-12)


@pytest.mark.parametrize("name", ["digital_waveform", "iq_waveform"])
def test_digital_and_iq_are_refused(name):
    path = SAMPLES / f"{name}.wfm"
    with pytest.raises(NotAnalogWaveformError, match="not an analog waveform") as info:
        read_wfm(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["invalid_format", "invalid_tekmeta"])
def test_corrupt_samples_name_the_inconsistency(name):
    path = SAMPLES / f"{name}.wfm"
    with pytest.raises(WfmFormatError) as info:
        read_wfm(path)
    message = str(info.value)
    assert str(path) in message
    assert "implicit dimension declares 0 points" in message
    assert "6 data points" in message


# -- versions 1 and 2 ------------------------------------------------------------------------
# No version-1/2 oscilloscope file is in the samples, so real v3 files are re-encoded by byte
# surgery following the format manual: version 2 stores the user-view point density (at the
# four offsets below in v3) as a 4-byte integer instead of a double; version 1 also lacks the
# 2-byte summary-frame field at offset 154.
_V3_POINT_DENSITY = (304, 464, 600, 736)
_V3_HEADER = 838


def _as_version(data: bytes, version: int) -> bytes:
    header = bytearray(data[:_V3_HEADER])
    for offset in sorted(_V3_POINT_DENSITY, reverse=True):
        density = np.frombuffer(header, "<f8", count=1, offset=offset)[0]
        header[offset : offset + 8] = np.uint32(density).tobytes()
    if version == 1:
        del header[154:156]
    shrink = _V3_HEADER - len(header)
    header[2:10] = f":WFM#00{version}".encode()
    for offset, fmt in ((11, "<u4"), (16, "<i4")):  # bytes to EOF, curve offset
        value = int(np.frombuffer(header, fmt, count=1, offset=offset)[0]) - shrink
        header[offset : offset + 4] = np.array(value, fmt).tobytes()
    return bytes(header) + data[_V3_HEADER:]


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("name", ["sample_ff1", "analog_waveform"])  # int16 codes
def test_versions_1_and_2(tmp_path, name, version):
    data = _as_version((SAMPLES / f"{name}.wfm").read_bytes(), version)
    assert len(data) == (SAMPLES / f"{name}.wfm").stat().st_size - {1: 18, 2: 16}[version]
    path = tmp_path / f"{name}_v{version}.wfm"
    path.write_bytes(data)
    expected = np.load(SAMPLES / f"{name}.expected.npz")
    with read_wfm(path) as wfm:
        assert wfm.version == version
        np.testing.assert_allclose(wfm.volts(), expected["volts"], rtol=1e-12, atol=0)
        assert (wfm.x_start, wfm.x_spacing) == (expected["time"][0], expected["x_spacing"])
        if expected["tt_offsets"].size:
            np.testing.assert_array_equal(wfm.tt_offsets, expected["tt_offsets"])
            np.testing.assert_array_equal(wfm.gmt_frac, expected["gmt_frac"])


def test_int8_code_does_not_exist_before_version_3(tmp_path):
    path = tmp_path / "int8_v2.wfm"
    path.write_bytes(_as_version((SAMPLES / "sample_1.wfm").read_bytes(), 2))
    with pytest.raises(WfmUnsupportedError, match="code 7 is not a known version-2 code"):
        read_wfm(path)


@pytest.mark.parametrize("name", ["sample_ff2", "analog_waveform"])
def test_frames_without_vectored_reads(monkeypatch, name):
    """Platforms without os.preadv read the same frames buffer by buffer."""
    monkeypatch.delattr("os.preadv", raising=False)
    expected = np.load(SAMPLES / f"{name}.expected.npz")
    with read_wfm(SAMPLES / f"{name}.wfm") as wfm:
        np.testing.assert_allclose(wfm.volts(), expected["volts"], rtol=1e-12, atol=0)


def _bytes_read_by_process() -> int:
    """Bytes this process has read through read-like system calls (Linux /proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_lazy_reads_only_header_and_requested_frames():
    path = SAMPLES / "sample_ff2.wfm"  # 1 MB: 6184-byte header and tables, 100 x 10032 bytes
    before = _bytes_read_by_process()
    wfm = read_wfm(path)
    after_open = _bytes_read_by_process()
    with wfm:
        codes = wfm.frames(10, 12)
        after_frames = _bytes_read_by_process()
        assert codes.shape == (2, 10000)
    assert after_open - before < 6184 + 4096
    assert 2 * 10000 <= after_frames - after_open < 2 * 10032 + 4096
