"""Whether a `.wfm` file is completely written (``ratag_xr.io.wfm.is_complete``), on the real
Tektronix samples and on truncated copies of them, as a follower of a run sees files that
the oscilloscope is still writing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ratag_xr.errors import WfmError, WfmFormatError, WfmUnsupportedError
from ratag_xr.io.wfm import expected_size, is_complete, read_wfm
from ratag_xr.io.wfm_writer import WfmWriter
from tests.conftest import shared_dir

SAMPLES = shared_dir() / "wfm-samples"
#: every sample, the bad ones too: complete files whose content the reader refuses
NAMES = sorted(p.stem for p in SAMPLES.glob("*.wfm")) if SAMPLES.is_dir() else []
#: written by oscilloscopes: the bytes-to-EOF field counts to the end of the file; the
#: others (Tektronix software) append a metadata trailer the field does not count
SCOPE_WRITTEN = {"sample_1", "sample_ff1", "sample_ff2"}

needs_samples = pytest.mark.skipif(not NAMES, reason=f"WFM samples folder absent: {SAMPLES} "
                                                     "(set RATAG_SHARED)")


@needs_samples
@pytest.mark.parametrize("name", NAMES)
def test_real_files_are_complete_and_their_truncated_copies_are_not(name, tmp_path):
    src = SAMPLES / f"{name}.wfm"
    data = src.read_bytes()
    declared = expected_size(src)
    assert is_complete(src) and is_complete(src, previous_size=len(data))
    assert not is_complete(src, previous_size=len(data) - 1)  # it grew since the last look
    if name in SCOPE_WRITTEN:
        assert declared == len(data)
    else:  # the trailer after the checksum
        assert declared < len(data)
    if name in ("sample_ff1", "sample_ff2", "analog_waveform"):
        with read_wfm(src) as wfm:  # the declared size covers the curve and its checksum
            assert declared >= wfm._curve_offset + wfm.n_frames * wfm._record_bytes + 8
    copy = tmp_path / src.name
    for size in sorted({0, 1, 2, 9, 10, 14, 15, 16, 100, 838, declared // 2, declared - 8,
                        declared - 1}):
        copy.write_bytes(data[:size])
        assert not is_complete(copy), size
        assert not is_complete(copy, previous_size=size), size  # stable, but short
        assert expected_size(copy) == (None if size < 15 else declared), size
    copy.write_bytes(data[:declared])  # everything the header counts: complete
    assert is_complete(copy, previous_size=declared)


def test_a_missing_file_is_not_complete(tmp_path):
    assert not is_complete(tmp_path / "nothing.wfm")


def test_a_file_that_is_no_wfm_is_named_in_the_error(tmp_path):
    text = tmp_path / "notes.wfm"
    text.write_text("scope settings: 5 GS/s, FastFrame 988\n")
    with pytest.raises(WfmFormatError, match=r"notes\.wfm: byte-order mark"):
        is_complete(text)
    other = tmp_path / "future.wfm"
    other.write_bytes(b"\x0f\x0f:WFM#009" + bytes(20))
    with pytest.raises(WfmUnsupportedError, match=r"future\.wfm: version"):
        expected_size(other)


@needs_samples
def test_a_copy_growing_in_pieces_is_complete_only_at_its_last_byte(tmp_path):
    src = SAMPLES / "sample_ff2.wfm"  # 100 frames, ~1 MB, written by a scope
    data = src.read_bytes()
    copy = tmp_path / src.name
    seen = []
    with open(copy, "wb", buffering=0) as f:
        previous = None
        for start in range(0, len(data), 65536):
            f.write(data[start:start + 65536])
            seen.append(is_complete(copy, previous_size=previous))
            previous = copy.stat().st_size
    assert not any(seen[:-1])
    assert is_complete(copy, previous_size=previous)
    shutil.copyfile(src, tmp_path / "again.wfm")
    assert is_complete(tmp_path / "again.wfm")


def test_progressive_writer_grows_the_final_file_and_leaves_an_unfinished_one(tmp_path):
    path = tmp_path / "run_P1_1Wfm_Ch1.wfm"
    raw = np.arange(6 * 40, dtype=np.int16).reshape(6, 40)
    kwargs = dict(y_scale=1e-3, x_spacing=1e-9, x_start=-1e-8)
    writer = WfmWriter(path, 6, 40, "int16", progressive=True, **kwargs)
    sizes = [path.stat().st_size]  # the header, at the final name
    for k in range(3):
        writer.write_frames(raw[2 * k:2 * k + 2])
        writer.flush()
        sizes.append(path.stat().st_size)
        assert not is_complete(path, previous_size=sizes[-1])
    writer.close()
    assert sizes == sorted(sizes) and len(set(sizes)) == 4
    assert is_complete(path, previous_size=path.stat().st_size)
    assert path.stat().st_size == expected_size(path) == sizes[-1] + 8  # + the checksum
    batch = tmp_path / "batch.wfm"
    with WfmWriter(batch, 6, 40, "int16", **kwargs) as w:
        w.write_frames(raw)
    assert batch.read_bytes() == path.read_bytes()
    # an acquisition that stops: the file stays, shorter than declared, never complete
    cut = tmp_path / "cut.wfm"
    writer = WfmWriter(cut, 6, 40, "int16", progressive=True, **kwargs)
    writer.write_frames(raw[:2])
    with pytest.raises(WfmError, match=r"cut\.wfm: expected 6 frames, found 2 written; "
                                        "partial file left as written"):
        writer.close()
    assert cut.exists() and not is_complete(cut, previous_size=cut.stat().st_size)
    assert not list(tmp_path.glob(".*partial"))
