"""`lorasim reproduce`: runs every reproduction under each GPU model, judges direction and
size against issue #27's criteria, writes the table and the page; bad input exits 2 in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from experiments.reproduce import STATED, Verdict, gpu_models, plan, reproduce, verdicts
from experiments.reproduction_spec import load_reproduction
from tests.experiments.test_reproduction_spec import GOOD

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "configs" / "hardware" / "h200-analytic.yaml"
WORST = ROOT / "configs" / "reproductions" / "sglang_docs_overlap_worst_case.yaml"


def lorasim(*args):
    return subprocess.run([sys.executable, "-m", "sim", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "repros"
    d.mkdir()
    (d / "tiny.yaml").write_text(yaml.safe_dump(GOOD))
    return d


def test_verdict_direction_error_and_criteria():
    v = Verdict("ttft_mean_ms", (100.0, 50.0), (110.0, 60.0))
    assert v.direction_ok and v.errors == pytest.approx((0.1, 0.2)) and v.within and v.passed
    assert not Verdict("ttft_mean_ms", (100.0, 50.0), (100.0, 130.0)).passed  # 30 % off
    assert not Verdict("ttft_mean_ms", (100.0, 50.0), (100.0, 110.0)).direction_ok
    # median TTFT: a factor, not a percentage
    assert Verdict("ttft_median_ms", (100.0, 50.0), (140.0, 35.0)).within
    assert not Verdict("ttft_median_ms", (100.0, 50.0), (100.0, 30.0)).within
    # a metric the issue sets no size for is judged on direction only
    free = Verdict("e2e_max_ms", (28.0, 82.0), (10.0, 20.0))
    assert free.within is None and free.passed


def test_plan_runs_each_model_and_variants_on_the_first_only(folder):
    rep = load_reproduction(folder / "tiny.yaml")
    models = gpu_models("h200", [PROFILE])
    jobs = plan([rep], models)
    main = [(j.model.key, j.side) for j in jobs if not j.variant]
    assert main == [(m.key, s) for m in models for s in ("baseline", "feature", "resident")]
    assert {j.model.key for j in jobs if j.variant} == {"analytic:h200"}
    prof = next(j for j in jobs if j.model.key == "profile:h200-analytic")
    assert prof.scenario["hardware"]["profile"] == str(PROFILE)
    v = next(j for j in jobs if j.variant and j.side == "feature")
    assert v.scenario["adapters"]["rank"] == 64 and v.scenario["hardware"]["preset"] == "h200"


def test_a_variant_for_the_measured_models_runs_on_each_profile_only(folder):
    import copy

    spec = copy.deepcopy(GOOD)
    spec["variants"] = [{"name": "lora x0.5", "why": "what if", "set": {"hardware.lora_compute_scale": 0.5},
                         "models": "measured"}]
    (folder / "tiny.yaml").write_text(yaml.safe_dump(spec))
    rep = load_reproduction(folder / "tiny.yaml")
    jobs = plan([rep], gpu_models("h200", [PROFILE, PROFILE]))
    varied = [j for j in jobs if j.variant]
    assert {j.model.key for j in varied} == {"profile:h200-analytic"}
    assert len(varied) == 2 * 3  # each profile column: baseline, feature, resident
    assert all(j.scenario["hardware"]["lora_compute_scale"] == 0.5 for j in varied)


def test_reproduce_writes_table_and_page_with_published_next_to_simulated(folder, tmp_path):
    docs = tmp_path / "docs" / "repro.md"
    docs.parent.mkdir()
    res = reproduce(folder, tmp_path / "out", docs, profiles=[PROFILE], command="lorasim reproduce X",
                    progress=False)
    t = pd.read_csv(res.paths["summaries"])
    rows = t[(t.model == "analytic:h200") & (t.variant.isna()) & (t.metric == "ttft_mean_ms")]
    assert set(rows.side) == {"baseline", "feature", "resident"}
    assert rows.set_index("side").published["baseline"] == 100
    assert (tmp_path / "out" / "runs" / "tiny" / "analytic_h200" / "published" / "feature.parquet").is_file()
    text = docs.read_text()
    assert text == (tmp_path / "out" / "report.md").read_text()
    assert "`lorasim reproduce X`" in text and "https://example.org/pr/1" in text
    assert "| mean TTFT | 100 → 50.0 |" in text and "### What-if variants (analytic h200)" in text
    assert "measured h200-analytic" in text and "| rank 64 |" in text
    vs = verdicts(res.table, "tiny", "analytic:h200")
    assert {v.metric for v in vs} == {"ttft_mean_ms", "tpot_median_ms"}


def test_a_miss_says_which_mechanism_is_missing_or_that_none_is_found(folder, tmp_path):
    import copy

    spec = copy.deepcopy(GOOD)  # published numbers the tiny run cannot meet: every row misses
    spec["published"] = {"baseline": {"ttft_mean_ms": 1e6, "tpot_median_ms": 1e6},
                         "feature": {"ttft_mean_ms": 2e6, "tpot_median_ms": 2e6}}
    spec["missing"] = {"ttft_mean_ms": "a slower engine", "ttft_mean_ms@measured": "a slower profile"}
    (folder / "tiny.yaml").write_text(yaml.safe_dump(spec))
    docs = tmp_path / "repro.md"
    reproduce(folder, tmp_path / "out", docs, profiles=[PROFILE], progress=False)
    lines = docs.read_text().splitlines()
    ttft = [ln for ln in lines if ln.startswith("| mean TTFT |")]
    tpot = [ln for ln in lines if ln.startswith("| median TPOT |")]
    assert ttft[0].endswith("| **no** | a slower engine |")  # analytic, then the measured profile
    assert ttft[1].endswith("| **no** | a slower profile |")
    assert all(ln.endswith("| **no** | not found |") for ln in tpot) and len(tpot) == 2


def test_stated_costs_give_the_sglang_docs_worst_case_exactly(tmp_path):
    res = reproduce(WORST, tmp_path / "out", None, profiles=[], progress=False)
    (v,) = verdicts(res.table, "sglang-docs-overlap-worst-case", STATED.key)
    assert v.sim == pytest.approx((28.0, 82.0)) and v.passed
    (a,) = verdicts(res.table, "sglang-docs-overlap-worst-case", "analytic:h200")
    assert a.direction_ok  # overlap is slower than blocking on the analytic H200 too


def test_cli_prints_a_line_per_model_and_writes_the_page(folder, tmp_path):
    docs = tmp_path / "page.md"
    r = lorasim("reproduce", folder, "--out", tmp_path / "out", "--docs", docs, "--no-profile", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "tiny [analytic h200]:" in r.stdout and "metrics pass" in r.stdout
    assert f"--docs {docs} --no-profile" in docs.read_text()


def test_cli_help_explains_the_command():
    r = lorasim("reproduce", "--help")
    assert r.returncode == 0 and "published" in r.stdout and "--profile" in r.stdout


@pytest.mark.parametrize("args, says", [
    (["--profile", "nope.yaml"], "--profile"),
    (["--analytic", "tpu"], "hardware.preset"),
])
def test_cli_bad_options_exit_2_with_one_line(folder, tmp_path, args, says):
    r = lorasim("reproduce", folder, "--out", tmp_path / "out", "--no-progress", *args)
    assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_bad_reproduction_file_exits_2_naming_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**GOOD, "published": {"baseline": {"ttft": 1}, "feature": {"ttft": 1}}}))
    r = lorasim("reproduce", bad, "--out", tmp_path / "out", "--no-profile", "--no-progress")
    assert r.returncode == 2 and str(bad) in r.stderr and "published.baseline" in r.stderr
