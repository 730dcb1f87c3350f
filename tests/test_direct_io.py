"""Chunk files written past the page cache (ingest.direct_io): the same bytes as through
it, at every length; the first write error of a task is raised; at most DEPTH chunks in
flight; a filesystem that refused O_DIRECT gets the page cache."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr

from ratag_xr.store import direct_io
from ratag_xr.store.chunks import ChunkWriter
from ratag_xr.store.direct_io import ALIGN, DEPTH, DirectWrites, use_direct, write_file

LINUX = hasattr(os, "O_DIRECT")


@pytest.mark.parametrize("n", [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, 3 * 2**20 + 7])
def test_a_file_written_directly_holds_exactly_its_bytes(tmp_path, n):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    write_file(tmp_path / "f", data)
    assert (tmp_path / "f").read_bytes() == data
    # a second, shorter file reuses the thread's buffer: no bytes of the first leak in
    write_file(tmp_path / "g", data[: n // 2])
    assert (tmp_path / "g").read_bytes() == data[: n // 2]


def test_background_chunk_files_equal_the_page_cache_ones_and_zarr_reads_them(tmp_path):
    from zarr.codecs import BloscCodec

    rng = np.random.default_rng(5)
    data = rng.integers(-300, 300, size=(2, 4 * 6, 1000)).astype(np.int16)
    for name in ("cached", "direct"):
        zarr.create_array(store=str(tmp_path / "s.zarr"), name=name, shape=data.shape,
                          chunks=(1, 6, 1000), dtype="int16", fill_value=0,
                          compressors=[BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")])
    cached = ChunkWriter(str(tmp_path / "s.zarr"), "cached")
    direct = ChunkWriter(str(tmp_path / "s.zarr"), "direct")
    with DirectWrites() as writes:
        for i in range(2):
            for j in range(4):
                block = data[i, 6 * j:6 * j + 6].copy()
                cached.write(i, j, block)
                direct.write(i, j, block, writes)
                block[:] = 0  # the caller's buffer is free as soon as write returns
    np.testing.assert_array_equal(
        zarr.open_array(str(tmp_path / "s.zarr"), path="direct")[:], data)
    for i in range(2):
        for j in range(4):
            key = ("c", str(i), str(j), "0")
            assert (tmp_path / "s.zarr" / "direct").joinpath(*key).read_bytes() == (
                tmp_path / "s.zarr" / "cached").joinpath(*key).read_bytes()
    assert not list((tmp_path / "s.zarr").rglob("*.partial"))


def test_the_first_write_error_is_raised_when_the_task_closes(tmp_path):
    (tmp_path / "not-a-folder").write_text("a file")
    writes = DirectWrites()
    writes.submit(tmp_path / "ok.partial", b"x" * 10, tmp_path / "ok")
    writes.submit(tmp_path / "not-a-folder" / "c.partial", b"y" * 10, tmp_path / "c")
    with pytest.raises(NotADirectoryError):
        writes.close()
    assert (tmp_path / "ok").read_bytes() == b"x" * 10  # the other write still finished


def test_a_task_has_at_most_depth_chunks_in_flight(tmp_path):
    writes = DirectWrites()
    for k in range(3 * DEPTH):
        writes.submit(tmp_path / f"{k}.partial", bytes(2 * ALIGN + k), tmp_path / str(k))
        assert len(writes._pending) <= DEPTH
    writes.close()
    assert sorted(int(p.name) for p in tmp_path.iterdir()) == list(range(3 * DEPTH))


def test_a_filesystem_that_refused_gets_the_page_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(direct_io, "_refused", {os.stat(tmp_path).st_dev})
    data = bytes(range(256)) * 100
    write_file(tmp_path / "f", data)
    assert (tmp_path / "f").read_bytes() == data


@pytest.mark.parametrize("mode,read_once,expected", [
    ("auto", True, LINUX), ("auto", False, False), ("on", False, LINUX), ("on", True, LINUX),
    ("off", True, False), ("off", False, False)])
def test_who_writes_directly(mode, read_once, expected):
    assert use_direct(mode, read_once) is expected


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="ingest.direct_io"):
        use_direct("always", True)
