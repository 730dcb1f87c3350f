"""Result figures: structure, labels with units, drawn values, and the saved PNG files.

Uses the hand-made datasets of :mod:`tests.test_export`.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from scipy.stats import norm

from ratag_xr.plots import (
    plot_diffusion,
    plot_recombination,
    plot_s2_histogram,
    plot_s2_vs_drift,
    plot_waveform_validation,
    plot_xray_histogram,
)
from tests.test_export import FAIL_REASON, FAILED, RUN_ID, SETS, make_results, make_waveforms

RED, BLUE, PURPLE = to_hex("tab:red"), to_hex("tab:blue"), to_hex("tab:purple")


@pytest.fixture(scope="module")
def results():
    return make_results()


def lines_of(ax, color):
    return [ln for ln in ax.lines if to_hex(ln.get_color()) == to_hex(color)]


def vertical_at(ax, color) -> list[float]:
    """x of the vertical lines of ``color`` in ``ax``."""
    return [float(ln.get_xdata()[0]) for ln in lines_of(ax, color)
            if len(ln.get_xdata()) == 2 and ln.get_xdata()[0] == ln.get_xdata()[1]]  # fmt: skip


def marker_lines(ax, color) -> list[float]:
    """x of the full-height dashed marker lines of ``color`` (a LineCollection of ``ax``,
    in x-data / y-axes coordinates)."""
    out = []
    for coll in ax.collections:
        if not isinstance(coll, LineCollection):
            continue
        assert coll.get_transform() == ax.get_xaxis_transform()
        colors = np.broadcast_to(coll.get_colors(), (len(coll.get_segments()), 4))
        for seg, rgba in zip(coll.get_segments(), colors, strict=True):
            if to_hex(rgba) == to_hex(color) and seg[0, 0] == seg[1, 0]:
                assert sorted(seg[:, 1]) == [0, 1]  # bottom to top of the panel
                out.append(float(seg[0, 0]))
    return out


def marker_bands(ax) -> list[tuple[float, float]]:
    """Data x ranges of the full-height shaded bands of ``ax`` (a PolyCollection)."""
    out = []
    for coll in ax.collections:
        if isinstance(coll, PolyCollection):
            assert coll.get_transform() == ax.get_xaxis_transform()
            out.extend((float(p.vertices[:, 0].min()), float(p.vertices[:, 0].max()))
                       for p in coll.get_paths())
    return out


def span_x(patch) -> tuple[float, float]:
    """Data x range of an axvspan patch (Rectangle or Polygon, depending on matplotlib)."""
    xy = patch.get_patch_transform().transform(patch.get_path().vertices)
    return float(xy[:, 0].min()), float(xy[:, 0].max())


def legend_text(ax) -> str:
    return "\n".join(t.get_text() for t in ax.get_legend().get_texts())


def all_text(fig) -> str:
    texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    return "\n".join(texts)


def test_s2_histogram_draws_the_fit_scaled_to_the_data(results):
    sets, *_ = results
    fig = plot_s2_histogram(sets, SETS[0], RUN_ID)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_xlabel() == "S2 area [mV·µs]" and ax.get_ylabel() == "frames / bin"
    assert RUN_ID in ax.get_title() and SETS[0] in ax.get_title()
    # Curve = expected counts in a bin of width 0.1 centred at x, for a Gaussian whose
    # integral over the fitted range [0.1, 4] equals the counts there (bin 0 excluded).
    counts = sets["s2_area_hist"].sel(set=SETS[0]).values
    amplitude = counts[1:].sum() / (norm.cdf(4.0, 1.25, 0.30) - norm.cdf(0.1, 1.25, 0.30))
    (curve,) = [ln for ln in lines_of(ax, RED) if len(ln.get_xdata()) > 2]
    x, y = curve.get_xdata(), curve.get_ydata()
    assert x[0] == pytest.approx(0.1) and x[-1] == pytest.approx(4.0)
    expected = amplitude * (norm.cdf(x + 0.05, 1.25, 0.30) - norm.cdf(x - 0.05, 1.25, 0.30))
    np.testing.assert_allclose(y, expected, rtol=1e-9)
    assert vertical_at(ax, "black") == [1.25]
    (band,) = [p for p in ax.patches if p.get_alpha() == 0.15]
    assert span_x(band) == pytest.approx((1.25 - 0.021, 1.25 + 0.021))
    text = legend_text(ax)
    assert "1.250 ± 0.021 mV·µs" in text and "χ²/ndf = 1.07" in text
    assert "σ = 0.300 mV·µs" in text and "N = 812" in text


def test_s2_histogram_uses_a_stored_amplitude(results):
    sets, *_ = results
    sets = sets.assign(s2_area_amplitude=("set", [2000.0, 1.0, 1.0, 1.0]))
    ax = plot_s2_histogram(sets, SETS[0], RUN_ID).axes[0]
    (curve,) = [ln for ln in lines_of(ax, RED) if len(ln.get_xdata()) > 2]
    peak = 2000.0 * (norm.cdf(0.05, 0, 0.30) - norm.cdf(-0.05, 0, 0.30))
    assert curve.get_ydata().max() == pytest.approx(peak, rel=1e-4)


def test_failed_fit_still_plots_with_its_reason(results):
    sets, *_ = results
    fig = plot_s2_histogram(sets, SETS[FAILED], RUN_ID)
    ax = fig.axes[0]
    assert "fit failed" in ax.get_title() and SETS[FAILED] in ax.get_title()
    assert lines_of(ax, RED) == [] and vertical_at(ax, "black") == []
    assert FAIL_REASON in " ".join(legend_text(ax).split())  # the legend wraps it
    assert len(ax.patches) >= 2  # the histogram is drawn


def test_waveform_validation_has_one_panel_per_frame_with_markers(results):
    sets, *_ = results
    waveforms = make_waveforms(0)
    fig = plot_waveform_validation(waveforms, sets.sel(set=SETS[0]), RUN_ID)
    assert len(fig.axes) == 10
    assert RUN_ID in fig.get_suptitle() and SETS[0] in fig.get_suptitle()
    for j, ax in enumerate(fig.axes):
        stem = f"RUN9_20260312_Gate100_Anode1600_P3_000{j % 2}"
        assert ax.get_title() == f"{stem}_ff{3 * j + 1}"
        np.testing.assert_array_equal(ax.lines[0].get_ydata(), waveforms.waveform[j].values)
        assert marker_lines(ax, RED) == [0.12]
        assert marker_lines(ax, BLUE) == [22.9]
        assert marker_lines(ax, PURPLE) == [33.5]
        assert len(ax.lines) == 1  # the trace; the markers are collections
        (dashes,) = [c for c in ax.collections if isinstance(c, LineCollection)]
        assert all(offset is not None and pattern for offset, pattern in dashes.get_dashes())
        spans = np.array(sorted(marker_bands(ax)))
        np.testing.assert_allclose(spans, [(0.09, 0.15), (22.5, 23.3), (33.0, 34.0)])
        assert ax.get_ylim()[0] < waveforms.waveform[j].values.min()  # markers set no limits
    assert "µs" in fig.axes[-1].get_xlabel() and "µs" in fig.axes[-2].get_xlabel()
    assert all("mV" in fig.axes[i].get_ylabel() for i in range(0, 10, 2))


def test_waveform_validation_without_estimates_and_odd_count(results):
    sets, *_ = results
    fig = plot_waveform_validation(make_waveforms(FAILED, n=5), sets.sel(set=SETS[FAILED]),
                                   RUN_ID)  # fmt: skip
    assert len(fig.axes) == 5
    # NaN times: no marker lines, no bands
    assert all(len(ax.lines) == 1 and not ax.patches and not ax.collections for ax in fig.axes)
    assert "time [µs]" in fig.axes[3].get_xlabel()  # above the empty slot
    assert "not determined" in all_text(fig)


def test_xray_histogram(results):
    _, run, _, _ = results
    ax = plot_xray_histogram(run, RUN_ID).axes[0]
    assert ax.get_xlabel() == "X-ray S2 area [mV·µs]" and "/ bin" in ax.get_ylabel()
    assert RUN_ID in ax.get_title() and "0.01100 ± 0.00016" in ax.get_title()
    assert vertical_at(ax, "black") == [6.15]
    assert "6.150 ± 0.090 mV·µs" in legend_text(ax)
    failed = run.assign(xray_fit_success=False, xray_fit_reason="fit did not converge")
    ax = plot_xray_histogram(failed, RUN_ID).axes[0]
    assert "fit failed" in ax.get_title() and "did not converge" in legend_text(ax)


@pytest.mark.parametrize("normalized", [False, True])
def test_s2_vs_drift_omits_failed_sets(results, normalized):
    sets, *_ = results
    fig = plot_s2_vs_drift(sets, RUN_ID, normalized=normalized)
    ax = fig.axes[0]
    assert RUN_ID in ax.get_title() and ax.get_xlabel() == "drift field [V/cm]"
    line = ax.lines[0]
    np.testing.assert_allclose(line.get_xdata(), [71.43, 142.86, 285.71])
    expected = [0.203, 0.293, 0.423] if normalized else [1.25, 1.80, 2.60]
    np.testing.assert_allclose(line.get_ydata(), expected)
    ylabel = ax.get_ylabel()
    assert ("A_\\mathrm{ion} / A_x" in ylabel) if normalized else ("[mV·µs]" in ylabel)
    assert f"omitted (S2 fit failed): {SETS[FAILED]}" in all_text(fig)


def test_a_plot_without_any_value_says_so(results):
    sets, *_ = results
    no_norm = sets.assign(norm_A_ion=sets.norm_A_ion * np.nan)
    fig = plot_s2_vs_drift(no_norm, RUN_ID, normalized=True)
    assert len(fig.axes[0].lines[0].get_xdata()) == 0
    text = all_text(fig)
    assert "no set has a value to show" in text
    assert all(name in text for name in SETS)  # each is named as omitted
    assert fig.axes[0].get_xlim()[0] < 71.43 and fig.axes[0].get_xlim()[1] > 285.71


def test_diffusion_has_three_panels_and_the_fit_line(results):
    sets, run, _, _ = results
    fig = plot_diffusion(sets, run, RUN_ID)
    assert len(fig.axes) == 3
    assert RUN_ID in fig.get_suptitle() and "longitudinal diffusion" in fig.get_suptitle()
    xl = [ax.get_xlabel() for ax in fig.axes]
    assert "[µs]" in xl[0] and "[µs³/mm²]" in xl[1] and "[V cm⁻¹ bar⁻¹]" in xl[2]
    assert "[µs²]" in fig.axes[0].get_ylabel()
    t, v = np.array([25.45, 17.50, 13.33]), np.array([0.55, 0.80, 1.05])
    np.testing.assert_allclose(fig.axes[0].lines[0].get_xdata(), t)
    np.testing.assert_allclose(fig.axes[1].lines[0].get_xdata(), t / v**2)
    np.testing.assert_allclose(fig.axes[2].lines[0].get_xdata(), [71.43 / 2, 142.86 / 2,
                                                                  285.71 / 2])  # fmt: skip
    (fit,) = lines_of(fig.axes[1], RED)
    x = np.asarray(fit.get_xdata())
    np.testing.assert_allclose(fit.get_ydata(), 0.05 + 2 * 0.0025 * x)
    text = legend_text(fig.axes[1])
    assert "0.00250 ± 0.00040 mm²/µs" in text and "0.050 ± 0.010 µs²" in text
    failed = run.assign(diffusion_success=False, diffusion_reason="only 1 usable set(s)")
    fig = plot_diffusion(sets, failed, RUN_ID)
    assert lines_of(fig.axes[1], RED) == [] and "only 1 usable set" in all_text(fig)


def test_recombination(results):
    sets, *_ = results
    fig = plot_recombination(sets, RUN_ID)
    ax = fig.axes[0]
    assert RUN_ID in ax.get_title() and ax.get_xlabel() == "drift field [V/cm]"
    assert "dimensionless" in ax.get_ylabel()
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.797, 0.707, 0.577])
    # Two error bar groups: the full ci95 and the ion-fit-only ci95.
    segments = [c.get_segments() for c in ax.collections]
    spans = sorted(round(float(s[0][1][1] - s[0][0][1]), 6) for s in segments)
    assert spans == [0.0068, 0.012]  # 2 × r_err_ion and 2 × r_err of the first set
    assert SETS[FAILED] in all_text(fig)


def png_chunks(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos = 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        yield data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length


def test_every_registered_figure_is_a_150_dpi_png(tmp_path, results):
    """Each figure of the plots stage's registry, drawn from the results and saved as the
    stage saves it (the validation figure from in-memory frames instead of a store)."""
    from ratag_xr.io.atomic import atomic_save_figure
    from ratag_xr.pipeline.results import Results
    from ratag_xr.plots.figures import FIGURES, FigureJob, figure_path

    sets, run, _, waveforms = results
    job = FigureJob(run_id=RUN_ID, plots_dir=tmp_path, store=tmp_path / "none.zarr",
                    n_pedestal=2000, exclude_index=1, xray_exclude_index=0)
    res = Results(sets=sets, run=run, frames=xr.Dataset(), lineage={})
    paths = []
    for spec in FIGURES:
        if not spec.applies(res):  # the alpha figures: this run has no alpha data
            continue
        for name in (SETS if spec.per == "set" else [None]):
            if spec.name == "waveform_validation":
                if name not in waveforms:
                    continue
                fig = plot_waveform_validation(waveforms[name], sets.sel(set=name), RUN_ID)
            else:
                fig = spec.draw(job, res, name)
            paths.append(atomic_save_figure(figure_path(job, spec, name), fig))
    names = {p.name for p in paths}
    expected = {f"{s}_s2_histogram.png" for s in SETS}
    expected |= {f"{s}_waveform_validation.png" for s in (SETS[0], SETS[FAILED])}
    expected |= {f"RUN9_{k}.png" for k in ("xray_histogram", "s2_vs_drift",
                                           "s2_vs_drift_normalized", "diffusion_analysis",
                                           "recombination")}  # fmt: skip
    assert names == expected
    assert {p.name for p in tmp_path.iterdir()} == expected  # no temp files left
    for path in paths:
        data = path.read_bytes()
        assert len(data) > 20_000, path.name
        chunks = dict(png_chunks(data))
        phys = chunks[b"pHYs"]
        assert int.from_bytes(phys[0:4], "big") == 5906  # 150 dpi in pixels per metre
        assert int.from_bytes(phys[4:8], "big") == 5906 and phys[8] == 1
        width = int.from_bytes(chunks[b"IHDR"][0:4], "big")
        assert width in (1125, 1800, 2250)  # 7.5, 12 or 15 inches at 150 dpi


def test_min_max_envelope_keeps_every_extreme():
    from ratag_xr.plots.per_set import min_max_envelope

    rng = np.random.default_rng(1)
    t = np.arange(190_000) * 2e-4
    y = rng.normal(size=t.size)
    y[[12_345, 150_001]] = [40.0, -30.0]  # single-sample pulses must survive
    t_env, y_env = min_max_envelope(t, y, columns=2000)
    assert len(y_env) == 4000
    assert y_env.max() == 40.0 and y_env.min() == -30.0
    assert np.all(np.diff(t_env) >= 0)  # still a time-ordered line
    k = t.size // 2000
    for c in (0, 617, 1999):  # each column's extremes equal the full trace's
        block = y[c * k:(c + 1) * k]
        assert set(y_env[2 * c: 2 * c + 2]) == {block.min(), block.max()}
    short_t, short_y = min_max_envelope(t[:100], y[:100])
    np.testing.assert_array_equal(short_y, y[:100])
