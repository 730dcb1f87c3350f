"""Two-channel raw files for the tests: PMT and alpha twins of random codes, in the names of
the older (``..._P2_<n>Wfm_Ch1.wfm``) or newer (``..._Batch<NNN>__CH3.wfm``) DAQ."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ratag_xr.io.wfm import read_wfm
from ratag_xr.io.wfm_writer import write_wfm

STYLES = {
    # style: (name format, PMT channel, alpha channel)
    "old": ("RUN8_20250101_Gate{gate}_Anode{anode}_P2_{n}Wfm_Ch{c}.wfm", 1, 4),
    "new": ("RUN9_20260101_Gate{gate:04d}_Anode{anode:04d}_Batch{n:03d}__CH{c}.wfm", 3, 4),
}
PMT_AXIS = dict(x_spacing=2e-10, x_start=-3e-8)
ALPHA_AXIS = dict(x_spacing=2e-10, x_start=-1e-8)


@dataclass
class TwinFiles:
    pmt: Path
    alpha: Path
    pmt_raw: np.ndarray
    alpha_raw: np.ndarray


def set_folder(style: str, gate: int, anode: int) -> str:
    return (f"FieldScan_Gate{gate:04d}_Anode{anode:04d}" if style == "new"
            else f"FieldScan_Gate{gate}_Anode{anode}")


def name(style: str, gate: int, anode: int, n: int, role: str) -> str:
    fmt, pmt, alpha = STYLES[style]
    return fmt.format(gate=gate, anode=anode, n=n, c=pmt if role == "pmt" else alpha)


def write_twins(root: Path, style: str, gate: int, anode: int, numbers, *, n_frames=6,
                pmt_samples=3000, alpha_samples=800, seed=0, pmt_dtype="int16",
                alpha_dtype="int8", pmt_scale=(1e-4, 0.0), alpha_scale=(0.04, 0.1),
                scales: dict | None = None, stamp_jitter_s=3e-7) -> dict[int, TwinFiles]:
    """Write the twins numbered ``numbers`` of one set under ``root``; returns them by number.

    ``scales`` = {n: (pmt_scale, alpha_scale)} gives file n its own vertical scaling.  The
    alpha twin's trigger stamps differ from the PMT's by up to ``stamp_jitter_s``.
    """
    rng = np.random.default_rng(seed)
    folder = root / set_folder(style, gate, anode)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for n in numbers:
        ps, as_ = (scales or {}).get(n, (pmt_scale, alpha_scale))
        pinfo, ainfo = np.iinfo(pmt_dtype), np.iinfo(alpha_dtype)
        praw = rng.integers(pinfo.min, pinfo.max, (n_frames, pmt_samples), endpoint=True,
                            dtype=pmt_dtype)
        araw = rng.integers(ainfo.min, ainfo.max, (n_frames, alpha_samples), endpoint=True,
                            dtype=alpha_dtype)
        t = 1.7e9 + 1000.0 * n + np.cumsum(rng.uniform(0.01, 0.2, n_frames))
        sec = np.floor(t)
        frac = (t - sec).round(6)
        jitter = rng.uniform(-stamp_jitter_s, stamp_jitter_s, n_frames)
        ppath = write_wfm(folder / name(style, gate, anode, n, "pmt"), praw, y_scale=ps[0],
                          y_offset=ps[1], gmt_sec=sec, gmt_frac=frac, **PMT_AXIS)
        apath = write_wfm(folder / name(style, gate, anode, n, "alpha"), araw,
                          y_scale=as_[0], y_offset=as_[1], gmt_sec=sec,
                          gmt_frac=(frac + jitter).clip(0, 0.999999), **ALPHA_AXIS)
        out[n] = TwinFiles(ppath, apath, praw, araw)
    return out


def volts(path: Path) -> np.ndarray:
    """Every frame of a raw file in volts, by the reader."""
    with read_wfm(path) as w:
        return w.volts()
