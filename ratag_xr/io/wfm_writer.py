"""Write Tektronix FastFrame WFM (version 3) files, streaming frame blocks to disk.

Used by the run simulator and by tests: a file written here has the header a Tektronix
oscilloscope writes (layout in :mod:`ratag_xr.io.wfm_header`), is read back exactly by
:func:`ratag_xr.io.wfm.read_wfm`, and carries the trailing sum-of-bytes checksum Tektronix
files end with.  The whole header is known up front (time stamps are arguments), so it is
written first and the curve buffer is then appended block by block: memory use is one block.

A file is written under a temporary name in the target folder and renamed on a successful
:meth:`WfmWriter.close`; a half-written file never has the final name.  With
``progressive=True`` it is written the way the oscilloscope writes it instead: at its final
name, the header first (with the final sizes), then each block of frames as it comes and
the checksum last, so that a reader sees a growing file that is shorter than its header
declares until the last byte (:func:`ratag_xr.io.wfm.is_complete`).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np

from ratag_xr.errors import WfmError
from ratag_xr.io import wfm_header as layout

#: numpy dtype -> version-3 explicit format code (the writer supports the scope's codes)
_FORMAT_CODES = {np.dtype("i1"): 7, np.dtype("i2"): 0, np.dtype("f4"): 4}
_VERSION = 3


def _per_frame(values, n_frames: int, default, dtype, name: str) -> np.ndarray:
    """A (n_frames,) array of ``values`` (or of ``default``) as ``dtype``."""
    out = np.asarray(default if values is None else values, dtype=dtype)
    if out.shape != (n_frames,):
        raise ValueError(f"{name}: expected shape ({n_frames},), got {out.shape}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name}: values must be finite")
    return out


class WfmWriter:
    """Streaming writer of one FastFrame WFM v3 file (a context manager).

    Parameters
    ----------
    path : output file (``.wfm``)
    n_frames, n_samples : frames in the file and kept samples per frame (pre/post-charge
        points excluded)
    dtype : ``int8`` or ``int16`` raw codes (``float32`` for tests of float curves)
    y_scale : volts per code; y_offset : volts (volts = code * y_scale + y_offset)
    x_spacing : seconds per sample; x_start : seconds, time of the first kept sample
        relative to the trigger
    gmt_sec, gmt_frac : per-frame trigger time stamps (Unix seconds, fraction of a second);
        default 0, 1, 2, ... s and fraction 0
    tt_offsets : per-frame trigger position between samples (fraction of a sample), default 0
    pre_charge, post_charge : interpolation points stored before/after each frame's data
        (filled with the frame's first/last sample); 0 by default
    byte_order : ``"<"`` little-endian (default, as Intel-based scopes write) or ``">"``
    progressive : write at ``path`` itself, as a scope does (header first, frames appended,
        :meth:`flush` to push them to the file system); a file left unfinished (fewer
        frames than declared, an error, :meth:`abort`) stays as it is, shorter than its
        header says, like the file of an acquisition that stopped.  Default: a temporary
        name, renamed on :meth:`close`.
    """

    def __init__(
        self,
        path,
        n_frames,
        n_samples,
        dtype,
        *,
        y_scale,
        y_offset=0.0,
        x_spacing,
        x_start,
        gmt_sec=None,
        gmt_frac=None,
        tt_offsets=None,
        pre_charge=0,
        post_charge=0,
        byte_order="<",
        progressive=False,
    ):
        self.path = Path(path)
        self.progressive = bool(progressive)
        self.dtype = np.dtype(dtype)
        if self.dtype not in _FORMAT_CODES:
            raise ValueError(f"dtype must be int8, int16 or float32, got {self.dtype}")
        if byte_order not in ("<", ">"):
            raise ValueError(f"byte_order must be '<' or '>', got {byte_order!r}")
        self.n_frames, self.n_samples = int(n_frames), int(n_samples)
        self.pre_charge, self.post_charge = int(pre_charge), int(post_charge)
        if self.n_frames < 1 or self.n_samples < 1:
            raise ValueError(f"need >= 1 frame and sample, got {n_frames} x {n_samples}")
        if self.pre_charge < 0 or self.post_charge < 0:
            raise ValueError("pre_charge and post_charge must be >= 0")
        for name, value in (("y_scale", y_scale), ("y_offset", y_offset),
                            ("x_spacing", x_spacing), ("x_start", x_start)):
            if not np.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        if y_scale == 0 or x_spacing <= 0:
            raise ValueError("y_scale must be non-zero and x_spacing positive")
        self.byte_order = byte_order
        self._file_dtype = self.dtype.newbyteorder(byte_order)
        n = self.n_frames
        gmt = _per_frame(gmt_sec, n, np.arange(n), np.float64, "gmt_sec")
        if np.any(gmt != np.round(gmt)) or np.any(np.abs(gmt) >= 2**31):
            raise ValueError("gmt_sec must be whole seconds that fit a signed 32-bit integer")
        frac = _per_frame(gmt_frac, n, np.zeros(n), np.float64, "gmt_frac")
        tt = _per_frame(tt_offsets, n, np.zeros(n), np.float64, "tt_offsets")
        record = self.pre_charge + self.n_samples + self.post_charge
        self._record_bytes = record * self.dtype.itemsize
        if self._record_bytes >= 2**32:
            raise ValueError("a frame record must be smaller than 4 GiB")

        header, tables = self._header(
            float(y_scale), float(y_offset), float(x_spacing), float(x_start),
            gmt.astype(np.int32), frac, tt,
        )
        # a unique hidden name in the target folder (so the final rename is atomic), created
        # exclusively with the usual permissions
        token = f"{os.getpid()}.{secrets.token_hex(4)}"
        if self.progressive:  # a new file at the final name, as the scope makes it
            self.path.unlink(missing_ok=True)
            self._tmp = self.path
        else:
            self._tmp = self.path.with_name(f".{self.path.name}.{token}.partial")
        self._file = open(self._tmp, "xb", buffering=0)  # closed in close()/abort()
        self._frames_written = 0
        self._checksum = 0
        self._write_bytes(np.frombuffer(header + tables, dtype=np.uint8))

    # -- header ---------------------------------------------------------------------------------

    def _header(self, y_scale, y_offset, x_spacing, x_start, gmt, frac, tt):
        """Bytes of the fixed header and of the FastFrame tables of frames 2..N."""
        n, bo, item = self.n_frames, self.byte_order, self.dtype.itemsize
        fixed = layout.header_size(_VERSION)
        curve_offset = fixed + (n - 1) * layout.FRAME_TABLE_BYTES
        total = curve_offset + n * self._record_bytes + layout.CHECKSUM_SIZE
        bytes_to_eof = total - 15  # counted from the byte after the bytes-per-point field
        # float curves: the header's integer range fields get the int32 limits
        limits = np.iinfo(self.dtype if self.dtype.kind == "i" else np.int32)
        code_max, code_min = int(limits.max), int(limits.min)
        record = self._record_bytes // item
        curve = {
            "state_flags": 0,
            "checksum_type": 0,
            "checksum": 0,
            "precharge_start": 0,
            "data_start": self.pre_charge * item,
            "postcharge_start": (self.pre_charge + self.n_samples) * item,
            "postcharge_stop": self._record_bytes,
            "end_of_curve_buffer": self._record_bytes,
        }
        values = {name: 0 for name, _ in layout.header_fields(_VERSION)}
        values.update({
            name: b"" for name, code in layout.header_fields(_VERSION) if code.endswith("s")
        })
        values.update(
            byte_order=b"\x0f\x0f" if bo == "<" else b"\xf0\xf0",
            version=b":WFM#003",
            digits_in_byte_count=len(str(bytes_to_eof)),
            bytes_to_eof=bytes_to_eof,
            bytes_per_point=item,
            curve_offset=curve_offset,
            h_zoom_scale=1,
            v_zoom_scale=1.0,
            n_frames_minus_one=n - 1,
            header_size=fixed - 78,  # bytes after the static file info, as scopes write it
            set_type=layout.SET_TYPE_FASTFRAME if n > 1 else layout.SET_TYPE_SINGLE,
            wfm_count=1,
            update_spec_count=n,
            imp_dim_count=1,
            exp_dim_count=1,
            data_type=layout.DATA_TYPE_VECTOR,
            accumulated_wfm_count=1,
            target_accumulation_count=1,
            curve_ref_count=1,
            n_requested_fastframes=n if n > 1 else 0,
            n_acquired_fastframes=n if n > 1 else 0,
            exp1_scale=y_scale,
            exp1_offset=y_offset,
            exp1_units=b"V",
            exp1_extent_min=code_min * y_scale + y_offset,
            exp1_extent_max=code_max * y_scale + y_offset,
            exp1_resolution=y_scale,
            exp1_format=_FORMAT_CODES[self.dtype],
            exp1_storage_type=layout.STORAGE_SAMPLE,
            exp1_over_range=code_max,
            exp1_under_range=code_min,
            exp1_high_range=code_max,
            exp1_low_range=code_min,
            exp1_view_scale=1.0,
            exp1_view_units=b"V",
            exp1_view_point_density=1.0,
            exp1_view_h_ref=50.0,
            exp2_format=9,  # no second dimension
            exp2_storage_type=6,
            imp1_scale=x_spacing,
            imp1_offset=x_start,
            imp1_size=record,  # whole record incl. pre/post-charge, as scopes write it
            imp1_units=b"s",
            imp1_extent_min=x_start,
            imp1_extent_max=x_start + (self.n_samples - 1) * x_spacing,
            imp1_resolution=x_spacing,
            imp1_spacing=1,
            imp1_view_scale=1.0,
            imp1_view_units=b"s",
            imp1_view_point_density=1.0,
            imp1_view_h_ref=50.0,
            tb1_real_point_spacing=1,
            tb1_sweep=1,  # sample mode
            tb1_type_of_base=layout.BASE_TIME,
            tb2_sweep=3,  # invalid: no second time base
            tb2_type_of_base=3,
            real_point_offset=0,
            tt_offset=tt[0],
            frac_sec=frac[0],
            gmt_sec=gmt[0],
            **curve,
        )
        header = layout.pack_header(values, _VERSION, bo)
        updates = np.zeros(n - 1, dtype=layout.update_spec_dtype(bo))
        updates["tt_offset"], updates["frac_sec"], updates["gmt_sec"] = tt[1:], frac[1:], gmt[1:]
        curves = np.zeros(n - 1, dtype=layout.curve_object_dtype(bo))
        for name, value in curve.items():
            curves[name] = value
        return header, updates.tobytes() + curves.tobytes()

    # -- curve ----------------------------------------------------------------------------------

    def _write_bytes(self, data: np.ndarray) -> None:
        """Append a contiguous array to the file and to the running byte sum."""
        raw = data.reshape(-1).view(np.uint8)
        self._checksum += int(np.add.reduce(raw, dtype=np.uint64))
        view = memoryview(raw)
        while view.nbytes:  # raw files may write less than asked
            view = view[self._file.write(view):]

    def write_frames(self, block) -> None:
        """Append frames: ``block`` is (k, n_samples) (or (n_samples,) for one frame).

        Integer codes of another dtype are accepted when they cast safely to ``dtype``.
        """
        if self._file is None:
            raise WfmError(self.path, "writer is closed")
        block = np.asarray(block)
        if block.ndim == 1:
            block = block[np.newaxis]
        if block.ndim != 2 or block.shape[1] != self.n_samples:
            raise ValueError(f"block must be (k, {self.n_samples}), got {block.shape}")
        if not np.can_cast(block.dtype, self.dtype, "safe"):
            raise ValueError(f"block dtype {block.dtype} does not cast safely to {self.dtype}")
        k = block.shape[0]
        if self._frames_written + k > self.n_frames:
            raise WfmError(
                self.path,
                f"expected {self.n_frames} frames, got {self._frames_written + k} "
                f"({self._frames_written} written + block of {k})",
            )
        if self.pre_charge or self.post_charge:
            out = np.empty((k, self._record_bytes // self.dtype.itemsize), self._file_dtype)
            p = self.pre_charge
            out[:, :p] = block[:, :1]
            out[:, p : p + self.n_samples] = block
            out[:, p + self.n_samples :] = block[:, -1:]
        elif block.dtype == self._file_dtype and block.flags.c_contiguous:
            out = block
        else:
            out = np.ascontiguousarray(block, dtype=self._file_dtype)
        self._write_bytes(out)
        self._frames_written += k

    @property
    def frames_written(self) -> int:
        return self._frames_written

    def flush(self) -> None:
        """Push what was written to the file system (fsync): readers on other machines of a
        shared file system then see the file grow piece by piece.  (Writes are unbuffered,
        so a reader on this machine sees every block as soon as it is written.)"""
        if self._file is not None:
            os.fsync(self._file.fileno())

    def close(self) -> Path:
        """Finish the file (checksum) and give it its final name; returns the path.

        Raises :class:`~ratag_xr.errors.WfmError` when fewer frames than declared were
        written (and removes the partial file, unless ``progressive``).
        """
        if self._file is None:
            return self.path
        if self._frames_written != self.n_frames:
            missing = self._frames_written
            self.abort()
            left = "partial file left as written" if self.progressive else "partial file removed"
            raise WfmError(self.path, f"expected {self.n_frames} frames, found {missing} "
                                      f"written; {left}")
        try:
            checksum = np.array([self._checksum % 2**64], dtype=self.byte_order + "u8")
            self._file.write(checksum.tobytes())
            if self.progressive:
                os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            if not self.progressive:
                os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Close and delete the partial file without creating ``path`` (``progressive``:
        close it and leave it as written)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if not self.progressive:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> WfmWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # do not mask the original error with a "missing frames" one
            self.abort()

    def __del__(self):
        # a writer dropped without close() must not leave its temporary file behind
        if getattr(self, "_file", None) is not None:
            self.abort()


def write_wfm(
    path,
    raw,
    *,
    y_scale,
    y_offset=0.0,
    x_spacing,
    x_start,
    gmt_sec=None,
    gmt_frac=None,
    tt_offsets=None,
    pre_charge=0,
    post_charge=0,
    byte_order="<",
) -> Path:
    """Write ``raw`` int8/int16 codes, (n_frames, n_samples) or (n_samples,), as one WFM file.

    Keyword arguments as for :class:`WfmWriter`; returns the written path.
    """
    raw = np.asarray(raw)
    if raw.ndim == 1:
        raw = raw[np.newaxis]
    if raw.ndim != 2:
        raise ValueError(f"raw must be (n_frames, n_samples) or (n_samples,), got {raw.shape}")
    with WfmWriter(
        path,
        raw.shape[0],
        raw.shape[1],
        raw.dtype,
        y_scale=y_scale,
        y_offset=y_offset,
        x_spacing=x_spacing,
        x_start=x_start,
        gmt_sec=gmt_sec,
        gmt_frac=gmt_frac,
        tt_offsets=tt_offsets,
        pre_charge=pre_charge,
        post_charge=post_charge,
        byte_order=byte_order,
    ) as writer:
        writer.write_frames(raw)
    return Path(path)
