"""`lorasim rank`: policy orders on the GPU vs the simulator, and pairing by trace."""

from __future__ import annotations

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from experiments.cli import register
from experiments.ranking import orders, pairwise, read_errors
from sim.errors import LorasimError


def errors_csv(path, swap_sim: bool = False):
    """Two traces, three policies: GPU order a < b < resident-free c on every metric; the
    simulator agrees unless swap_sim (then it ranks b before a)."""
    gpu = {"a": 100.0, "b": 110.0, "c": 150.0, "resident": 10.0}
    rows = []
    for trace, scale in (("w-s1", 1.0), ("w-s2", 1.2)):
        for pol, v in gpu.items():
            sim = v * scale
            if swap_sim and pol in ("a", "b"):
                sim = gpu["b" if pol == "a" else "a"] * scale
            for m in ("ttft_median_ms", "ttft_p99_ms", "e2e_mean_ms"):
                rows.append({"scenario": trace, "workload": "w", "policy": pol, "metric": m,
                             "gpu": v * scale, "sim": sim, "rel_err": 0.0})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_orders_agree_and_disagree(tmp_path):
    same = orders(read_errors([errors_csv(tmp_path / "e.csv")]))
    assert "a < b < c | a < b < c | yes" in same
    assert "same whole order: 3/3" in same and "resident" not in same.split("Same")[0]
    swapped = orders(read_errors([errors_csv(tmp_path / "f.csv", swap_sim=True)]))
    assert "a < b < c | b < a < c | no" in swapped
    assert "Same best policy: 0/3; same worst: 3/3; same whole order: 0/3" in swapped


def test_pairwise_pairs_by_trace(tmp_path):
    text = pairwise(read_errors([errors_csv(tmp_path / "e.csv")]), "a", ["b"])
    # a is 100/110 of b in both traces: -9.1 % with no spread, better in 2 of 2
    assert "110/121 (-9.1 ± 0.0 %, 2/2)" in text
    with pytest.raises(LorasimError, match="no rows of z"):
        pairwise(read_errors([tmp_path / "e.csv"]), "a", ["z"])


def test_later_files_replace_earlier_cells(tmp_path):
    e = errors_csv(tmp_path / "e.csv")
    f = errors_csv(tmp_path / "f.csv", swap_sim=True)
    assert "b < a < c" in orders(read_errors([e, f]))
    assert "b < a < c" not in orders(read_errors([f, e]))


def test_rank_command_and_bad_input(tmp_path):
    app = typer.Typer()
    register(app)
    e = errors_csv(tmp_path / "e.csv")
    r = CliRunner().invoke(app, ["rank", str(e), "--policy", "a", "--out", str(tmp_path / "r.md")])
    assert r.exit_code == 0, r.output
    assert "a against the others" in (tmp_path / "r.md").read_text()
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    r = CliRunner().invoke(app, ["rank", str(bad)])
    assert r.exit_code == 2 and "columns scenario" in r.output and len(r.output.strip().splitlines()) == 1


def _flip_at_high_rate(sc, policy):
    """fake_run, except that at rate 20 overlap becomes slower than lru on every metric."""
    from _exp_fakes import fake_run

    r = fake_run(sc, policy)
    if sc.workload.arrival.rate == 20 and policy == "overlap":
        r.summary.update({k: v * 10 for k, v in r.summary.items() if k.endswith("_ms")})
    return r


def test_orders_across_an_axis_tell_where_the_ranking_moves(tmp_path):
    from experiments.ranking import orders_across
    from experiments.runner import run_sweep
    from experiments.sweep import build_sweep

    sw = build_sweep({"name": "ra", "base": {"adapters": {"count": 4}, "workload": {"num_requests": 20}},
                      "policies": ["lru", "overlap", "resident"],
                      "axes": {"workload.arrival.rate": [1, 20]}}, source="ra.yaml")
    run_sweep(sw, tmp_path, run_fn=_flip_at_high_rate, workers=1, progress=False)
    text = orders_across(tmp_path, "workload.arrival.rate")
    rows = [line for line in text.splitlines() if line.startswith("| all |")]
    assert len(rows) == 3  # P50, P99 TTFT, mean E2E
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2:] == ["overlap < lru", "lru < overlap", "no"]  # resident left out
    assert "same whole order: 0/3" in text
    with pytest.raises(LorasimError, match="no axis 'hardware'"):
        orders_across(tmp_path, "hardware")
