"""Reproduction files: the shipped ones validate, and bad published data or keys fail in one
line naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from experiments.reproduction_spec import load_reproduction, load_reproductions
from sim.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "configs" / "reproductions"

GOOD = {
    "name": "tiny",
    "title": "a tiny published run",
    "source": {"url": "https://example.org/pr/1", "where": "PR description", "setup": ["4 adapters"]},
    "scenario": {
        "seed": 1, "adapters": {"count": 4, "rank": 16},
        "workload": {"num_requests": 8, "arrival": {"process": "poisson", "rate": 20},
                     "input_len": {"dist": "fixed", "len": 32}, "output_len": {"dist": "fixed", "len": 8}},
        "serving": {"max_loras_per_batch": 2},
    },
    "baseline": {"label": "blocking", "policy": "lru"},
    "feature": {"label": "prefetch", "policy": "slora", "set": {"serving.max_loras_prefetch": 2}},
    "published": {"baseline": {"ttft_mean_ms": 100, "tpot_median_ms": 10},
                  "feature": {"ttft_mean_ms": 50, "tpot_median_ms": 9}},
    "variants": [{"name": "rank 64", "why": "bigger adapters", "set": {"adapters.rank": 64,
                                                                      "serving.max_loras_prefetch@feature": 1}}],
}


def write(tmp_path: Path, data: dict, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def test_shipped_reproductions_validate_with_published_numbers_for_both_sides():
    reps = load_reproductions(SHIPPED)
    names = {r.name for r in reps}
    assert {"sglang-pr15512-overlap", "sglang-pr14190-prefetch", "sglang-docs-overlap-worst-case"} <= names
    for r in reps:
        assert r.spec.source.url.startswith("https://")
        assert set(r.spec.published.baseline) == set(r.spec.published.feature)


def test_side_keys_and_side_suffixed_variant_keys_reach_only_their_side(tmp_path):
    rep = load_reproduction(write(tmp_path, GOOD))
    v = rep.spec.variants[0].set
    base, feat = rep.side_scenario("baseline", v), rep.side_scenario("feature", v)
    assert base["adapters"]["rank"] == feat["adapters"]["rank"] == 64
    assert "max_loras_prefetch" not in base["serving"] and feat["serving"]["max_loras_prefetch"] == 1
    assert base["policies"] == ["lru"] and feat["policies"] == ["slora"]
    assert rep.side_scenario("feature")["serving"]["max_loras_prefetch"] == 2
    assert "max_loras_prefetch" not in rep.scenario["serving"]  # the base mapping is not touched


def test_scenario_file_resolves_against_the_reproduction_folder(tmp_path):
    (tmp_path / "sc.yaml").write_text(yaml.safe_dump(GOOD["scenario"]))
    data = {k: v for k, v in GOOD.items() if k != "scenario"} | {"scenario_file": "sc.yaml"}
    assert load_reproduction(write(tmp_path, data)).scenario["adapters"]["count"] == 4


def _bad(**change):
    data = {**GOOD, **change}
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.parametrize("data, key, says", [
    (_bad(published={"baseline": {"ttft_mean": 1}, "feature": {"ttft_mean": 1}}), "published.baseline",
     "unknown metric"),
    (_bad(published={"baseline": {"ttft_mean_ms": 1}, "feature": {"e2e_mean_ms": 1}}), "published",
     "same metrics"),
    (_bad(published={"baseline": {"ttft_mean_ms": -1}, "feature": {"ttft_mean_ms": 1}}), "published.baseline",
     "> 0"),
    (_bad(published={"baseline": {"ttft_mean_ms": "fast"}, "feature": {"ttft_mean_ms": 1}}),
     "published.baseline.ttft_mean_ms", "number"),
    (_bad(published=None), "published", "required"),
    (_bad(source={"url": "https://x"}), "source.where", "required"),
    (_bad(scenario_file="other.yaml"), "(top level)", "exactly one of"),
    (_bad(variants=[{"name": "v", "why": "w", "set": {"serving.x@both": 1}}]), "variants[0].set", "@baseline"),
    (_bad(colour="red"), "colour", "Extra inputs"),
    (_bad(missing={"e2e_mean_ms": "x"}), "(top level)", "names no published metric"),
    (_bad(missing={"ttft_mean_ms@gpu": "x"}), "(top level)", "@analytic or @measured"),
    (_bad(missing={"ttft_mean_ms": " "}), "(top level)", "say which mechanism"),
])
def test_bad_reproduction_file_names_file_and_key(tmp_path, data, key, says):
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as e:
        load_reproduction(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and key in msg and says in msg


def test_a_side_key_that_breaks_the_scenario_names_the_side_and_the_scenario_key(tmp_path):
    data = _bad(feature={"label": "f", "policy": "slora", "set": {"serving.max_loras_per_batch": 0}})
    with pytest.raises(ConfigError) as e:
        load_reproduction(write(tmp_path, data))
    assert "feature" in str(e.value) and "serving.max_loras_per_batch" in str(e.value)


def test_unknown_policy_and_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match="policies"):
        load_reproduction(write(tmp_path, _bad(feature={"label": "f", "policy": "nope"})))
    with pytest.raises(ConfigError, match="not found"):
        load_reproductions(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no reproduction files"):
        load_reproductions(tmp_path / "empty")


def test_two_files_with_one_name_are_refused(tmp_path):
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD, "b.yaml")
    with pytest.raises(ConfigError, match="names must differ"):
        load_reproductions(tmp_path)
