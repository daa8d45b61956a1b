"""`lorasim gap`: paired-by-seed comparison of one policy with the best other, oracle gaps,
and the committed-results fallback of the store (a fresh clone has no per-run index)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from experiments.cli import register
from experiments.gap import GapSpec, gap_closed, gap_table, paired
from sim.errors import LorasimError

# P99 TTFT per seed: lookahead beats overlap by 10 % in every seed, lru is the reference
P99 = {"lru": [200, 220, 240], "overlap": [110, 120, 130], "lookahead": [99, 108, 117],
       "zero_load": [100, 100, 100], "resident": [50, 50, 50]}


def committed_results(root: Path) -> Path:
    """A results folder as git keeps it: manifest and summaries.parquet, no index/ or runs/."""
    rows, runs = [], []
    for pol, vals in P99.items():
        for seed, v in zip((1, 2, 3), vals, strict=True):
            rid = f"{pol}-{seed}"
            runs.append({"run_id": rid, "group": "w", "policy": pol})
            rows.append({"run_id": rid, "policy": pol, "group": "w", "seed": seed, "status": "ok", "error": "",
                         "ttft_p99_ms": float(v), "ttft_median_ms": float(v) / 2, "e2e_mean_ms": 1000.0 + v})
    root.mkdir()
    (root / "manifest.json").write_text(json.dumps({"name": "t", "policies": list(P99), "runs": runs}))
    pd.DataFrame(rows).to_parquet(root / "summaries.parquet", index=False)
    return root


def test_paired_picks_the_best_other_and_pairs_by_seed():
    p = pd.DataFrame({k: v for k, v in P99.items() if k in ("lru", "overlap", "lookahead")})
    c = paired(p, "lookahead", ["lru", "overlap"])
    assert c.text == "108/120 overlap (-10.0 ± 0.0 %, 3/3)"
    assert c.z == 0.0  # no spread and better: not worse by any standard error
    worse = paired(p.assign(lookahead=[121, 121, 131]), "lookahead", ["overlap"])
    assert worse.text.startswith("124/120 overlap (+") and worse.text.endswith("0/3)")
    assert worse.z > 1


def test_gap_closed_is_the_share_of_the_reference_excess():
    p99 = pd.Series({"lru": 220.0, "lookahead": 108.0, "zero_load": 100.0, "resident": 50.0})
    assert gap_closed(p99, "lru", "lookahead", "zero_load") == "93%"
    assert gap_closed(p99, "lru", "lookahead", "resident") == "66%"
    assert gap_closed(pd.Series({"lru": 100.5, "lookahead": 100.0, "zero_load": 100.0}), "lru", "lookahead",
                      "zero_load").startswith("n/a")


def test_gap_table_reads_a_committed_results_folder(tmp_path):
    root = committed_results(tmp_path / "r")
    text = gap_table(root, GapSpec(policy="lookahead", against=["lru", "overlap"], oracles=["zero_load", "resident"]))
    assert "| w " in text and "108/120 overlap (-10.0 ± 0.0 %, 3/3)" in text
    assert "93%" in text and "66%" in text
    assert "3/3 cells" in text


def test_gap_table_names_missing_policies(tmp_path):
    root = committed_results(tmp_path / "r")
    with pytest.raises(LorasimError, match="no ok runs of history"):
        gap_table(root, GapSpec(policy="lookahead", against=["history"]))


def test_gap_command_writes_gap_md_and_errors_in_one_line(tmp_path):
    app = typer.Typer()
    register(app)
    root = committed_results(tmp_path / "r")
    r = CliRunner().invoke(app, ["gap", str(root), "--against", "lru,overlap", "--oracle", "zero_load"])
    assert r.exit_code == 0, r.output
    assert "vs zero_load" in (root / "gap.md").read_text()
    r = CliRunner().invoke(app, ["gap", str(tmp_path / "nowhere")])
    assert r.exit_code == 2
    assert r.output.strip().startswith("error:") and "manifest.json" in r.output
    assert len(r.output.strip().splitlines()) == 1
