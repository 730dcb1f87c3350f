"""Waveform chunks written and read as the files they are, without zarr's asynchronous
machinery in the hot loop.

A waveform array's codecs are the store's: little-endian bytes, then Blosc.  A chunk is
one file under the array's chunk key (``c/<set>/<chunk>/0``) holding one Blosc frame, so
numcodecs' Blosc with the same settings encodes and decodes it exactly as zarr does (byte
for byte: ``tests/test_store.py``).  Done in the task itself, 9 MB int16 chunks are written
at 1.2-1.5x and read at 1.5-2x zarr's speed from 1 and 2 threads
(``benchmarks/bench_chunks.py``, numbers in ``benchmarks/README.md``).  An array with any
other codecs is read and written through zarr, and zarr itself reads and writes the
metadata, the coordinates and everything else.
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from pathlib import Path

import numpy as np
import zarr

from ratag_xr.store.direct_io import DirectWrites, write_and_rename
from ratag_xr.store.layout import manifest_path

_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


def blosc_config(metadata) -> dict | None:
    """The numcodecs Blosc configuration equal to the array's codecs, or None when the
    array is not stored as little-endian bytes + Blosc (or has filters or shards)."""
    from zarr.codecs import BloscCodec, BytesCodec

    codecs = getattr(metadata, "codecs", ())
    if (len(codecs) != 2 or not isinstance(codecs[0], BytesCodec)
            or not isinstance(codecs[1], BloscCodec)
            or getattr(codecs[0].endian, "value", None) != "little"):
        return None
    blosc = codecs[1]
    if blosc.typesize not in (None, metadata.dtype.to_native_dtype().itemsize):
        return None
    return {"id": "blosc", "cname": blosc.cname.value, "clevel": int(blosc.clevel),
            "shuffle": _SHUFFLE[blosc.shuffle.value], "blocksize": int(blosc.blocksize)}


@lru_cache(maxsize=16)
def _codec(items: tuple):
    from numcodecs import get_codec

    return get_codec(dict(items))


def codec_of(config: dict):
    return _codec(tuple(sorted(config.items())))


class ChunkWriter:
    """Whole chunks of one waveform array, encoded here and written as the chunk files
    zarr would write for them (temporary file, then rename, as zarr's local store does)."""

    def __init__(self, store: str, path: str):
        arr = zarr.open_array(store=store, path=path, mode="r+")
        # zarr's path: whole chunks, not compared with the fill value first (a chunk of
        # padding zeros costs a few bytes)
        self.array = arr.with_config({"write_empty_chunks": True})
        self.metadata = arr.metadata
        self.folder = Path(store) / path
        config = blosc_config(self.metadata)
        self.codec = None if config is None else codec_of(config)
        self._dirs: set[Path] = set()

    def write(self, set_index: int, chunk_index: int, chunk: np.ndarray,
              writes: DirectWrites | None = None) -> None:
        """Chunk ``(set_index, chunk_index, 0)`` := ``chunk`` (frames, samples), a whole
        chunk (padding zeros included).  ``writes``: the file is written past the page
        cache in the background (:mod:`ratag_xr.store.direct_io`); ``chunk`` may be reused
        as soon as this returns."""
        if self.codec is None:
            frames = self.metadata.chunk_grid.chunk_shape[1]
            lo = chunk_index * frames
            self.array[set_index:set_index + 1, lo:lo + frames, :] = chunk[None]
            return
        little = np.ascontiguousarray(chunk, dtype=chunk.dtype.newbyteorder("<"))
        data = self.codec.encode(little)
        target = self.folder / self.metadata.encode_chunk_key((set_index, chunk_index, 0))
        if target.parent not in self._dirs:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(target.parent)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
        if writes is not None:
            writes.submit(tmp, data, target)
        else:
            write_and_rename(tmp, data, target, direct=False)


def chunk_writer(store: str, path: str) -> ChunkWriter:
    """The :class:`ChunkWriter` of array ``path`` of ``store``, made once per process for
    each version of the array's metadata: opening the array through zarr costs ~10 ms,
    once per raw file otherwise."""
    meta = Path(store) / path / "zarr.json"
    try:
        st = meta.stat()
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    except FileNotFoundError:
        stamp = None  # zarr says what is missing
    return _writer(str(store), path, stamp)


@lru_cache(maxsize=32)
def _writer(store: str, path: str, stamp) -> ChunkWriter:
    return ChunkWriter(store, path)


def _chunk_key(separator: str, index) -> str:
    """zarr's default chunk key of chunk ``index`` (``c/0/5/0`` with ``/``)."""
    return separator.join(["c", *map(str, index)])


def _direct_layout(meta) -> tuple[dict, str] | None:
    """(Blosc config, chunk key separator) of an array whose chunk files this module
    reads itself: little-endian bytes + Blosc under zarr's default chunk keys; else None."""
    config = blosc_config(meta)
    separator = getattr(meta.chunk_key_encoding, "separator", None)
    probe = (1,) * len(meta.shape)
    if config is None or separator is None or (
            meta.encode_chunk_key(probe) != _chunk_key(separator, probe)):
        return None
    return config, separator


def read_frames(store, path: str, row: int, slots) -> np.ndarray:
    """Frames ``slots`` (frame indices, increasing) of set ``row`` of the (set, frame,
    time) waveform array ``path`` of ``store``: only the chunk files holding them are read
    and decoded, here, without Dask (a figure's few frames); through zarr for other
    codecs and for chunks of more than one set or of part of a frame.  The fill value
    where no chunk was written."""
    arr = zarr.open_array(store=str(store), path=path, mode="r")
    meta = arr.metadata
    slots = np.asarray(slots, dtype=np.int64)
    direct = _direct_layout(meta)
    chunk_shape = tuple(meta.chunk_grid.chunk_shape)
    if direct is None or chunk_shape[0] != 1 or chunk_shape[2] != arr.shape[2]:
        return np.asarray(arr.get_orthogonal_selection((row, slots, slice(None))))
    config, separator = direct
    dtype = meta.dtype.to_native_dtype()
    out = np.empty((slots.size, arr.shape[2]), dtype=dtype)
    per = chunk_shape[1]
    which = slots // per
    buffer = np.empty(chunk_shape, dtype=dtype.newbyteorder("<"))
    for c in np.unique(which):
        take = which == c
        if _decode_chunk(Path(store) / path, separator, config, (row, int(c), 0), buffer):
            out[take] = buffer[0, slots[take] - c * per]
        else:
            out[take] = meta.fill_value
    return out


def _decode_chunk(folder: Path, separator: str, config: dict, index, out: np.ndarray) -> bool:
    """Chunk ``index``'s file decoded into ``out`` (the chunk's shape); False where no
    chunk was written (``out`` untouched)."""
    try:
        data = (folder / _chunk_key(separator, index)).read_bytes()
    except FileNotFoundError:
        return False
    codec_of(config).decode(data, out=out)
    return True


def _read_block(folder: str, separator: str, config: dict, chunk_shape: tuple, dtype: str,
                fill, block_id=None, block_info=None):
    """One dask block = one chunk file, decoded (the fill value where none was written)."""
    shape = tuple(block_info[None]["chunk-shape"])
    dtype = np.dtype(dtype)
    out = np.empty(chunk_shape, dtype=dtype.newbyteorder("<"))
    if not _decode_chunk(Path(folder), separator, config, block_id, out):
        return np.full(shape, fill, dtype=dtype)
    out = out[tuple(slice(0, n) for n in shape)]
    return out if out.dtype.isnative else out.astype(dtype)


def direct_waveform(store, path: str, lazy):
    """``lazy`` (the Dask array xarray opened for array ``path`` of ``store``) with each
    block read straight from its chunk file; ``lazy`` itself when its blocks are not the
    array's chunks or its codecs are not little-endian bytes + Blosc."""
    import dask.array as da  # here: a figure helper reads its frames without Dask
    from dask.base import tokenize

    arr = zarr.open_array(store=str(store), path=path, mode="r")
    meta = arr.metadata
    chunk_shape = tuple(meta.chunk_grid.chunk_shape)
    direct = _direct_layout(meta)
    if direct is None or any(
            any(c != size for c in dim[:-1]) or dim[-1] > size
            for dim, size in zip(lazy.chunks, chunk_shape, strict=True)):
        return lazy  # other codecs or chunk keys, or blocks that are not the chunks
    config, separator = direct
    dtype = meta.dtype.to_native_dtype()
    folder = str(Path(store) / path)
    # the manifest changes with every file recorded: blocks of a store that grew since
    # are never taken for those of an earlier opening
    try:
        st = manifest_path(store).stat()
        recorded = (st.st_size, st.st_mtime_ns)
    except FileNotFoundError:
        recorded = None
    name = "waveform-chunks-" + tokenize(folder, lazy.name, config, recorded)
    return da.map_blocks(_read_block, folder, separator, config, chunk_shape, dtype.str,
                         meta.fill_value, chunks=lazy.chunks, dtype=dtype, name=name,
                         meta=np.empty((0,) * lazy.ndim, dtype=dtype))
