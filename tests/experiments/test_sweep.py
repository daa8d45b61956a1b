"""Sweep expansion: grid counts, zip, repeats, equal memory, run ids and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from experiments.slots import SLOT_RULES, equal_memory_slots, register_slot_rule
from experiments.sweep import build_sweep, load_sweep, run_id_of
from sim.errors import ConfigError

BASE = {
    "name": "t",
    "seed": 7,
    "adapters": {"count": 8, "rank": 16},
    "workload": {"num_requests": 20, "arrival": {"process": "poisson", "rate": 2.0}},
}


def sweep(**kw):
    return build_sweep({"base": BASE, **kw}, source="sw.yaml")


def test_grid_is_the_product_of_axes_times_policies_and_repeats():
    sw = sweep(
        policies=["lru", "slora", "overlap"],
        axes={"workload.arrival.rate": [1, 2, 4], "adapters.count": [8, 16]},
        repeats=2,
    )
    assert len(sw.runs) == 3 * 2 * 3 * 2
    assert len({r.run_id for r in sw.runs}) == len(sw.runs)
    rates = sorted({r.scenario.workload.arrival.rate for r in sw.runs})
    assert rates == [1, 2, 4]
    assert {r.scenario.seed for r in sw.runs} == {7, 8}
    # every run carries only its own policy
    assert all(r.scenario.policies == [r.policy] for r in sw.runs)


def test_zip_varies_keys_together_instead_of_crossing_them():
    sw = sweep(
        policies=["lru"],
        axes={
            "name": ["uni", "zipf", "x"],
            "workload.adapter_choice": [{"dist": "uniform"}, {"dist": "zipf", "s": 1.5}, {"dist": "distinct"}],
            "workload.arrival.rate": [1, 3],
        },
        zip=[["name", "workload.adapter_choice"]],
    )
    assert len(sw.runs) == 3 * 2
    pairs = {(r.scenario.name, r.scenario.workload.adapter_choice.dist) for r in sw.runs}
    assert pairs == {("uni", "uniform"), ("zipf", "zipf"), ("x", "distinct")}
    # the name stands for its zipped keys in the group label; the rate still shows
    assert {r.group for r in sw.runs} == {f"{n}, rate={v}" for n in ("uni", "zipf", "x") for v in (1, 3)}


def test_zip_groups_need_equal_lengths():
    with pytest.raises(ConfigError, match=r"sw\.yaml: zip\[0\]: .*equal lengths"):
        sweep(axes={"seed": [1, 2], "workload.arrival.rate": [1, 2, 3]}, zip=[["seed", "workload.arrival.rate"]])


def test_policy_axis_zipped_with_a_knob():
    sw = sweep(axes={"policy": ["lru", "slora"], "serving.max_loras_prefetch": [0, 4]},
               zip=[["policy", "serving.max_loras_prefetch"]])
    assert {(r.policy, r.scenario.serving.max_loras_prefetch) for r in sw.runs} == {("lru", 0), ("slora", 4)}
    # knobs zipped with the policy belong to the policy: both runs are one workload group
    assert {r.group for r in sw.runs} == {"all"}


def test_equal_memory_gives_slora_8_plus_8_and_lru_16():
    sw = sweep(policies=["lru", "slora", "overlap", "resident"],
               equal_memory={"adapter_slots": 16, "prefetch_share": 0.5})
    slots = {r.policy: (r.scenario.serving.max_loras_per_batch, r.scenario.serving.max_loras_prefetch)
             for r in sw.runs}
    assert slots == {"lru": (16, 0), "slora": (8, 8), "overlap": (16, 0), "resident": (16, 0)}
    # same total GPU adapter memory for every policy
    assert len({sum(v) for v in slots.values()}) == 1


def test_equal_memory_table_defaults_and_extension():
    assert equal_memory_slots("brand-new-policy", 16, 0.5) == (16, 0)
    assert equal_memory_slots("slora", 16, 0.25) == (12, 4)
    register_slot_rule("mine")  # declares it uses prefetch slots
    try:
        assert equal_memory_slots("mine", 10, 0.5) == (5, 5)
    finally:
        SLOT_RULES.pop("mine")


def test_equal_memory_slots_axis():
    sw = sweep(policies=["lru", "slora"], equal_memory={"adapter_slots": 16},
               axes={"equal_memory.adapter_slots": [8, 16]})
    got = {(r.policy, r.params["equal_memory.adapter_slots"]): r.scenario.serving.max_loras_per_batch
           for r in sw.runs}
    assert got == {("lru", 8): 8, ("lru", 16): 16, ("slora", 8): 4, ("slora", 16): 8}


def test_equal_memory_forbids_varying_slot_counts_directly():
    with pytest.raises(ConfigError, match=r"axes\.serving\.max_loras_per_batch"):
        sweep(equal_memory={"adapter_slots": 16}, axes={"serving.max_loras_per_batch": [4, 8]})


def test_bad_axis_key_names_the_sweep_file_and_the_axis(tmp_path: Path):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump({"base": BASE, "policies": ["lru"],
                                 "axes": {"serving.max_lora_per_batch": [4, 8]}}))
    with pytest.raises(ConfigError) as ei:
        load_sweep(f)
    assert ei.value.source == str(f)
    assert ei.value.key == "axes.serving.max_lora_per_batch"
    assert "\n" not in str(ei.value)


def test_bad_axis_value_names_the_axis():
    with pytest.raises(ConfigError) as ei:
        sweep(policies=["lru"], axes={"workload.arrival.rate": [1, -2]})
    assert ei.value.key == "axes.workload.arrival.rate" and "-2" in ei.value.message


def test_axis_through_a_scalar_is_an_error():
    with pytest.raises(ConfigError, match=r"axes\.seed\.x"):
        sweep(axes={"seed.x": [1]})


def test_unknown_sweep_key_and_unknown_policy():
    with pytest.raises(ConfigError, match=r"sw\.yaml: axis"):
        sweep(axis={"seed": [1]})
    with pytest.raises(ConfigError, match=r"sw\.yaml: policies: .*nosuch"):
        sweep(policies=["nosuch"])


def test_base_file_is_relative_to_the_sweep_file(tmp_path: Path):
    (tmp_path / "sc").mkdir()
    (tmp_path / "sc" / "base.yaml").write_text(yaml.safe_dump(BASE))
    f = tmp_path / "sweeps" / "s.yaml"
    f.parent.mkdir()
    f.write_text(yaml.safe_dump({"base_file": "../sc/base.yaml", "policies": ["lru", "overlap"]}))
    sw = load_sweep(f)
    assert sw.name == "s" and len(sw.runs) == 2
    assert sw.runs[0].scenario.adapters.count == 8


def test_run_id_is_a_stable_content_hash():
    a = sweep(policies=["lru"]).runs[0]
    b = sweep(policies=["lru"]).runs[0]
    assert a.run_id == b.run_id and len(a.run_id) == 12
    assert run_id_of({"x": 1, "y": 2}, "lru") == run_id_of({"y": 2, "x": 1}, "lru")
    assert run_id_of({"x": 1}, "lru") != run_id_of({"x": 1}, "slora")


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "sweeps").glob("*.yaml")) + [ROOT / "configs" / "demo_sweep.yaml"],
                         ids=lambda p: p.name)
def test_shipped_sweeps_expand_into_valid_runs(path: Path):
    sw = load_sweep(path)
    assert sw.runs and len({r.run_id for r in sw.runs}) == len(sw.runs)
    if sw.equal_memory:
        # every policy of a workload group gets the same GPU adapter memory (a sweep may vary
        # it as an axis, equal_memory.adapter_slots, from group to group)
        mem: dict[str, set[int]] = {}
        for r in sw.runs:
            mem.setdefault(r.group, set()).add(r.scenario.serving.max_loras_per_batch + r.scenario.serving.max_loras_prefetch)
        assert all(len(m) == 1 for m in mem.values())
        if "equal_memory.adapter_slots" not in load_sweep_axes(path):
            assert set().union(*mem.values()) == {sw.equal_memory["adapter_slots"]}


def load_sweep_axes(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text()).get("axes", {})


def test_demo_sweep_compares_every_policy_on_three_workloads():
    sw = load_sweep(ROOT / "configs" / "demo_sweep.yaml")
    assert {r.group for r in sw.runs} == {"uniform", "zipf", "phased"}
    assert {r.policy for r in sw.runs} == {"lru", "slora", "overlap", "history", "lookahead", "resident"}
    assert len(sw.runs) == 18


def test_run_id_changes_with_the_model_code_and_the_profile_bytes(tmp_path, monkeypatch):
    """A resumed sweep must not reuse runs that older code or another profile computed."""
    import experiments.sweep as sweep

    prof = tmp_path / "hw.yaml"
    prof.write_text("v: 1\n")
    sc = {"name": "x", "hardware": {"profile": str(prof)}}
    first = sweep.run_id_of(sc, "lru")
    assert sweep.run_id_of(sc, "lru") == first
    assert sweep.run_id_of(sc, "overlap") != first
    prof.write_text("v: 2\n")
    second = sweep.run_id_of(sc, "lru")
    assert second != first
    monkeypatch.setattr(sweep, "model_revision", lambda: "another-rev")
    assert sweep.run_id_of(sc, "lru") != second
