"""Damaged WFM files: crafted corruptions and a fuzz test of the header parser.

Every corruption must raise its specific ratag_xr error naming the file; arbitrary bytes
must never make the reader raise anything else or return data that the file does not hold.
Byte offsets are those of the version-3 header (Tektronix's ``tekwfm`` example reader).
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ratag_xr.errors import (
    NotAnalogWaveformError,
    RatagError,
    WfmError,
    WfmFormatError,
    WfmTruncatedError,
    WfmUnsupportedError,
)
from ratag_xr.io import wfm_header
from ratag_xr.io.wfm import read_wfm
from ratag_xr.io.wfm_writer import write_wfm

SHARED = Path(os.environ.get("RATAG_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SAMPLES = SHARED / "wfm-samples"

N_FRAMES, N_SAMPLES, PRE, POST = 3, 64, 4, 4
CURVE_OFFSET = 838 + (N_FRAMES - 1) * 54  # 946
RECORD_BYTES = (PRE + N_SAMPLES + POST) * 2  # int16
FILE_SIZE = CURVE_OFFSET + N_FRAMES * RECORD_BYTES + 8


def _good_bytes(byte_order="<", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    raw = rng.integers(-3000, 3000, (N_FRAMES, N_SAMPLES), dtype=np.int16)
    with tempfile.TemporaryDirectory() as d:
        path = write_wfm(
            Path(d) / "good.wfm", raw, y_scale=1e-4, y_offset=0.1, x_spacing=2e-10,
            x_start=-1e-6, gmt_sec=[1e9, 1e9, 1e9 + 1], gmt_frac=[0.1, 0.5, 0.2],
            tt_offsets=[0.3, 0.4, 0.5], pre_charge=PRE, post_charge=POST,
            byte_order=byte_order,
        )
        return path.read_bytes()


GOOD = _good_bytes()


def _put(data: bytes, offset: int, fmt: str, value) -> bytes:
    out = bytearray(data)
    struct.pack_into("<" + fmt, out, offset, value)
    return bytes(out)


def _expect(tmp_path, data: bytes, error: type, *fragments: str, name="bad.wfm"):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(error) as info:
        read_wfm(path)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_crafted_file_is_valid(tmp_path):
    assert len(GOOD) == FILE_SIZE
    path = tmp_path / "good.wfm"
    path.write_bytes(GOOD)
    with read_wfm(path) as w:
        assert (w.n_frames, w.n_samples) == (N_FRAMES, N_SAMPLES)


# header block boundaries of version 3: static info, waveform header, summary frame, pixel
# map, explicit dims, implicit dims, time bases, update spec, curve object, frame tables
@pytest.mark.parametrize(
    "cut", [0, 2, 9, 10, 78, 154, 156, 168, 488, 760, 784, 808, 837, 838, 838 + 24]
)
def test_truncated_header(tmp_path, cut):
    _expect(tmp_path, GOOD[:cut], WfmTruncatedError, "expected", "found")


@pytest.mark.parametrize(
    "cut",
    [
        CURVE_OFFSET,  # no curve at all
        CURVE_OFFSET + 1,
        CURVE_OFFSET + RECORD_BYTES + 3,  # inside frame 2
        CURVE_OFFSET + N_FRAMES * RECORD_BYTES - 1,  # last byte of the curve missing
    ],
)
def test_truncated_curve(tmp_path, cut):
    _expect(tmp_path, GOOD[:cut], WfmTruncatedError, "curve buffer", f"found {cut} bytes")


@pytest.mark.parametrize("cut", [FILE_SIZE - 8, FILE_SIZE - 1])
def test_truncated_checksum(tmp_path, cut):
    """Every sample is there, but the file is shorter than its bytes-to-EOF field says."""
    _expect(tmp_path, GOOD[:cut], WfmTruncatedError, f"expected {FILE_SIZE} bytes",
            f"found {cut}")


def test_trailer_after_checksum_is_accepted(tmp_path):
    path = tmp_path / "trailer.wfm"
    path.write_bytes(GOOD + b"tekmeta!" + bytes(20))
    with read_wfm(path) as w:
        assert w.frames().shape == (N_FRAMES, N_SAMPLES)


def test_bytes_to_eof_before_curve_end(tmp_path):
    data = _put(GOOD, 11, "I", CURVE_OFFSET - 15)
    _expect(tmp_path, data, WfmFormatError, "bytes-to-EOF field",
            f"declares {CURVE_OFFSET} bytes")


@pytest.mark.parametrize("mark", [b"\x0f\xf0", b"\x00\x00", b"AB"])
def test_bad_byte_order_mark(tmp_path, mark):
    _expect(tmp_path, mark + GOOD[2:], WfmFormatError, "byte-order mark", mark.hex())


@pytest.mark.parametrize("version", [b":WFM#004", b":WFM#000", b"\xff" * 8])
def test_unknown_version(tmp_path, version):
    _expect(tmp_path, GOOD[:2] + version + GOOD[10:], WfmUnsupportedError, "version")


def test_declared_points_larger_than_file(tmp_path):
    # a consistent header (offsets and record length agree) for 10x the points on disk
    n = N_SAMPLES * 10
    data = _put(GOOD, 826, "I", (PRE + n) * 2)
    data = _put(data, 830, "I", (PRE + n + POST) * 2)
    data = _put(data, 504, "I", PRE + n + POST)
    for k in range(N_FRAMES - 1):  # the per-frame curve objects of frames 2..N agree too
        data = _put(data, 838 + 2 * 24 + k * 30 + 18, "I", (PRE + n) * 2)
        data = _put(data, 838 + 2 * 24 + k * 30 + 22, "I", (PRE + n + POST) * 2)
    _expect(tmp_path, data, WfmTruncatedError, "curve buffer: expected 3 frames x 1296 bytes")


def test_frame_count_larger_than_file(tmp_path):
    # one more frame declared and the curve moved accordingly: the curve no longer fits
    data = _put(GOOD, 72, "I", N_FRAMES)
    data = _put(data, 16, "i", CURVE_OFFSET + 54)
    _expect(tmp_path, data, WfmTruncatedError, "4 frames", f"found {FILE_SIZE} bytes")


@pytest.mark.parametrize("frames_minus_one", [10**6, 2**32 - 1])
def test_absurd_frame_count(tmp_path, frames_minus_one):
    data = _put(GOOD, 72, "I", frames_minus_one)
    _expect(tmp_path, data, WfmTruncatedError, f"{frames_minus_one + 1} frames")


def test_frame_tables_overlap_curve(tmp_path):
    data = _put(GOOD, 72, "I", N_FRAMES)  # 4 frames declared, curve offset left for 3
    _expect(tmp_path, data, WfmFormatError, "curve offset: expected >= 1000", "found 946")


@pytest.mark.parametrize("offset", [-5, 0, 100])
def test_curve_offset_inside_header(tmp_path, offset):
    _expect(tmp_path, _put(GOOD, 16, "i", offset), WfmFormatError, "curve offset")


@pytest.mark.parametrize("offset", [FILE_SIZE, 2**31 - 1])
def test_curve_offset_beyond_file(tmp_path, offset):
    _expect(tmp_path, _put(GOOD, 16, "i", offset), WfmTruncatedError, str(offset))


def test_zero_data_points(tmp_path):
    data = _put(GOOD, 826, "I", PRE * 2)  # post-charge starts where data starts
    _expect(tmp_path, data, WfmFormatError, "at least one data point")


@pytest.mark.parametrize(
    ("offset", "value", "fragment"),
    [
        (830, 2**32 - 1, "multiple of 2 bytes"),  # absurd post-charge stop, odd
        (826, 2**32 - 2, "post-charge start <= post-charge stop"),  # out of order
        (818, 2, "pre-charge start: expected 0"),
        (822, 3, "multiple of 2 bytes"),
    ],
)
def test_inconsistent_curve_offsets(tmp_path, offset, value, fragment):
    _expect(tmp_path, _put(GOOD, offset, "I", value), WfmFormatError, fragment)


def test_record_length_disagrees_with_curve(tmp_path):
    _expect(tmp_path, _put(GOOD, 504, "I", 65), WfmFormatError,
            "implicit dimension declares 65 points", "64 data points")


def test_frame_curve_object_differs(tmp_path):
    data = _put(GOOD, 838 + 2 * 24 + 30 + 18, "I", 100)  # frame 3's post-charge start
    _expect(tmp_path, data, WfmFormatError, "frame 3 curve offsets", "expected [0, 8, 136, 144]")


def test_bytes_per_point_disagrees_with_format(tmp_path):
    _expect(tmp_path, _put(GOOD, 15, "B", 1), WfmFormatError, "bytes per point: expected 2")


@pytest.mark.parametrize(("code", "fragment"), [(3, "uint64"), (8, "code 8"), (-1, "code -1")])
def test_unsupported_curve_format(tmp_path, code, fragment):
    _expect(tmp_path, _put(GOOD, 240, "i", code), WfmUnsupportedError, fragment)


def test_single_waveform_with_extra_frames(tmp_path):
    _expect(tmp_path, _put(GOOD, 78, "i", 0), WfmFormatError, "single-waveform file")


@pytest.mark.parametrize(("offset", "name"), [(168, "y_scale"), (488, "x_spacing"),
                                             (496, "x_start")])
def test_non_finite_scaling(tmp_path, offset, name):
    _expect(tmp_path, _put(GOOD, offset, "d", float("nan")), WfmFormatError, name)


def test_negative_sample_spacing(tmp_path):
    _expect(tmp_path, _put(GOOD, 488, "d", -2e-10), WfmFormatError, "sample spacing")


def test_digital_and_min_max_storage_are_not_analog(tmp_path):
    _expect(tmp_path, _put(GOOD, 122, "I", 6), NotAnalogWaveformError, "not an analog waveform")
    _expect(tmp_path, _put(GOOD, 244, "I", 1), NotAnalogWaveformError, "not an analog waveform")


@pytest.mark.parametrize(("offset", "value", "fragment"),
                         [(122, 3, "data type"), (768, 1, "time base type"),
                          (154, 1, "summary frame type"), (114, 2, "implicit dimension count")])
def test_other_waveform_kinds_unsupported(tmp_path, offset, value, fragment):
    fmt = "H" if offset == 154 else "I"
    _expect(tmp_path, _put(GOOD, offset, fmt, value), WfmUnsupportedError, fragment)


def test_big_endian_mark_on_little_endian_bytes(tmp_path):
    # a valid mark with the wrong byte order makes every size absurd: refused, not misread
    path = tmp_path / "swapped.wfm"
    path.write_bytes(b"\xf0\xf0" + GOOD[2:])
    with pytest.raises(WfmError) as info:
        read_wfm(path)
    assert isinstance(info.value, (WfmFormatError, WfmUnsupportedError))
    assert str(path) in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(WfmError, match="cannot read file"):
        read_wfm(tmp_path / "absent.wfm")
    with pytest.raises(WfmError, match="cannot read file"):
        read_wfm(tmp_path)


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"WFM samples folder absent: {SAMPLES}")
@pytest.mark.parametrize("cut", [10, 500, 838, 838 + 99 * 24, 6184, 6184 + 10032 * 50])
def test_truncated_real_fastframe_file(tmp_path, cut):
    data = (SAMPLES / "sample_ff2.wfm").read_bytes()[:cut]
    _expect(tmp_path, data, WfmTruncatedError, "expected", name="sample_ff2_cut.wfm")


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"WFM samples folder absent: {SAMPLES}")
def test_real_file_with_frame_count_beyond_file(tmp_path):
    data = _put((SAMPLES / "sample_ff1.wfm").read_bytes(), 72, "I", 5000)
    _expect(tmp_path, data, WfmTruncatedError, "5001 frames", name="sample_ff1_frames.wfm")


# -- fuzz ------------------------------------------------------------------------------------

def _fuzz_bases() -> list[bytes]:
    bases = [GOOD, _good_bytes(">", seed=1)]
    if SAMPLES.is_dir():
        bases += [(SAMPLES / n).read_bytes() for n in ("sample_ff1.wfm", "golden_analog.wfm")]
    return bases


BASES = _fuzz_bases()
#: (offset, struct code) of every fixed-header field of version 3
FIELDS = [
    (wfm_header.field_offset(3, name), code)
    for name, code in wfm_header.header_fields(3)
    if not code.endswith("s")
]
HEADER_POSITIONS = st.integers(0, 838 + 2 * 54)


@st.composite
def mutated_files(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(0, 4))):  # random header field values
        offset, code = draw(st.sampled_from(FIELDS))
        size = struct.calcsize(code)
        data[offset : offset + size] = draw(st.binary(min_size=size, max_size=size))
    for _ in range(draw(st.integers(0, 6))):  # byte flips, mostly in the header and tables
        position = draw(st.one_of(HEADER_POSITIONS, st.integers(0, len(data) - 1)))
        if position < len(data):
            data[position] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("wfm_fuzz")


@settings(max_examples=1000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=mutated_files())
def test_fuzz_only_typed_errors_or_consistent_files(fuzz_dir, data):
    path = fuzz_dir / "fuzz.wfm"
    path.write_bytes(data)
    try:
        wfm = read_wfm(path)
    except RatagError as exc:
        event(type(exc).__name__)  # shown by --hypothesis-show-statistics
        assert str(path) in str(exc)
        # the catch-all guard of read_wfm must stay unused: validation comes first
        assert "unreadable header" not in str(exc)
        return
    event("valid file")
    with wfm:
        item = wfm.raw_dtype.itemsize
        assert wfm.n_frames >= 1 and wfm.n_samples >= 1
        assert wfm._curve_offset + wfm.n_frames * wfm._record_bytes <= len(data)
        assert wfm.n_frames * wfm.n_samples * item <= len(data)
        codes = wfm.frames()
        assert codes.shape == wfm.raw.shape == (wfm.n_frames, wfm.n_samples)
        np.testing.assert_array_equal(codes, wfm.raw)
        assert wfm.volts(0, 1).shape == (1, wfm.n_samples)
        assert wfm.time.shape == (wfm.n_samples,)
        assert wfm.trigger_time.shape == wfm.gmt_sec.shape == (wfm.n_frames,)
