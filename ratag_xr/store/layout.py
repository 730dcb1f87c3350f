"""Layout of the Zarr waveform store: nodes, chunks, codecs and names.

The store is a Zarr v3 hierarchy::

    waveforms.manifest.jsonl   beside the store: one line per raw file event (append-only)
    waveforms.zarr/
      zarr.json          root attributes: run id, run parameters, codec, set -> node map
      axis0/             one node per distinct PMT time axis (and alpha time axis)
        waveform         (set, frame, time) raw PMT codes; mV = code * code_scale + code_offset
        alpha_waveform   (set, frame, alpha_time) raw alpha codes; V = code * alpha_code_scale
                         + alpha_code_offset (two-channel sets only)
        time, alpha_time µs
        set, gate, ...   per-set coordinates
        file, twin_key, frame_in_file, trigger_time, valid, code_scale, code_offset,
        alpha_file, alpha_valid, alpha_code_scale, alpha_code_offset
                         per-frame coordinates (set, frame)

Sets whose records differ in length, sample spacing, first-sample time or code type live in
different nodes, so no set is ever put on a wrong time axis.  The vertical scale is not part
of a node's key: each file's own scale and offset are stored per frame (``code_scale``,
``code_offset``), so a set whose volts/div changed between files keeps every frame.
Alpha monitor sets (``Ch4_noSCA``, ...) live in nodes that hold only ``alpha_waveform``.

Frame slots: each raw file owns a whole number of frame chunks, so every chunk holds
frames of exactly one file.  Files can then be written in parallel without two tasks
touching one chunk, and a new file never rewrites old chunks.  The price is a few
padding slots at the end of a file whose frame count is not a multiple of the chunk
length; padding has ``valid == False`` and costs nothing on disk (zeros compress away).
An alpha file fills the slots of its PMT twin in ``alpha_waveform``, chunked like
``waveform`` along ``frame``: one task can read both channels of the same frames.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from zarr.codecs import BloscCodec, BloscShuffle

#: 2: per-frame vertical scaling, twin keys and the alpha channel (1: scale per node)
FORMAT_VERSION = 2
STORE_NAME = "waveforms.zarr"


def manifest_path(store) -> Path:
    """The manifest lives beside the store (Zarr lists everything inside it as members)."""
    store = Path(store)
    return store.with_name(store.name.removesuffix(".zarr") + ".manifest.jsonl")
ATTRS_KEY = "ratag_xr"
NODE_PREFIX = "axis"


@dataclass(frozen=True)
class AxisKey:
    """What must be equal for two files of one channel to share a node (from the WFM header).

    The vertical scale is not part of it: it is stored per frame."""

    dtype: str  # numpy dtype string of the raw codes, e.g. "int16"
    n_samples: int
    x_spacing: float  # s
    x_start: float  # s, first kept sample relative to the trigger

    @classmethod
    def from_wfm(cls, wfm) -> AxisKey:
        return cls(dtype=np.dtype(wfm.raw_dtype).name, n_samples=int(wfm.n_samples),
                   x_spacing=float(wfm.x_spacing), x_start=float(wfm.x_start))

    @classmethod
    def from_dict(cls, values: dict | None) -> AxisKey | None:
        return None if values is None else cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)

    def differences(self, other: AxisKey) -> list[str]:
        """Human-readable 'field: expected X, found Y' for every differing field."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{k}: expected {mine[k]!r}, found {theirs[k]!r}" for k in mine
                if mine[k] != theirs[k]]

    @property
    def dt_us(self) -> float:
        return self.x_spacing * 1e6

    @property
    def t0_us(self) -> float:
        return self.x_start * 1e6

    def time_us(self) -> np.ndarray:
        """The time coordinate in µs, computed as ``t0 + i * dt`` (the kernels' convention)."""
        return self.t0_us + np.arange(self.n_samples) * self.dt_us


def frames_per_chunk(frames_per_file: int, n_samples: int, itemsize: int,
                     chunk_mb: float) -> int:
    """Chunk length along ``frame``: near ``chunk_mb`` and dividing a file into equal parts.

    A file of F frames is split into ``ceil(F / target)`` chunks of equal length, so a
    988-frame file with a 32-frame target gets 31 chunks of 32 (4 padding slots) and a
    48-frame file gets 2 chunks of 24 (none).
    """
    frame_bytes = max(1, n_samples * itemsize)
    target = max(1, int(chunk_mb * 2**20 // frame_bytes))
    n_chunks = math.ceil(max(1, frames_per_file) / target)
    return math.ceil(max(1, frames_per_file) / n_chunks)


def slots_for(n_frames: int, chunk: int) -> int:
    """Frame slots a file of ``n_frames`` occupies (a whole number of chunks)."""
    return math.ceil(n_frames / chunk) * chunk


#: Blosc codecs both zarr's BloscCodec and numcodecs' Blosc accept
def blosc_codec(compressor: str, clevel: int, shuffle: str, dtype) -> BloscCodec:
    """The Blosc codec for raw codes; ``shuffle='auto'`` is bit shuffle (noise-dominated
    codes keep their high bits constant: bit planes compress, bytes barely)."""
    itemsize = np.dtype(dtype).itemsize
    if shuffle == "auto":
        mode = BloscShuffle.bitshuffle
    else:
        mode = BloscShuffle(shuffle)
    return BloscCodec(cname=compressor, clevel=clevel, shuffle=mode, typesize=itemsize)
