"""Write a simulated run directory of FastFrame WFM files plus its ground truth.

Layout (ALGORITHMS.md "Raw data layout", §11)::

    OUT_DIR/<run_name>/
      FieldScan_Gate<V>_Anode<V>/<run_name>_<YYYYMMDD>_Gate<V>_Anode<V>_P<pos>_<NNNN>.wfm
      truth.json, truth_frames.npz          (see ratag_xr.simulate.truth)

With an alpha channel (``alpha=True``) every PMT file has an alpha twin, named in the
older DAQ's style (``naming="old"``: ``..._P<pos>_<n>Wfm_Ch1.wfm`` / ``_Ch4.wfm``, n from 1
unpadded, as the real acquisition writes it) or the newer one's (``naming="new"``:
``FieldScan_Gate0200_Anode2100/..._Batch001__CH3.wfm`` / ``__CH4.wfm``); see
:mod:`ratag_xr.simulate.alpha` for its physics.

Each file has its own random streams, seeded by (seed, set index, file index): a file's bytes
do not depend on which other files are written, nor on the block size.  Frames are rendered
and written in blocks, so memory holds one block of one file at a time (plus a few numbers per
frame for the truth).

Live mode (``simulate_run(..., seconds_per_file=T)``, ``ratag-xr simulate --live T``) writes
the same bytes the way the oscilloscope does, for following a run while it is acquired:
file after file, each at its final name, the header first and then its frames in several
appends paced so that the file takes about T seconds (the alpha twin alongside, piece for
piece); a reader sees growing files that are shorter than their headers declare until
complete.  The truth files are written when the whole run is.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ratag_xr.errors import ConfigError, RunLayoutError
from ratag_xr.io.wfm_writer import WfmWriter
from ratag_xr.simulate.alpha import (
    AlphaEvents,
    alpha_n_samples,
    alpha_truth,
    alpha_y_scale_v,
    draw_alpha_events,
    render_alpha_block,
)
from ratag_xr.simulate.config import SimConfig
from ratag_xr.simulate.events import FileEvents, draw_file_events
from ratag_xr.simulate.physics import SetModel, set_model
from ratag_xr.simulate.render import render_block
from ratag_xr.simulate.truth import run_truth, set_truth, write_truth

#: frames rendered per block: ~24 MB of float32 scratch at 190 000 samples per frame
BLOCK_FRAMES = 32
#: live mode: appends of frames per file at least (after the header), where it has frames
LIVE_PIECES = 4


def file_name(config: SimConfig, model: SetModel, file_index: int,
              channel: int | None = None) -> str:
    """Name of file ``file_index`` of a set (dated by the file's first trigger, UTC), on
    ``channel`` (default: the PMT's) in the config's naming style."""
    date = datetime.fromtimestamp(_file_start(config, model.index, file_index), UTC)
    gate, anode = int(model.v_gate), int(model.v_anode)
    style = config.file_naming
    if style == "plain":
        return (f"{config.run_name}_{date:%Y%m%d}_Gate{gate}_Anode{anode}"
                f"_P{config.position}_{file_index:04d}.wfm")
    channel = config.pmt_channel if channel is None else channel
    if style == "old":
        return (f"{config.run_name}_{date:%Y%m%d}_Gate{gate}_Anode{anode}"
                f"_P{config.position}_{file_index + 1}Wfm_Ch{channel}.wfm")
    return (f"{config.run_name}_{date:%Y%m%d}_Gate{gate:04d}_Anode{anode:04d}"
            f"_Batch{file_index + 1:03d}__CH{channel}.wfm")


def _file_start(config: SimConfig, set_index: int, file_index: int) -> float:
    """Unix time at which a file starts: files follow each other, set after set."""
    k = set_index * config.files_per_set + file_index
    return config.start_epoch + k * config.file_interval_s


class FileSimulation:
    """The frames of one file: per-frame truth at construction, codes block by block."""

    def __init__(self, config: SimConfig, set_index: int, file_index: int, model=None):
        self.config = config
        self.model = model or set_model(config, set_index)
        # the alpha channel draws from a third child: the PMT streams stay as without it
        seeds = np.random.SeedSequence([config.seed, set_index, file_index]).spawn(
            3 if config.alpha else 2)
        self._noise_rng = np.random.default_rng(seeds[1])
        self.events: FileEvents = draw_file_events(
            np.random.default_rng(seeds[0]), config, self.model,
            _file_start(config, set_index, file_index),
        )
        self.name = file_name(config, self.model, file_index)
        self.alpha: AlphaEvents | None = None
        self.alpha_name: str | None = None
        if config.alpha:
            alpha_seeds = seeds[2].spawn(2)
            self.alpha = draw_alpha_events(np.random.default_rng(alpha_seeds[0]), config,
                                           self.events.n_frames)
            self._alpha_rng = np.random.default_rng(alpha_seeds[1])
            self.alpha_name = file_name(config, self.model, file_index, config.alpha_channel)

    def blocks(self, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """Raw codes, (k, n_samples) blocks in frame order."""
        c, ev = self.config, self.events
        dt_us, y_mv = c.x_spacing_us, c.y_scale_mv
        for start in range(0, ev.n_frames, block_frames):
            stop = min(start + block_frames, ev.n_frames)
            scratch = np.empty((stop - start, c.n_samples), dtype=np.float32)
            for row in scratch:  # row by row: the stream does not depend on block_frames
                self._noise_rng.standard_normal(dtype=np.float32, out=row)
            p0, p1 = ev.pulse_offsets[start], ev.pulse_offsets[stop]
            yield render_block(
                scratch,
                (ev.baseline_mv[start:stop] - c.y_offset_mv) / y_mv,
                c.noise_mv / y_mv,
                ev.pulse_offsets[start : stop + 1] - p0,
                (ev.pulse_time[p0:p1] - c.record_start_us) / dt_us,
                ev.pulse_amp[p0:p1] / y_mv,
                ev.pulse_sigma_ns[p0:p1] * 1e-3 / dt_us,
                np.dtype(c.dtype),
            )

    def alpha_blocks(self, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        """Raw codes of the alpha twin, (k, alpha samples) blocks in frame order."""
        if self.alpha is None:
            raise RunLayoutError("this simulation has no alpha channel (alpha=False)")
        for start in range(0, self.events.n_frames, block_frames):
            stop = min(start + block_frames, self.events.n_frames)
            yield render_alpha_block(self._alpha_rng, self.config, self.alpha, start, stop)

    def _alpha_writer(self, path: Path, progressive: bool = False) -> WfmWriter:
        c, ev = self.config, self.events
        return WfmWriter(
            path, ev.n_frames, alpha_n_samples(c), c.dtype,
            y_scale=alpha_y_scale_v(c), y_offset=c.alpha_y_offset_v,
            x_spacing=c.x_spacing_us * 1e-6, x_start=c.alpha_record_start_us * 1e-6,
            gmt_sec=ev.gmt_sec, gmt_frac=ev.gmt_frac, tt_offsets=ev.tt_offsets,
            byte_order=c.byte_order, progressive=progressive,
        )

    def _writer(self, path: Path, progressive: bool = False) -> WfmWriter:
        c, ev = self.config, self.events
        return WfmWriter(
            path, ev.n_frames, c.n_samples, c.dtype,
            y_scale=c.y_scale_mv * 1e-3, y_offset=c.y_offset_mv * 1e-3,
            x_spacing=c.x_spacing_us * 1e-6, x_start=c.record_start_us * 1e-6,
            gmt_sec=ev.gmt_sec, gmt_frac=ev.gmt_frac, tt_offsets=ev.tt_offsets,
            byte_order=c.byte_order, progressive=progressive,
        )

    def write_alpha(self, path: Path) -> Path:
        """Write the alpha twin at ``path``: same triggers and time stamps as the PMT file."""
        with self._alpha_writer(path) as writer:
            for block in self.alpha_blocks():
                writer.write_frames(block)
        return path

    def write(self, path: Path, progress: Callable[[int], None] | None = None) -> Path:
        """Write the file at ``path``; ``progress(k)`` after each block of k frames."""
        with self._writer(path) as writer:
            for block in self.blocks():
                writer.write_frames(block)
                if progress is not None:
                    progress(block.shape[0])
        return path

    def write_live(self, folder: Path, seconds: float,
                   progress: Callable[[int], None] | None = None) -> list[Path]:
        """Write the file (and its alpha twin) into ``folder`` as the scope does: at the
        final names, the headers first, then the frames in at least :data:`LIVE_PIECES`
        appends (blocks of at most :data:`BLOCK_FRAMES` frames), each flushed, paced so
        that the file is complete about ``seconds`` after it was started; the bytes are
        those of :meth:`write`.  Returns the paths (PMT first)."""
        n = self.events.n_frames
        piece = max(1, min(BLOCK_FRAMES, math.ceil(n / LIVE_PIECES)))
        n_pieces = math.ceil(n / piece)
        start = time.monotonic()
        writers = [self._writer(folder / self.name, progressive=True)]
        streams = [self.blocks(piece)]
        if self.alpha is not None:
            writers.append(self._alpha_writer(folder / self.alpha_name, progressive=True))
            streams.append(self.alpha_blocks(piece))
        try:
            for w in writers:
                w.flush()  # the headers alone, for a while
            for i, blocks in enumerate(zip(*streams, strict=True)):
                # rendered first, written when due: the file grows on the scope's schedule
                time.sleep(max(0.0, start + seconds * (i + 1) / n_pieces - time.monotonic()))
                for w, block in zip(writers, blocks, strict=True):
                    w.write_frames(block)
                    if i + 1 < n_pieces:
                        w.flush()
                if progress is not None:
                    progress(blocks[0].shape[0])
            for w in writers:
                w.close()
        finally:
            for w in writers:
                w.abort()  # no-op after close; an interrupted file stays partial
        return [w.path for w in writers]


def _config(config: SimConfig | None, overrides: dict) -> SimConfig:
    return (config or SimConfig()).replace(**overrides)


def simulate_file_frames(config: SimConfig | None = None, set_index: int = 0,
                         file_index: int = 0, **overrides) -> tuple[np.ndarray, FileEvents]:
    """In-memory raw codes (n_frames, n_samples) and truth of one file, exactly the frames
    :func:`simulate_run` writes for it."""
    sim = FileSimulation(_config(config, overrides), set_index, file_index)
    return np.concatenate(list(sim.blocks())), sim.events


def simulate_alpha_frames(config: SimConfig | None = None, set_index: int = 0,
                          file_index: int = 0, **overrides) -> tuple[np.ndarray, AlphaEvents]:
    """In-memory alpha codes (n_frames, alpha samples) and alpha truth of one file, exactly
    what :func:`simulate_run` writes as its alpha twin (``alpha=True`` is implied)."""
    cfg = _config(config, {"alpha": True, **overrides})
    sim = FileSimulation(cfg, set_index, file_index)
    return np.concatenate(list(sim.alpha_blocks())), sim.alpha


def simulate_set_frames(config: SimConfig | None = None, set_index: int = 0,
                        **overrides) -> tuple[np.ndarray, list[FileEvents]]:
    """In-memory raw codes (n_frames_per_set, n_samples) of a whole set (small runs only)
    and the per-file truth, in the analysis' frame order."""
    cfg = _config(config, overrides)
    out = [simulate_file_frames(cfg, set_index, f) for f in range(cfg.files_per_set)]
    return np.concatenate([raw for raw, _ in out]), [ev for _, ev in out]


def _progress_sink(progress, total: int):
    """(callback(k), close) from ``progress``: None/False, True (tqdm bar) or f(done, total)."""
    if not progress:
        return None, lambda: None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="frame", desc="simulate")
        return bar.update, bar.close
    done = [0]

    def step(k: int) -> None:
        done[0] += k
        progress(done[0], total)

    return step, lambda: None


def simulate_run(out_dir, config: SimConfig | None = None, *, progress=None,
                 overwrite: bool = False, seconds_per_file: float | None = None,
                 **overrides) -> Path:
    """Write a simulated run under ``out_dir``; returns the run directory.

    ``config`` (default :class:`SimConfig()`) with keyword ``overrides`` of its fields.
    ``progress``: True for a tqdm bar, or a callable ``f(frames_done, frames_total)``.
    An existing, non-empty run directory is refused unless ``overwrite`` (files of the same
    name are then replaced; other files are left alone).
    ``seconds_per_file``: live mode (see the module doc): every file written in place and
    in pieces, taking about this long (s, >= 0); the same bytes as without it.  The truth
    files come last.
    """
    if seconds_per_file is not None and not (math.isfinite(seconds_per_file)
                                             and seconds_per_file >= 0):
        raise ConfigError(f"seconds_per_file must be a number of seconds >= 0, got "
                          f"{seconds_per_file!r}")
    cfg = _config(config, overrides)
    run_dir = Path(out_dir) / cfg.run_name
    if run_dir.exists() and any(run_dir.iterdir()) and not overwrite:
        raise RunLayoutError(f"{run_dir}: run directory exists and is not empty "
                             "(pass overwrite=True to replace its files)")
    total = len(cfg.sets) * cfg.n_frames_per_set
    step, close = _progress_sink(progress, total)
    sets, frames = [], []
    try:
        for s in range(len(cfg.sets)):
            model = set_model(cfg, s)
            folder = run_dir / model.name
            folder.mkdir(parents=True, exist_ok=True)
            events, names, alphas, alpha_names = [], [], [], []
            for f in range(cfg.files_per_set):
                sim = FileSimulation(cfg, s, f, model)
                if seconds_per_file is not None:
                    sim.write_live(folder, seconds_per_file, step)
                else:
                    sim.write(folder / sim.name, step)
                    if sim.alpha is not None:
                        sim.write_alpha(folder / sim.alpha_name)
                events.append(sim.events)
                names.append(sim.name)
                if sim.alpha is not None:
                    alphas.append(sim.alpha)
                    alpha_names.append(sim.alpha_name)
                frames.append(_frame_table(sim.events, s, f, sim.alpha))
            entry = set_truth(model, events, names)
            if cfg.alpha:
                entry.update(_alpha_set_truth(alphas, alpha_names))
            sets.append(entry)
    finally:
        close()
    table = {k: np.concatenate([t[k] for t in frames]) for k in frames[0]}
    table["set_names"] = np.array([s["name"] for s in sets])
    truth = run_truth(cfg, sets)
    if cfg.alpha:
        truth["alpha"] = alpha_truth(cfg)
    write_truth(run_dir, truth, table)
    return run_dir


def _alpha_set_truth(alphas: list[AlphaEvents], names: list[str]) -> dict:
    from ratag_xr.simulate.alpha import ISOTOPES

    isotope = np.concatenate([a.isotope for a in alphas])
    counts = {name: int((isotope == i).sum()) for i, name in enumerate(ISOTOPES)}
    counts["none"] = int((isotope < 0).sum())
    return {"alpha_files": names, "n_frames_by_isotope": counts}


def _frame_table(events: FileEvents, set_index: int, file_index: int,
                 alpha: AlphaEvents | None = None) -> dict:
    n = events.n_frames
    out = {
        "set_index": np.full(n, set_index, dtype=np.int32),
        "file_index": np.full(n, file_index, dtype=np.int32),
        "frame_index": np.arange(n, dtype=np.int32),
    }
    out.update(events.per_frame())
    if alpha is not None:
        out.update(alpha.per_frame())
    return out
