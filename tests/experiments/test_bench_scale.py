"""`lorasim bench-scale`: the plan of points, resuming from scaling.csv, verdicts against the
issue #29 targets, the plot, one-line errors. Timing itself is not asserted (benchmarks print)."""

from __future__ import annotations

import pandas as pd
import typer
from typer.testing import CliRunner

import experiments.bench_scale as bs
from experiments.cli import register


def test_plan_runs_the_first_policy_at_every_size_and_the_rest_at_the_largest():
    assert bs.plan([10, 100, 1000], ["lru", "overlap"]) == [("lru", 10), ("lru", 100), ("lru", 1000),
                                                             ("overlap", 1000)]


def _fake_measure(calls):
    def measure(policy, n):
        calls.append((policy, n))
        return {"policy": policy, "requests": n, "seconds": n / 1000, "requests_per_s": 1000.0,
                "peak_rss_mb": 100.0 + n / 100, "completed": n}
    return measure


def test_points_are_saved_as_they_finish_and_skipped_on_rerun(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(bs, "measure", _fake_measure(calls))
    df = bs.run_scaling(tmp_path, [100, 1000], ["lru", "slora"], echo=lambda s: None)
    assert calls == [("lru", 100), ("lru", 1000), ("slora", 1000)] and len(df) == 3
    assert len(pd.read_csv(tmp_path / "scaling.csv")) == 3
    calls.clear()
    df = bs.run_scaling(tmp_path, [100, 1000, 3000], ["lru", "slora"], echo=lambda s: None)
    assert calls == [("lru", 3000), ("slora", 3000)] and len(df) == 5
    png = bs.plot(df, tmp_path / "scaling.png")
    assert png.stat().st_size > 1000


def test_verdicts_judge_only_the_million_request_points():
    df = pd.DataFrame([
        {"policy": "lru", "requests": 1_000_000, "seconds": 50.0, "peak_rss_mb": 1500.0},
        {"policy": "lookahead", "requests": 1_000_000, "seconds": 130.0, "peak_rss_mb": 2100.0},
    ])
    lines = bs.verdicts(df)
    assert "60 s: met" in lines[0] and "2048 MB: met" in lines[0]
    assert "120 s: missed" in lines[1] and "2048 MB: missed" in lines[1]
    small = bs.verdicts(df.assign(requests=1000))
    assert all("targets are for 1,000,000" in x for x in small)


def test_bad_options_are_one_line_errors(tmp_path):
    app = typer.Typer()
    register(app)
    r = CliRunner().invoke(app, ["bench-scale", "--out", str(tmp_path), "--sizes", "10,x"])
    assert r.exit_code == 2 and "--sizes" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["bench-scale", "--out", str(tmp_path), "--policies", "lru,nope"])
    assert r.exit_code == 2 and "--policies" in r.output


def test_one_real_point_in_a_fresh_process():
    row = bs.measure("lru", 200)
    assert row["completed"] == 200 and row["seconds"] > 0 and row["peak_rss_mb"] > 10


def test_a_point_whose_process_dies_is_a_one_line_error(tmp_path, monkeypatch):
    def dead(policy, n):
        raise RuntimeError(f"{policy} at {n:,d} requests: the run's process exited with code -9 before reporting")

    monkeypatch.setattr(bs, "measure", dead)
    app = typer.Typer()
    register(app)
    r = CliRunner().invoke(app, ["bench-scale", "--out", str(tmp_path), "--sizes", "100"])
    assert r.exit_code == 2 and "exited with code -9" in r.output and "Traceback" not in r.output
