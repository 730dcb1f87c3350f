"""Byte layout of the Tektronix WFM header (versions 1, 2 and 3).

The layout follows the "Performance Oscilloscope Reference Waveform File Format" manual
(Tektronix 077-0220-xx) as implemented by Tektronix's own readers (``tm_data_types`` and the
``tekwfm`` example).  In version 3 (little-endian) the fixed header is 838 bytes:

====== ===== =====================================================================
offset bytes block
====== ===== =====================================================================
0      78    static file info (byte-order mark, version, curve offset, frames - 1, ...)
78     76    waveform header (set type, data type, FastFrame counts, ...)
154    2     summary frame type (absent in version 1)
156    12    pixel map
168    2x160 explicit dimensions 1 and 2, each followed by its user view
488    2x136 implicit dimensions 1 and 2, each followed by its user view
760    24    time base 1 and 2
784    24    update spec of frame 1 (trigger time stamp)
808    30    curve object of frame 1 (pre/post-charge offsets)
====== ===== =====================================================================

Version 1 lacks the summary-frame field and versions 1 and 2 store the user-view point
density as a 4-byte integer instead of a double, so their fixed headers are 820 and 822
bytes.  A FastFrame file with N frames follows the fixed header with N - 1 update specs and
then N - 1 curve objects; the curve buffer (every frame's pre-charge, data and post-charge
points, frame after frame) starts at the curve offset of the static file info.

Fields are given as (name, struct code); names of repeated blocks get a prefix
(``exp1_scale``, ``imp1_offset``, ...).  The module only describes and packs/unpacks bytes:
checking what the values mean is the reader's job.
"""

from __future__ import annotations

import struct
from functools import cache

import numpy as np

#: byte-order mark -> struct/numpy byte-order character
BYTE_ORDER_MARKS = {b"\x0f\x0f": "<", b"\xf0\xf0": ">"}
#: version string -> version number
VERSIONS = {b":WFM#001": 1, b":WFM#002": 2, b":WFM#003": 3}

STATIC_FILE_INFO = (
    ("byte_order", "2s"),
    ("version", "8s"),
    ("digits_in_byte_count", "B"),
    ("bytes_to_eof", "I"),  # counted from byte 15 on
    ("bytes_per_point", "B"),
    ("curve_offset", "i"),  # byte offset of the curve buffer from the file start
    ("h_zoom_scale", "i"),
    ("h_zoom_position", "f"),
    ("v_zoom_scale", "d"),
    ("v_zoom_position", "f"),
    ("label", "32s"),
    ("n_frames_minus_one", "I"),  # "N": number of update specs/curve objects after the first
    ("header_size", "H"),
)
WAVEFORM_HEADER = (
    ("set_type", "i"),  # 0 single waveform, 1 FastFrame
    ("wfm_count", "I"),
    ("acquisition_counter", "Q"),
    ("transaction_stamp", "Q"),
    ("slot_id", "i"),
    ("is_static", "i"),
    ("update_spec_count", "I"),
    ("imp_dim_count", "I"),
    ("exp_dim_count", "I"),
    ("data_type", "i"),  # 2 vector (a sampled trace), 6 digital, ...
    ("gen_purpose_counter", "Q"),
    ("accumulated_wfm_count", "I"),
    ("target_accumulation_count", "I"),
    ("curve_ref_count", "I"),
    ("n_requested_fastframes", "I"),
    ("n_acquired_fastframes", "I"),
)
SUMMARY_FRAME = (("summary_frame_type", "H"),)  # versions 2 and 3 only
PIXEL_MAP = (("pixmap_display_format", "i"), ("pixmap_max_value", "Q"))
EXPLICIT_DIMENSION = (
    ("scale", "d"),  # volts per code
    ("offset", "d"),  # volts
    ("size", "I"),
    ("units", "20s"),
    ("extent_min", "d"),
    ("extent_max", "d"),
    ("resolution", "d"),
    ("ref_point", "d"),
    ("format", "i"),  # curve code type, see CURVE_FORMATS
    ("storage_type", "i"),  # 0 sample, 1 min/max (interleaved pairs), ...
    ("null_value", "i"),
    ("over_range", "i"),
    ("under_range", "i"),
    ("high_range", "i"),
    ("low_range", "i"),
)
IMPLICIT_DIMENSION = (
    ("scale", "d"),  # seconds per sample
    ("offset", "d"),  # seconds: time of the first data point relative to the trigger
    ("size", "I"),  # record length (data points, or data plus pre/post-charge points)
    ("units", "20s"),
    ("extent_min", "d"),
    ("extent_max", "d"),
    ("resolution", "d"),
    ("ref_point", "d"),
    ("spacing", "I"),
)
TIME_BASE = (("real_point_spacing", "I"), ("sweep", "i"), ("type_of_base", "i"))
UPDATE_SPEC = (
    ("real_point_offset", "I"),
    ("tt_offset", "d"),  # trigger position between samples, fraction of a sample
    ("frac_sec", "d"),  # fraction of a second of the trigger time stamp
    ("gmt_sec", "i"),  # whole seconds (Unix time) of the trigger time stamp
)
CURVE_OBJECT = (
    ("state_flags", "I"),
    ("checksum_type", "i"),
    ("checksum", "h"),
    ("precharge_start", "I"),  # byte offsets from the start of the frame's record
    ("data_start", "I"),
    ("postcharge_start", "I"),
    ("postcharge_stop", "I"),
    ("end_of_curve_buffer", "I"),
)

