"""What ``ratag-xr run`` prints at the end: the per-set summary table, and why a run failed."""

from __future__ import annotations

import numpy as np


def _fmt(value, spec=".3g") -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "-" if not np.isfinite(value) else format(value, spec)


def summary_table(results) -> str:
    """Per-set table: fields, t_s1, S2 window, mean area ± ci95, X-rays accepted, r."""
    sets = results.sets
    head = (f"{'set':<34} {'E_drift':>8} {'E_EL':>8} {'t_s1':>7} {'S2 window [µs]':>16} "
            f"{'A_ion ± ci95 [mV·µs]':>22} {'X acc':>6} {'r':>7}")
    lines = [head, "-" * len(head)]
    for name in sets.set.values:
        s = sets.sel(set=name)

        def get(var, s=s):
            return s[var].item() if var in s else float("nan")

        window = f"{_fmt(get('s2_window_start'), '.2f')}–{_fmt(get('s2_window_end'), '.2f')}"
        area = f"{_fmt(get('s2_area_mean'), '.4f')} ± {_fmt(get('s2_area_ci95'), '.4f')}"
        lines.append(f"{str(name):<34} {_fmt(s.drift_field.item(), '.1f'):>8} "
                     f"{_fmt(s.EL_field.item(), '.1f'):>8} {_fmt(get('t_s1'), '.3f'):>7} "
                     f"{window:>16} {area:>22} {_fmt(get('n_xray_accepted'), '.0f'):>6} "
                     f"{_fmt(get('r'), '.3f'):>7}")
        for var in ("s1_reason", "s2_window_reason", "s2_fit_reason"):
            if var in s and str(s[var].item()):
                lines.append(f"    {var}: {s[var].item()}")
    run = results.run
    if "g_S2" in run:
        lines.append(f"A_x = {_fmt(run.A_x_mean.item(), '.4f')} ± "
                     f"{_fmt(run.A_x_ci95.item(), '.4f')} mV·µs   g_S2 = "
                     f"{_fmt(run.g_S2.item(), '.4g')} mV·µs/e   D_L = "
                     f"{_fmt(run.D_L.item(), '.4g')} ± {_fmt(run.D_L_err.item(), '.2g')} mm²/µs")
        if not _own_gain(run):
            lines.append(f"g_S2 = {_fmt(run.g_S2.item(), '.4g')} ± "
                         f"{_fmt(run.g_S2_err.item(), '.2g')} mV·µs/e from "
                         f"{run.g_S2_source.item()}; this run's X-ray fit gives "
                         f"{_fmt(run.g_S2_own.item(), '.4g')} ± "
                         f"{_fmt(run.g_S2_own_err.item(), '.2g')}")
    n_alpha = (int(run.alpha_n_frames) + int(run.alpha_monitor_n_frames.sum())
               if "alpha_n_frames" in run else 0)
    if n_alpha:
        start = np.asarray(run.alpha_peak_start.values, dtype=float)
        peaks = np.isfinite(start)  # (not isotopes with only a configured range)
        fitted = [str(run.isotope.values[i]) for i in np.argsort(start, kind="stable")
                  if peaks[i] and bool(run.alpha_peak_success.values[i])]
        cal = (f"calibration order {int(run.alpha_cal_order_used)}"
               if bool(run.alpha_cal_success) else
               f"calibration failed: {run.alpha_cal_reason.item()}")
        tagged = ""
        if "iso_n_frames" in sets and "n_untagged" in sets:
            n_tagged = int(sets.iso_n_frames.sum())
            tagged = f"; {n_tagged} of {n_tagged + int(sets.n_untagged.sum())} frames tagged"
        lines.append(f"alpha: {n_alpha} frames, peaks fitted {len(fitted)}/"
                     f"{int(peaks.sum())} ({', '.join(fitted) or 'none'}), {cal}{tagged}")
    return "\n".join(lines)


def _own_gain(run) -> bool:
    """The recombination used this run's own X-ray fit (not ``calibrate.g_s2``'s gain)."""
    from ratag_xr.vocabulary import GAIN_OWN

    return "g_S2_source" not in run or str(run.g_S2_source.item()) == GAIN_OWN


def run_failed(results) -> list[str]:
    """Why the run as a whole failed (empty when it did not); a failed X-ray fit is not a
    failure when the gain comes from another run (``calibrate.g_s2``)."""
    problems = []
    sets = results.sets
    if "s2_fit_success" in sets and not bool(sets.s2_fit_success.any()):
        problems.append("no set has a successful ion S2 fit")
    run = results.run
    if "xray_fit_success" in run and not bool(run.xray_fit_success.item()) \
            and _own_gain(run):
        problems.append(f"X-ray calibration failed: {run.xray_fit_reason.item()}")
    return problems
