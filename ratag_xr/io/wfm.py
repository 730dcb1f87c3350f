"""Lazy, strict reader of Tektronix WFM files (versions 1-3, both byte orders, FastFrame).

:func:`read_wfm` reads only the fixed header and the small per-frame tables; the curve is
a read-only ``numpy.memmap`` viewed as (frame, sample) with each frame's pre- and
post-charge points excluded, so slicing frames touches only their bytes.

Every declared size and offset is checked against the file size and against each other
before the curve is touched: a truncated, inconsistent or unsupported file raises a typed
error of :mod:`ratag_xr.errors` that names the file and says what was expected and what was
found.  The reader never returns partial data and never allocates from an unchecked field.
Header layout: :mod:`ratag_xr.io.wfm_header`.

"Bytes to EOF" (counted from byte 15) must reach at least the end of the curve buffer and
fit the file: oscilloscopes count to the end of the file, Tektronix software to the end of
the 8-byte checksum that follows the curve (a metadata trailer may come after it).  The
checksum itself is not verified (that would read the whole file), and the "header size"
field is not used (Tektronix writers disagree on what it counts).
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np

from ratag_xr.errors import (
    NotAnalogWaveformError,
    RatagError,
    WfmError,
    WfmFormatError,
    WfmTruncatedError,
    WfmUnsupportedError,
)
from ratag_xr.io import wfm_header as layout

_CURVE_FIELDS = ("precharge_start", "data_start", "postcharge_start", "postcharge_stop")
#: buffers per vectored read (the POSIX minimum of IOV_MAX is 16, Linux allows 1024)
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16
_IOV_MAX = max(16, min(_IOV_MAX, 1024)) if _IOV_MAX > 0 else 16


class WfmFile:
    """One WFM file: header scaling, per-frame time stamps and lazily mapped raw codes.

    Attributes
    ----------
    path : the file; version : 1, 2 or 3; byte_order : ``"<"`` or ``">"``
    n_frames : frames in the file (1 for a single-waveform file)
    n_samples : samples per frame, pre/post-charge points removed
    raw_dtype : native-order dtype of the raw codes
    y_scale : volts per code; y_offset : volts (volts = code * y_scale + y_offset)
    x_spacing : seconds per sample
    x_start : seconds, time of the first kept sample relative to the trigger (the implicit
        dimension's offset, common to all frames, as Tektronix's reader reports it)
    raw : (n_frames, n_samples) read-only memory-mapped codes, in the file's byte order
    gmt_sec, gmt_frac : (n_frames,) trigger time stamp, Unix seconds and fraction of a second
    tt_offsets : (n_frames,) trigger position after the time stamp, fraction of a sample
    """

    def __init__(self, path: Path, info: dict):
        self.path = path
        self.version: int = info["version"]
        self.byte_order: str = info["byte_order"]
        self.n_frames: int = info["n_frames"]
        self.n_samples: int = info["n_samples"]
        self.raw_dtype: np.dtype = info["dtype"]
        self.y_scale: float = info["y_scale"]
        self.y_offset: float = info["y_offset"]
        self.x_spacing: float = info["x_spacing"]
        self.x_start: float = info["x_start"]
        self.gmt_sec: np.ndarray = info["gmt_sec"]
        self.gmt_frac: np.ndarray = info["gmt_frac"]
        self.tt_offsets: np.ndarray = info["tt_offsets"]
        self._curve_offset: int = info["curve_offset"]
        self._record_bytes: int = info["record_bytes"]
        self._data_start: int = info["data_start"]
        self._memmap: np.memmap | None = np.memmap(
            path,
            dtype=self.raw_dtype.newbyteorder(self.byte_order),
            mode="r",
            offset=self._curve_offset,
            shape=(self.n_frames * self._record_bytes // self.raw_dtype.itemsize,),
        )
        per_frame = self._memmap.reshape(self.n_frames, -1)
        first = self._data_start // self.raw_dtype.itemsize
        self.raw: np.ndarray = per_frame[:, first : first + self.n_samples]

    def __repr__(self) -> str:
        return (
            f"WfmFile({str(self.path)!r}, v{self.version}, {self.n_frames} frames x "
            f"{self.n_samples} {self.raw_dtype} samples)"
        )

    def byte_layout(self) -> dict:
        """Where the frames are in the file: ``curve_offset`` (bytes before the first
        record), ``record_bytes`` (one frame's record, pre/post-charge points included) and
        ``data_start`` (bytes of pre-charge points at the start of each record)."""
        return {"curve_offset": self._curve_offset, "record_bytes": self._record_bytes,
                "data_start": self._data_start}

    @property
    def time(self) -> np.ndarray:
        """(n_samples,) float64 seconds relative to the trigger: x_start + i * x_spacing."""
        with np.errstate(over="ignore", invalid="ignore"):
            return self.x_start + np.arange(self.n_samples, dtype=np.float64) * self.x_spacing

    @property
    def trigger_time(self) -> np.ndarray:
        """(n_frames,) datetime64[ns] trigger time stamps (NaT where the stamp is unusable)."""
        ns = np.round(self.gmt_frac * 1e9)
        usable = np.isfinite(ns) & (np.abs(ns) < 1e18)
        total = self.gmt_sec.astype(np.int64) * 10**9 + np.where(usable, ns, 0).astype(np.int64)
        return np.where(usable, total, np.iinfo(np.int64).min).astype("datetime64[ns]")

    def _frame_range(self, start, stop) -> tuple[int, int]:
        start, stop, _ = slice(start, stop).indices(self.n_frames)
        return start, max(start, stop)

    def frames(self, start=0, stop=None) -> np.ndarray:
        """Contiguous native-order copy of the raw codes of frames [start, stop)."""
        start, stop = self._frame_range(start, stop)
        out = np.empty((stop - start, self.n_samples), dtype=self.raw_dtype)
        if out.size == 0:
            return out
        # Reading straight into the output runs at numpy.fromfile speed (a copy out of the
        # memmap would pay a page fault per 4 KiB and a second pass).  Pre/post-charge
        # points are scattered into a discard buffer by the same vectored read.
        pre = self._data_start
        post = self._record_bytes - pre - out[0].nbytes
        discard = memoryview(bytearray(max(pre, post)))
        if pre == post == 0:
            buffers = [memoryview(out.reshape(-1)).cast("B")]
        else:
            buffers = []
            for row in out:
                buffers += [discard[:pre], memoryview(row).cast("B"), discard[:post]]
        offset = self._curve_offset + start * self._record_bytes
        with open(self.path, "rb", buffering=0) as f:
            _read_into(f, [b for b in buffers if b.nbytes], offset, self.path)
        if not self.raw_dtype.newbyteorder(self.byte_order).isnative:
            out.byteswap(inplace=True)
        return out

    def volts(self, start=0, stop=None) -> np.ndarray:
        """float64 volts of frames [start, stop): raw * y_scale + y_offset."""
        out = self.frames(start, stop).astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            out *= self.y_scale
            out += self.y_offset
        return out

    def close(self) -> None:
        """Drop the memory map (views handed out earlier keep their own reference)."""
        memmap, self._memmap = self._memmap, None
        self.raw = None
        if memmap is not None and memmap._mmap is not None:
            try:
                memmap._mmap.close()
            except BufferError:  # a view is still exported; the map closes with it
                pass

    def __enter__(self) -> WfmFile:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


def _read_into(f, buffers: list[memoryview], offset: int, path: Path) -> None:
    """Fill ``buffers`` in order from the bytes of ``f`` starting at ``offset``."""
    if not hasattr(os, "preadv"):  # platforms without vectored reads
        f.seek(offset)
        for buffer in buffers:
            _fill(f.readinto, buffer, path)
        return
    fd = f.fileno()
    for i in range(0, len(buffers), _IOV_MAX):
        group = buffers[i : i + _IOV_MAX]
        while group:
            n = os.preadv(fd, group, offset)
            if n <= 0:  # the file shrank after it was opened
                raise WfmTruncatedError(path, "file ended while reading the curve buffer")
            offset += n
            while group and n >= group[0].nbytes:  # drop the buffers filled completely
                n -= group[0].nbytes
                group = group[1:]
            if group and n:
                group[0] = group[0][n:]


def _fill(read, buffer: memoryview, path: Path) -> None:
    while buffer.nbytes:
        n = read(buffer)
        if not n:
            raise WfmTruncatedError(path, "file ended while reading the curve buffer")
        buffer = buffer[n:]


def read_wfm(path) -> WfmFile:
    """Open a Tektronix WFM file lazily; see :class:`WfmFile`.

    Raises
    ------
    WfmTruncatedError : the file is shorter than its header declares
    WfmFormatError : bad byte-order mark or sizes/offsets that contradict each other
    WfmUnsupportedError : unknown version, curve format, or a non-sampled waveform kind
    NotAnalogWaveformError : a digital or IQ waveform
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            info = _parse(path, f, size)
        return WfmFile(path, info)
    except RatagError:
        raise
    except OSError as exc:  # missing file, permission, ...: the caller sees the OS reason
        raise WfmError(path, f"cannot read file: {exc.strerror or exc}") from exc
    except (ValueError, OverflowError, MemoryError, IndexError, TypeError, struct.error) as exc:
        # Every field is validated before use, so this is a reader bug; still, never let
        # arbitrary bytes escape as a non-ratag_xr error.
        raise WfmFormatError(path, f"unreadable header ({type(exc).__name__}: {exc})") from exc


def _parse(path: Path, f, size: int) -> dict:
    """Validate the header of an open file of ``size`` bytes; returns what WfmFile needs."""
    start = f.read(10)
    if len(start) < 10:
        raise WfmTruncatedError(
            path, f"expected at least 10 bytes (byte-order mark and version), found {size} bytes"
        )
    byte_order = layout.BYTE_ORDER_MARKS.get(start[:2])
    if byte_order is None:
        raise WfmFormatError(
            path, f"byte-order mark: expected 0f0f or f0f0, found {start[:2].hex()}"
        )
    version = layout.VERSIONS.get(start[2:10])
    if version is None:
        raise WfmUnsupportedError(
            path, f"version: expected ':WFM#001', ':WFM#002' or ':WFM#003', found {start[2:10]!r}"
        )
    fixed = layout.header_size(version)
    if size < fixed:
        raise WfmTruncatedError(
            path, f"expected a {fixed}-byte version-{version} header, found {size} bytes in file"
        )
    h = layout.unpack_header(start + f.read(fixed - 10), version, byte_order)
    _check_kind(path, h, version)
    dtype = _curve_dtype(path, h, version)
    n_frames = _frame_count(path, h)
    tables_end = fixed + (n_frames - 1) * layout.FRAME_TABLE_BYTES
    if tables_end > size:
        raise WfmTruncatedError(
            path,
            f"FastFrame tables: expected {n_frames - 1} entries for {n_frames} frames, ending "
            f"at byte {tables_end}, found {size} bytes in file",
        )
    curve_offset = h["curve_offset"]
    if curve_offset < tables_end:
        raise WfmFormatError(
            path,
            f"curve offset: expected >= {tables_end} (end of header and frame tables), "
            f"found {curve_offset}",
        )
    layout_bytes = _curve_layout(path, h, dtype)
    record_bytes = layout_bytes["postcharge_stop"]
    n_samples = (layout_bytes["postcharge_start"] - layout_bytes["data_start"]) // dtype.itemsize
    _check_record_length(path, h, n_samples, record_bytes // dtype.itemsize)
    curve_end = curve_offset + n_frames * record_bytes
    if curve_end > size:
        raise WfmTruncatedError(
            path,
            f"curve buffer: expected {n_frames} frames x {record_bytes} bytes from byte "
            f"{curve_offset} to {curve_end}, found {size} bytes in file",
        )
    declared_end = 15 + h["bytes_to_eof"]
    if declared_end > size:
        raise WfmTruncatedError(
            path, f"file length: expected {declared_end} bytes (bytes-to-EOF field), found {size}"
        )
    if declared_end < curve_end:
        raise WfmFormatError(
            path,
            f"bytes-to-EOF field: expected the file to extend at least to the end of the curve "
            f"buffer at byte {curve_end}, found it declares {declared_end} bytes",
        )
    f.seek(fixed)
    tables = f.read(tables_end - fixed)
    stamps = _frame_stamps(path, h, tables, n_frames, byte_order, layout_bytes)
    scales = {
        "y_scale": h["exp1_scale"],
        "y_offset": h["exp1_offset"],
        "x_spacing": h["imp1_scale"],
        "x_start": h["imp1_offset"],
    }
    for name, value in scales.items():
        if not math.isfinite(value):
            raise WfmFormatError(path, f"{name}: expected a finite number, found {value}")
    if scales["x_spacing"] <= 0:
        raise WfmFormatError(
            path, f"sample spacing: expected > 0 s, found {scales['x_spacing']}"
        )
    return dict(
        version=version,
        byte_order=byte_order,
        n_frames=n_frames,
        n_samples=n_samples,
        dtype=dtype,
        curve_offset=curve_offset,
        record_bytes=record_bytes,
        data_start=layout_bytes["data_start"],
        **scales,
        **stamps,
    )


def _check_kind(path: Path, h: dict, version: int) -> None:
    """Refuse what is not one sampled analog trace on a time base."""
    if h["data_type"] == layout.DATA_TYPE_DIGITAL:
        raise NotAnalogWaveformError(path, "not an analog waveform: digital data (data type 6)")
    if h["exp1_storage_type"] == layout.STORAGE_MIN_MAX:
        raise NotAnalogWaveformError(
            path,
            "not an analog waveform: interleaved pairs (IQ or min/max storage type 1), "
            "expected sampled storage type 0",
        )
    checks = (
        ("data type", layout.DATA_TYPE_VECTOR, h["data_type"]),
        ("explicit storage type", layout.STORAGE_SAMPLE, h["exp1_storage_type"]),
        ("explicit dimension count", 1, h["exp_dim_count"]),
        ("implicit dimension count", 1, h["imp_dim_count"]),
        ("time base type", layout.BASE_TIME, h["tb1_type_of_base"]),
    )
    for what, expected, found in checks:
        if found != expected:
            raise WfmUnsupportedError(path, f"{what}: expected {expected}, found {found}")
    if version >= 2 and h["summary_frame_type"] != 0:
        raise WfmUnsupportedError(
            path,
            f"summary frame type: expected 0 (off), found {h['summary_frame_type']} "
            "(average/envelope frames are not PMT traces)",
        )


def _curve_dtype(path: Path, h: dict, version: int) -> np.dtype:
    code = h["exp1_format"]
    name = layout.CURVE_FORMATS[version].get(code)
    if name is None:
        raise WfmUnsupportedError(
            path, f"curve format code {code} is not a known version-{version} code"
        )
    if name not in layout.READABLE_DTYPES:
        raise WfmUnsupportedError(path, f"curve format {np.dtype(name)} (code {code})")
    dtype = np.dtype(name)
    if h["bytes_per_point"] != dtype.itemsize:
        raise WfmFormatError(
            path,
            f"bytes per point: expected {dtype.itemsize} for {dtype} codes, "
            f"found {h['bytes_per_point']}",
        )
    return dtype


def _frame_count(path: Path, h: dict) -> int:
    """Frames in the file: the header stores the count minus one."""
    n_frames = h["n_frames_minus_one"] + 1
    if h["set_type"] == layout.SET_TYPE_SINGLE and n_frames != 1:
        raise WfmFormatError(
            path, f"single-waveform file: expected 0 extra frames, found {n_frames - 1}"
        )
    if h["set_type"] not in (layout.SET_TYPE_SINGLE, layout.SET_TYPE_FASTFRAME):
        raise WfmUnsupportedError(
            path, f"waveform set type: expected 0 (single) or 1 (FastFrame), found {h['set_type']}"
        )
    return n_frames


def _curve_layout(path: Path, h: dict, dtype: np.dtype) -> dict:
    """Byte offsets of frame 1's pre-charge, data and post-charge points, checked."""
    offsets = {name: h[name] for name in _CURVE_FIELDS}
    values = [offsets[name] for name in _CURVE_FIELDS]
    if values[0] != 0:
        raise WfmFormatError(path, f"pre-charge start: expected 0, found {values[0]}")
    if values != sorted(values):
        raise WfmFormatError(
            path,
            "curve offsets: expected pre-charge start <= data start <= post-charge start <= "
            f"post-charge stop, found {values}",
        )
    for name, value in offsets.items():
        if value % dtype.itemsize:
            raise WfmFormatError(
                path, f"{name} offset {value}: expected a multiple of {dtype.itemsize} bytes"
            )
    if offsets["postcharge_start"] == offsets["data_start"]:
        raise WfmFormatError(path, "curve data: expected at least one data point, found 0")
    return offsets


def _check_record_length(path: Path, h: dict, n_samples: int, n_record: int) -> None:
    """The implicit dimension counts the data points, with or without pre/post-charge."""
    declared = h["imp1_size"]
    if declared not in (n_samples, n_record):
        expected = f"{n_samples} (the curve's data points)"
        if n_record != n_samples:
            expected += f" or {n_record} (with pre/post-charge points)"
        raise WfmFormatError(
            path,
            f"record length: implicit dimension declares {declared} points while the curve "
            f"holds {n_samples} data points; expected {expected}",
        )


def _frame_stamps(path, h, tables: bytes, n_frames, byte_order, first_curve) -> dict:
    """Per-frame trigger stamps; checks the curve objects of frames 2..N match frame 1."""
    n_extra = n_frames - 1
    updates = np.frombuffer(tables, layout.update_spec_dtype(byte_order), count=n_extra)
    curves = np.frombuffer(
        tables, layout.curve_object_dtype(byte_order), count=n_extra, offset=24 * n_extra
    )
    if n_extra:
        table = np.stack([curves[name].astype(np.int64) for name in _CURVE_FIELDS], axis=1)
        expected = np.array([first_curve[name] for name in _CURVE_FIELDS], dtype=np.int64)
        # some writers leave the per-frame curve objects zeroed: frames share frame 1's layout
        bad = ~(np.all(table == expected, axis=1) | np.all(table == 0, axis=1))
        if bad.any():
            k = int(np.argmax(bad))
            raise WfmFormatError(
                path,
                f"frame {k + 2} curve offsets: expected {expected.tolist()} (as frame 1), "
                f"found {table[k].tolist()}",
            )

    def column(first, name):
        return np.concatenate([[first], updates[name]]).astype(np.float64)

    return {
        "gmt_sec": column(h["gmt_sec"], "gmt_sec"),
        "gmt_frac": column(h["frac_sec"], "frac_sec"),
        "tt_offsets": column(h["tt_offset"], "tt_offset"),
    }


# ---------------------------------------------------------------- files being written

#: bytes of the header that say how long the file is: byte-order mark, version, digit
#: count and the bytes-to-EOF field (counted from the byte after it)
_SIZE_FIELDS_END = layout.field_offset(3, "bytes_per_point")


def expected_size(path) -> int | None:
    """Bytes a complete ``path`` has at least, from the first 15 bytes of its header alone
    (15 + the bytes-to-EOF field); None while the file is shorter than those 15 bytes.

    An oscilloscope writes the header first, with the final sizes, and then the curve
    (:class:`~ratag_xr.io.wfm_writer.WfmWriter` with ``progressive=True`` does the same):
    a file shorter than this is still being written, or was cut short.

    Raises :class:`~ratag_xr.errors.WfmFormatError` (bad byte-order mark) or
    :class:`~ratag_xr.errors.WfmUnsupportedError` (unknown version): such a file will not
    become a WFM file by growing.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(_SIZE_FIELDS_END)
    except OSError as exc:
        raise WfmError(path, f"cannot read file: {exc.strerror or exc}") from exc
    if len(head) >= 2 and head[:2] not in layout.BYTE_ORDER_MARKS:
        raise WfmFormatError(path, f"byte-order mark: expected 0f0f or f0f0, found "
                                   f"{head[:2].hex()}")
    if len(head) >= 10 and head[2:10] not in layout.VERSIONS:
        raise WfmUnsupportedError(path, "version: expected ':WFM#001', ':WFM#002' or "
                                        f"':WFM#003', found {head[2:10]!r}")
    if len(head) < _SIZE_FIELDS_END:
        return None
    byte_order = layout.BYTE_ORDER_MARKS[head[:2]]
    offset = layout.field_offset(3, "bytes_to_eof")  # the same in versions 1-3
    (bytes_to_eof,) = struct.unpack_from(byte_order + "I", head, offset)
    return offset + 4 + bytes_to_eof


def is_complete(path, previous_size: int | None = None) -> bool:
    """Whether ``path`` is a completely written WFM file: it holds at least the bytes its
    header declares (:func:`expected_size`) and, when ``previous_size`` is given (the size
    the caller saw at its previous look), it has not changed since.

    Reads only the first 15 bytes.  Oscilloscopes count the bytes to the end of the file;
    Tektronix software counts them to the end of the checksum and may append a metadata
    trailer after it, so "at least as declared and no longer growing" is the test: a
    follower of a run (``ratag-xr watch``) passes the size it saw one poll earlier.  A
    file that is complete but corrupt is complete here (the reader then says what is
    wrong with it).  A missing file is not complete; an unreadable one, or one that is
    not a WFM file, raises a :class:`~ratag_xr.errors.WfmError` naming it.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if previous_size is not None and size != previous_size:
        return False
    declared = expected_size(path)
    return declared is not None and size >= declared and path.stat().st_size == size