#: Explicit-dimension format code -> numpy dtype, per version (codes 6/7 exist from v3 on).
CURVE_FORMATS = {
    1: {0: "i2", 1: "i4", 2: "u4", 3: "u8", 4: "f4", 5: "f8"},
    2: {0: "i2", 1: "i4", 2: "u4", 3: "u8", 4: "f4", 5: "f8"},
    3: {0: "i2", 1: "i4", 2: "u4", 3: "u8", 4: "f4", 5: "f8", 6: "u1", 7: "i1"},
}
#: curve code types ratag_xr reads (unsigned 32/64-bit codes are not oscilloscope traces)
READABLE_DTYPES = frozenset({"i1", "u1", "i2", "i4", "f4", "f8"})

DATA_TYPE_VECTOR = 2
DATA_TYPE_DIGITAL = 6
STORAGE_SAMPLE = 0
STORAGE_MIN_MAX = 1  # interleaved pairs: IQ data or min/max envelopes
SET_TYPE_SINGLE = 0
SET_TYPE_FASTFRAME = 1
BASE_TIME = 0
#: bytes of the sum-of-bytes checksum that follows the curve buffer
CHECKSUM_SIZE = 8


def _user_view(version: int) -> tuple[tuple[str, str], ...]:
    density = "d" if version == 3 else "I"
    return (
        ("scale", "d"),
        ("units", "20s"),
        ("offset", "d"),
        ("point_density", density),
        ("h_ref", "d"),
        ("trig_delay", "d"),
    )


def _prefixed(prefix: str, block) -> list[tuple[str, str]]:
    return [(f"{prefix}_{name}", code) for name, code in block]


@cache
def header_fields(version: int) -> tuple[tuple[str, str], ...]:
    """All (name, struct code) fields of the fixed header of ``version``, in file order."""
    fields = list(STATIC_FILE_INFO) + list(WAVEFORM_HEADER)
    if version >= 2:
        fields += SUMMARY_FRAME
    fields += PIXEL_MAP
    view = _user_view(version)
    for i in (1, 2):
        fields += _prefixed(f"exp{i}", EXPLICIT_DIMENSION) + _prefixed(f"exp{i}_view", view)
    for i in (1, 2):
        fields += _prefixed(f"imp{i}", IMPLICIT_DIMENSION) + _prefixed(f"imp{i}_view", view)
    for i in (1, 2):
        fields += _prefixed(f"tb{i}", TIME_BASE)
    fields += UPDATE_SPEC + CURVE_OBJECT
    return tuple(fields)


@cache
def header_struct(version: int, byte_order: str) -> struct.Struct:
    """The packed (no padding) struct of the fixed header."""
    return struct.Struct(byte_order + "".join(code for _, code in header_fields(version)))


def header_size(version: int) -> int:
    """Bytes of the fixed header: 820 (v1), 822 (v2), 838 (v3)."""
    return header_struct(version, "<").size


def field_offset(version: int, name: str) -> int:
    """Byte offset of one header field from the start of the file."""
    offset = 0
    for field, code in header_fields(version):
        if field == name:
            return offset
        offset += struct.calcsize("<" + code)
    raise KeyError(name)


def unpack_header(buffer: bytes, version: int, byte_order: str) -> dict:
    """Decode the fixed header; ``buffer`` must hold at least ``header_size(version)`` bytes."""
    names = [name for name, _ in header_fields(version)]
    return dict(zip(names, header_struct(version, byte_order).unpack_from(buffer), strict=True))


def pack_header(values: dict, version: int, byte_order: str) -> bytes:
    """Encode the fixed header from a complete ``{field: value}`` mapping."""
    ordered = [values[name] for name, _ in header_fields(version)]
    return header_struct(version, byte_order).pack(*ordered)


def _table_dtype(block, byte_order: str) -> np.dtype:
    names = [name for name, _ in block]
    formats = [byte_order + code for _, code in block]
    offsets = np.cumsum([0] + [struct.calcsize("<" + code) for _, code in block])[:-1]
    return np.dtype({"names": names, "formats": formats, "offsets": offsets.tolist()})


def update_spec_dtype(byte_order: str) -> np.dtype:
    """Packed record of one update spec (24 bytes)."""
    return _table_dtype(UPDATE_SPEC, byte_order)


def curve_object_dtype(byte_order: str) -> np.dtype:
    """Packed record of one curve object (30 bytes)."""
    return _table_dtype(CURVE_OBJECT, byte_order)


#: bytes per FastFrame frame in the tables after the fixed header (update spec + curve object)
FRAME_TABLE_BYTES = struct.calcsize("<" + "".join(c for _, c in UPDATE_SPEC + CURVE_OBJECT))
