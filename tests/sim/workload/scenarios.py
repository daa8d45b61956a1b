"""Scenario factory for workload tests.

`Scenario.model_construct` skips the top-level validators (the policy-name check imports
the policy package); the nested configs are built, and so validated, normally.
"""

from __future__ import annotations

from sim.config import AdaptersCfg, ModelCfg, Scenario, WorkloadCfg


def make_scenario(
    adapters: AdaptersCfg | None = None,
    workload: WorkloadCfg | None = None,
    seed: int = 0,
    model: str = "llama-3.1-8b",
) -> Scenario:
    return Scenario.model_construct(
        name="test",
        seed=seed,
        model=ModelCfg(preset=model),
        adapters=adapters or AdaptersCfg(count=20, rank=16),
        workload=workload or WorkloadCfg(),
    )
