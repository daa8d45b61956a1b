"""`lorasim check`: random workloads x every policy with invariants on; violations reported
with reproducer YAMLs and exit code 1. The full 10,000-workload run is a CLI/benchmark run."""

import sys

import numpy as np
import pytest
import yaml

from sim import cli
from sim.check import check_workload, post_checks, random_scenario, run_check
from sim.config import load_scenario, parse_scenario
from sim.policies import registry
from sim.policies.lru import BlockingLRU
from sim.runner import simulate
from sim.workload import generate_trace


def test_a_few_hundred_random_workloads_have_no_violations():
    rep = run_check(n=200, seed=12345, workers=1, progress=False)
    assert rep.workloads == 200
    unified = sum(random_scenario(12345, i)["serving"].get("adapter_memory") == "unified" for i in range(200))
    assert 0 < unified < 200
    assert rep.runs == 200 * len(registry.names()) - unified  # slora refuses unified memory
    assert not rep.violations, "\n".join(v.line() for v in rep.violations[:10])


def test_generator_covers_every_knob_and_is_deterministic():
    scs = [random_scenario(7, i) for i in range(400)]
    assert random_scenario(7, 3) == scs[3] and random_scenario(8, 3) != scs[3]
    dists = {s["workload"]["adapter_choice"]["dist"] for s in scs}
    assert dists == {"uniform", "distinct", "skewed", "zipf", "phased"}
    assert any(s["workload"]["adapter_choice"].get("base_fraction", 0) > 0 for s in scs)
    assert {s["workload"]["arrival"]["process"] for s in scs} == {"poisson", "gamma", "burst"}
    assert any(s["workload"]["arrival"].get("rate") == float("inf") for s in scs)
    assert {s["serving"]["copy_mode"] for s in scs} == {"flat", "per_module"}
    assert {s["serving"]["host_mode"] for s in scs} == {"auto", "pinned", "pageable", "pin_per_load"}
    assert {s["serving"]["eviction"] for s in scs} == {"lru", "fifo"}
    assert {s["serving"]["max_loras_prefetch"] for s in scs} >= {0, 1, 4}
    assert any("groups" in s["adapters"] for s in scs)
    # every generated workload validates and is feasible by construction
    for s in scs[:50]:
        parse_scenario(s)


class _Cost:
    pin_s = disk_s = 0.0
    dma_s = total = 0.001


def test_post_checks_flag_overlapping_pcie_and_missing_requests():
    sc = parse_scenario(random_scenario(0, 1))
    trace = generate_trace(sc)
    res = simulate(sc, "lru", trace=trace)
    assert post_checks(trace, res) == []
    tl = res.timeline.copy()
    tl.loc[len(tl)] = ["pcie", 0.0, 1e9, "blocking", trace.adapters[0].name]
    tl.loc[len(tl)] = ["pcie", 1.0, 2.0, "blocking", trace.adapters[0].name]
    res.timeline = tl
    res.records = res.records.iloc[1:]
    res.itl = np.append(res.itl, 0.1)
    kinds = {k for k, _ in post_checks(trace, res)}
    assert {"pcie-lane", "finished-once", "itl-count", "bytes-moved"} <= kinds


class _EvictsRunning(BlockingLRU):
    """Broken on purpose: drops the running requests' adapters after each schedule."""

    name = "broken_evicts"

    def after_schedule(self, plan, now):
        for a in list(self.e.sched.adapters_in_use()):
            if self.e.pool.is_resident(a):
                self.e.pool.evict(a)


@pytest.fixture
def broken_policy(monkeypatch):
    registry.names()  # load the builtins first
    monkeypatch.setitem(registry._REGISTRY, "broken_evicts", _EvictsRunning)
    return "broken_evicts"


def test_violations_exit_1_with_reproducers(broken_policy, tmp_path, monkeypatch, capsys):
    out = tmp_path / "fail"
    monkeypatch.setattr(sys, "argv", ["lorasim", "check", "--n", "6", "--workers", "1", "-p",
                                      broken_policy, "-p", "lru", "--out", str(out), "--keep", "2",
                                      "--no-progress"])
    with pytest.raises(SystemExit) as ei:
        cli.main()
    assert ei.value.code == 1
    text = capsys.readouterr().out
    assert "workloads checked: 6" in text and "runs: 12" in text
    n_viol = int(text.split("violations: ")[1].split()[0])
    assert n_viol >= 1 and "broken_evicts" in text and "InvariantViolation" in text
    files = sorted(out.glob("*.yaml"))
    assert 1 <= len(files) <= 2
    doc = yaml.safe_load(files[0].read_text())
    assert doc["policies"] == [broken_policy]
    # the reproducer replays the failure, and the same scenario passes under a real policy
    sc = load_scenario(files[0])
    with pytest.raises(AssertionError):
        simulate(sc, broken_policy, check=True)
    simulate(sc, "lru", check=True)


def test_check_workload_reports_exceptions_as_violations(broken_policy):
    _, runs, viol = check_workload(0, 0, [broken_policy, "lru"])
    assert runs == 2 and viol and all(v.policy == broken_policy for v in viol)


def test_clean_run_exits_0(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(sys, "argv", ["lorasim", "check", "--n", "3", "--workers", "1",
                                      "--out", str(tmp_path), "--no-progress"])
    with pytest.raises(SystemExit) as ei:
        cli.main()
    assert ei.value.code in (0, None)
    text = capsys.readouterr().out
    assert "workloads checked: 3" in text and "violations: 0" in text
    assert not list(tmp_path.iterdir())
