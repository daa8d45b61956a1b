"""The sweep/plot/report commands: success output, resumability, one-line errors with exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml
from _exp_fakes import fake_run
from typer.testing import CliRunner

import sim.runner
from experiments.cli import register


@pytest.fixture
def app(monkeypatch) -> typer.Typer:
    monkeypatch.setattr(sim.runner, "simulate", fake_run, raising=False)
    a = typer.Typer()
    register(a)
    return a


def write_sweep(tmp_path: Path, **extra) -> Path:
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"base": {"adapters": {"count": 4}, "workload": {"num_requests": 10}},
                                 "policies": ["lru", "overlap"], **extra}))
    return f


def test_help_lists_the_commands(app):
    r = CliRunner().invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("sweep", "plot", "report"):
        assert cmd in r.output
    r = CliRunner().invoke(app, ["sweep", "--help"])
    assert "--workers" in r.output and "--scheduler" in r.output and "--no-plots" in r.output


def test_sweep_runs_reports_and_resumes(app, tmp_path: Path):
    f = write_sweep(tmp_path)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["sweep", str(f), "--out", str(out), "--workers", "1", "--no-plots", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "2 runs: 2 ran, 0 already done, 0 failed" in r.output
    assert (out / "report.md").exists() and not (out / "plots").exists()
    r = CliRunner().invoke(app, ["sweep", str(f), "--out", str(out), "--workers", "1", "--no-plots", "--no-progress"])
    assert "0 ran, 2 already done" in r.output
    r = CliRunner().invoke(app, ["report", str(out), "--baseline", "overlap"])
    assert r.exit_code == 0 and "Δ P50 TTFT vs overlap" in (out / "report.md").read_text()


def test_config_error_is_one_line_and_exit_2(app, tmp_path: Path):
    f = write_sweep(tmp_path, axes={"workload.arival.rate": [1, 2]})
    r = CliRunner().invoke(app, ["sweep", str(f), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert str(f) in err and "axes.workload.arival.rate" in err


def test_plot_on_a_non_results_dir_is_an_error(app, tmp_path: Path):
    r = CliRunner().invoke(app, ["plot", str(tmp_path)])
    assert r.exit_code == 2 and "not a sweep results directory" in r.stderr
