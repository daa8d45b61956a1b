"""Every committed scenario file loads: a typo in one that only a GPU call reads (the
configs/validate scenarios) would otherwise surface on the device, where time is scarce."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.runner import load_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "configs/scenarios").glob("*.yaml")) + sorted((ROOT / "configs/validate").rglob("*.yaml"))


def test_the_scenario_folders_are_not_empty():
    assert any("validate" in p.parts for p in SCENARIOS)
    assert any("scenarios" in p.parts for p in SCENARIOS)


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_scenario_loads(path):
    sc = load_scenario(path)
    assert sc.name
    assert sc.workload.num_requests > 0
