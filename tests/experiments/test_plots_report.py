"""Plots and report from a fake-run sweep: files exist, figures show what they claim."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from _exp_fakes import failing_for

from experiments.plots import cdf_figure, gantt_figure, plot_all
from experiments.report import write_report
from experiments.results import load_results, ranking
from experiments.runner import run_sweep
from experiments.sweep import build_sweep

POLICIES = ["lru", "slora", "resident"]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("res")
    sw = build_sweep({
        "name": "plots-test",
        "base": {"seed": 1, "adapters": {"count": 8}, "workload": {"num_requests": 40}},
        "policies": POLICIES,
        "equal_memory": {"adapter_slots": 16},
        "axes": {"workload.arrival.rate": [1, 4], "adapters.count": [8, 32]},
    }, source="plots.yaml")
    run_sweep(sw, out, run_fn=failing_for("nobody"), workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def plots(results: Path) -> list[Path]:
    return plot_all(results)


def test_cdf_has_one_line_per_policy():
    sc_records = {p: pd.DataFrame({"ttft": [0.1, 0.2, 0.3], "e2e": [1.0, 2.0, 3.0]}) for p in POLICIES}
    fig = cdf_figure(sc_records, "t")
    ttft_ax, e2e_ax = fig.axes
    for ax in (ttft_ax, e2e_ax):
        assert [ln.get_label() for ln in ax.get_lines()] == POLICIES
    # the x data are the latencies in ms
    assert list(ttft_ax.get_lines()[0].get_xdata()) == pytest.approx([100, 200, 300])


def test_gantt_draws_both_lanes_coloured_by_kind():
    tl = pd.DataFrame({
        "lane": ["pcie", "compute", "compute"], "start": [0.0, 0.0, 0.02], "end": [0.01, 0.02, 0.03],
        "kind": ["blocking", "prefill", "decode"], "label": ["a", "b", "c"]})
    fig = gantt_figure({"lru": tl, "overlap": tl}, "t")
    assert len(fig.axes) == 2
    bars = [c for c in fig.axes[0].collections]
    assert len(bars) == 3  # one broken_barh per (lane, kind)
    legend_labels = {t.get_text() for t in fig.legends[0].get_texts()}
    assert legend_labels == {"blocking", "prefill", "decode"}


def test_gantt_title_is_not_under_its_legend():
    kinds = ["blocking", "prefill", "decode", "overlap", "pin", "prefetch", "release"]
    tl = pd.DataFrame({"lane": ["compute"] * len(kinds), "start": [0.01 * i for i in range(len(kinds))],
                       "end": [0.01 * i + 0.005 for i in range(len(kinds))], "kind": kinds, "label": kinds})
    fig = gantt_figure({"lru": tl}, "timeline: a long workload name, rank=256, adapter_slots=48")
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    title = fig._suptitle.get_window_extent(r)
    legend = fig.legends[0].get_window_extent(r)
    assert not title.overlaps(legend)


def test_plot_all_writes_nonempty_png_and_svg(plots: list[Path]):
    paths = plots
    names = {p.name for p in paths}
    for stem in ("bars", "timeline"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    assert sum(n.startswith("cdf_") for n in names) == 4 * 2  # groups x formats
    assert any(n.startswith("knee_") for n in names)  # a rate axis exists
    assert any(n.startswith("adapters_") for n in names)  # an adapter-count axis exists
    for p in paths:
        assert p.exists() and p.stat().st_size > 500
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths if p.suffix == ".png")
    assert all(b"<svg" in p.read_bytes()[:2000] for p in paths if p.suffix == ".svg")


def test_ranking_relative_change_vs_lru(results: Path):
    rk = ranking(load_results(results))
    lru = rk[rk.policy == "lru"]
    assert (lru["Δ P50 TTFT vs lru"] == 0).all()
    # in the fake, resident is ~0.3x lru latency: strongly negative change, ranked first
    res_rows = rk[rk.policy == "resident"]
    assert (res_rows["Δ mean E2E vs lru"] < -40).all()
    assert (res_rows["rank"] == 1).all()


def test_report_lists_policies_relative_change_errors_and_plots(tmp_path: Path, results: Path, plots):
    text = write_report(results).read_text()
    assert text.startswith("# Sweep report: plots-test")
    for p in POLICIES:
        assert f"| {p} |" in text
    assert "Δ P50 TTFT vs lru" in text
    assert "## Errors" not in text
    assert "](plots/bars.png)" in text
    assert "### rate=1, count=8" in text
    assert "slora 8+8" in text and "lru 16+0" in text

    # a sweep with a failing policy gets an errors section naming it
    sw = build_sweep({"base": {"adapters": {"count": 4}}, "policies": ["lru", "slora"]}, source="x.yaml")
    run_sweep(sw, tmp_path, run_fn=failing_for("slora"), workers=1, progress=False)
    text = write_report(tmp_path).read_text()
    assert "## Errors" in text and "RuntimeError: boom in slora" in text
    assert "No plots yet" in text


def test_plot_formats_follow_the_environment(tmp_path: Path, monkeypatch):
    """LORASIM_PLOT_FORMATS=png writes no SVG twin (results that must stay small); a bad list is
    a named error, not a traceback."""
    import matplotlib.pyplot as plt

    from experiments.plots import save
    from sim.errors import ConfigError

    monkeypatch.setenv("LORASIM_PLOT_FORMATS", "png")
    out = save(plt.figure(), tmp_path / "one")
    assert [p.name for p in out] == ["one.png"] and not (tmp_path / "one.svg").exists()
    monkeypatch.delenv("LORASIM_PLOT_FORMATS")
    assert sorted(p.name for p in save(plt.figure(), tmp_path / "two")) == ["two.png", "two.svg"]
    monkeypatch.setenv("LORASIM_PLOT_FORMATS", "png,gif")
    with pytest.raises(ConfigError, match="png, svg, pdf"):
        save(plt.figure(), tmp_path / "three")


def test_a_redrawn_figure_is_the_same_file(tmp_path: Path, monkeypatch):
    """No creation date or random ids in the files: regenerating a committed study changes only
    the plots whose data changed."""
    import matplotlib.pyplot as plt

    from experiments.plots import save

    monkeypatch.delenv("LORASIM_PLOT_FORMATS", raising=False)

    def draw(stem: str, y: float) -> dict[str, bytes]:
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, y], label="lru")
        ax.legend()
        return {p.suffix: p.read_bytes() for p in save(fig, tmp_path / stem)}

    a, b, c = draw("a", 1.0), draw("b", 1.0), draw("c", 2.0)
    assert set(a) == {".png", ".svg"} and a == b and a[".svg"] != c[".svg"]
