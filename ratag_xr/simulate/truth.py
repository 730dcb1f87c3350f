"""Ground truth of a simulated run: ``truth.json`` and ``truth_frames.npz``.

``RUN_DIR/truth.json`` (units in its ``units`` entry: times µs, areas mV·µs, fields V/cm,
reduced fields Td, speeds mm/µs, D_L mm²/µs, σ² µs², energies eV):

* run level: ``seed``, ``config`` (every :class:`SimConfig` field), ``ratag_xr_version``,
  ``g_s2`` (mV·µs per electron; null when the sets' EL fields differ, see
  ``g_s2_constant_across_sets`` and each set's ``g_s2``), ``spe_area``, ``pe_per_electron``,
  ``D_L``, ``sigma0_sq``, ``N_e_exp`` (E_x / W), ``xray_area_mean``, ``recombination`` (law
  and parameters), ``n_ref`` (ion electrons without recombination), ``frame_kinds``.
* ``sets``: one entry per set in folder order with the model expectations (gate/anode V,
  drift_field, EL_field, red_drift_field, speed_drift, time_drift, el_transit_time, t_s1,
  t_s2_start = t_s1 + time_drift, t_s2_end_mean, s2_duration_mean, sigma_t (= the std of the
  S2 duration, also as s2_duration_std), recombination r, ion_n_pe_mean, ion_area_mean,
  ion_area_std, g_s2, xray_area_mean, xray_area_std) and what this realisation drew
  (n_frames, n_xray_frames, n_frames_by_kind, sample means/stds, files).

Analog truth: areas are sums of the drawn SPE areas, before noise, digitisation, the
analysis' smoothing and clipping and its integration window; an analysis that clips below
a threshold recovers a few per cent less by design.

Two-channel runs (``alpha=True``, :mod:`ratag_xr.simulate.alpha`) add a run-level ``alpha``
entry (isotopes, reference energies, chain fractions, the SCA-vs-energy relation
``sca_relation`` {c0, c1, c2} and the peak positions it gives, resolution, tail, missing
fraction, pulse shape, record, channels, naming) and per set ``alpha_files`` and
``n_frames_by_isotope``.

``RUN_DIR/truth_frames.npz`` (plain arrays, no pickle): one entry per frame in the
analysis' frame order (sets in folder order, files by name, frames in file order):
``set_index``, ``file_index``, ``frame_index`` (frame in file), ``set_names``, and the
per-frame arrays of :class:`~ratag_xr.simulate.events.FileEvents` (``kind``, ``xray``,
``ion_area``, ``ion_start``, ``ion_end``, ``ion_first_pe``, ``ion_last_pe``, ``xray_area``,
``xray_start``, ``xray_end``, ``s1_n_pe``, ``baseline_mv``, ...); with an alpha channel also
``alpha_isotope`` (index into the isotopes, -1: no alpha), ``alpha_energy_mev`` (deposited),
``alpha_sca`` (§12 reading of the noise-free pulse) and ``alpha_height_v``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

import ratag_xr
from ratag_xr.simulate.config import SimConfig
from ratag_xr.simulate.events import KINDS, FileEvents
from ratag_xr.simulate.physics import SetModel, xray_electrons

UNITS = {
    "time": "us",
    "area": "mV*us",
    "g_s2": "mV*us per electron",
    "field": "V/cm",
    "reduced_field": "Td",
    "speed": "mm/us",
    "D_L": "mm^2/us",
    "sigma0_sq": "us^2",
    "energy": "eV",
    "voltage": "V",
}


def _stat(values: np.ndarray, fn) -> float | None:
    values = values[np.isfinite(values)]
    return float(fn(values)) if values.size > 1 else None


def set_truth(model: SetModel, events: list[FileEvents], files: list[str]) -> dict:
    """Truth entry of one set: model expectations plus what the draws produced."""
    kind = np.concatenate([e.kind for e in events])
    xray = np.concatenate([e.xray for e in events])
    normal = kind == KINDS.index("normal")
    ion_area = np.concatenate([e.ion_area for e in events])[normal]
    duration = np.concatenate([e.ion_end - e.ion_start for e in events])[normal]
    x_area = np.concatenate([e.xray_area for e in events])[xray]
    out = model.to_dict()
    out["s2_duration_std"] = model.sigma_t
    out.update(
        n_frames=int(kind.size),
        n_xray_frames=int(xray.sum()),
        n_frames_by_kind={k: int((kind == i).sum()) for i, k in enumerate(KINDS)},
        ion_area_sample_mean=_stat(ion_area, np.mean),
        ion_area_sample_std=_stat(ion_area, np.std),
        s2_duration_sample_std=_stat(duration, np.std),
        xray_area_sample_mean=_stat(x_area, np.mean),
        files=files,
    )
    return out


def run_truth(config: SimConfig, sets: list[dict]) -> dict:
    """The whole ``truth.json`` document."""
    g = [s["g_s2"] for s in sets]
    constant = bool(np.allclose(g, g[0], rtol=1e-12))
    n_e = xray_electrons(config)
    return {
        "description": "ground truth of a simulated ratag_xr run (analog, model level)",
        "ratag_xr_version": ratag_xr.__version__,
        "seed": config.seed,
        "units": UNITS,
        "g_s2": g[0] if constant else None,
        "g_s2_constant_across_sets": constant,
        "spe_area": sets[0]["spe_area"],
        "pe_per_electron": sets[0]["pe_per_electron"] if constant else None,
        "D_L": config.diffusion_dl_mm2_us,
        "sigma0_sq": config.sigma0_sq_us2,
        "N_e_exp": n_e,
        "xray_area_mean": n_e * g[0] if constant else None,
        "n_ref": sets[0]["n_ref"],
        "recombination": {
            "law": "r(E) = r0 / (1 + E / E0), E = drift_field",
            "r0": config.recomb_r0,
            "E0": config.recomb_e0_v_cm,
        },
        "diffusion": "sigma_t^2 = sigma0_sq + 2 D_L time_drift / speed_drift^2",
        "frame_kinds": list(KINDS),
        "config": config.to_dict(),
        "sets": sets,
    }


def write_truth(run_dir: Path, truth: dict, frames: dict[str, np.ndarray]) -> None:
    """Write ``truth.json`` and ``truth_frames.npz`` (each via a temporary name)."""
    tmp = run_dir / ".truth.json.partial"
    tmp.write_text(json.dumps(truth, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, run_dir / "truth.json")
    tmp = run_dir / ".truth_frames.partial.npz"
    np.savez(tmp, **frames)
    os.replace(tmp, run_dir / "truth_frames.npz")
