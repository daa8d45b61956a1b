"""`lorasim run` end to end, and bad input -> one line, exit 2, no traceback."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def lorasim(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "sim", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_run_compares_policies_and_writes_results(tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text(
        "name: small\nadapters: {count: 6, rank: 16}\n"
        "workload: {num_requests: 40, arrival: {process: poisson, rate: 20}}\n"
        "serving: {max_loras_per_batch: 2, max_loras_prefetch: 2}\n"
    )
    r = lorasim("run", cfg, "-p", "lru", "-p", "slora", "-p", "resident", "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "lru" in r.stdout and "slora" in r.stdout and "resident" in r.stdout
    summ = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [s["policy"] for s in summ] == ["lru", "slora", "resident"]
    rec = pd.read_parquet(tmp_path / "out" / "records_lru.parquet")
    assert len(rec) == 40
    assert (tmp_path / "out" / "trace.csv").exists()


@pytest.mark.parametrize(
    "yaml_text,key",
    [
        ("adapters: {count: 0}\n", "adapters.count"),
        ("adapters: {count: 2}\nworkload: {arrival: {rate: 0}}\n", "workload.arrival.rate"),
        ("adapters: {count: 2}\npolicies: [lru, bogus]\n", "policies"),
        ("adapters: {count: 2}\nworkload: {adapter_choice: {dist: skewed, alpha: 0.5}}\n", "workload.adapter_choice"),
        ("adapters: {count: 2}\nserving: {max_loras_per_batch: 8, max_loaded_loras: 2}\n", "serving"),
        ("adapters: {count: 2}\nserving: {slots: 3}\n", "serving.slots"),
        ("adapters: {count: 2, rank: -1}\n", "adapters.rank"),
        ("adapters: [1, 2\n", "line"),
        (":::\n", "not a scenario: no known key (got '::')"),
        ("- a\n- b\n", "expected a mapping of scenario keys, got list"),
    ],
)
def test_bad_config_is_one_line_naming_file_and_key(tmp_path, yaml_text, key):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    r = lorasim("run", cfg)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(cfg) in lines[0] and key in lines[0]
    assert "Traceback" not in r.stderr


def test_impossible_scenario_is_rejected_up_front(tmp_path):
    cfg = tmp_path / "s.yaml"
    cfg.write_text(
        "adapters: {count: 2}\nworkload: {num_requests: 3, input_len: {len: 4000}}\n"
        "serving: {kv_cache_tokens: 1000}\n"
    )
    r = lorasim("run", cfg, "-p", "lru")
    assert r.returncode == 2 and "kv_cache_tokens" in r.stderr and "Traceback" not in r.stderr


def test_missing_file_and_help():
    r = lorasim("run", "nope.yaml")
    assert r.returncode == 2 and "nope.yaml" in r.stderr and "not found" in r.stderr
    h = lorasim("--help")
    assert h.returncode == 0 and "run" in h.stdout and "bench" in h.stdout


def test_policies_lists_each_policys_options_with_defaults():
    r = lorasim("policies")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("lookahead "))
    assert "loads_on_arrival=True" in lines[i + 1] and "max_inflight=2" in lines[i + 1]


def test_listed_policy_options_are_the_ones_each_policy_accepts():
    from sim.policies import registry

    for name in registry.names():
        opts = registry.options(name)
        registry.create(name, **opts)  # the listed defaults are accepted as given
        with pytest.raises(ValueError, match="option|takes no options"):
            registry.create(name, not_an_option=1)


def test_a_file_that_is_no_sweep_says_so(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(":::\n")
    r = lorasim("sweep", cfg, "--out", tmp_path / "out")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: {cfg}: not a sweep: no known key (got '::'); expected a mapping of axes, base, base_file, "
        "description, equal_memory, name, policies, repeats, zip"]
