"""The CUDA driver refuses unified adapter memory in one line (its adapters live in fixed
slots; docs/unified_memory.md) rather than running it on slots."""

import pytest

pytest.importorskip("torch")

from gpu.driver import refuse_unified  # noqa: E402
from sim.core.engine import Engine  # noqa: E402
from sim.policies import registry  # noqa: E402
from sim.runner import serving_knobs  # noqa: E402
from tests.sim.fakes import fixed_hw, make_trace, scenario  # noqa: E402


@pytest.mark.parametrize("policy,memory", [("idle_cache", "slots"), ("lru", "unified")])
def test_unified_engines_are_refused_with_one_line(policy, memory):
    trace = make_trace([(0.0, "a0", 8, 1)], n_adapters=1)
    sc = scenario(adapter_memory=memory)
    eng = Engine(trace, serving_knobs(sc, trace), registry.create(policy), estimator=fixed_hw())
    with pytest.raises(ValueError, match="not supported by the CUDA driver") as e:
        refuse_unified(eng)
    assert "\n" not in str(e.value)


def test_slot_engines_pass():
    trace = make_trace([(0.0, "a0", 8, 1)], n_adapters=1)
    sc = scenario()
    refuse_unified(Engine(trace, serving_knobs(sc, trace), registry.create("lru"), estimator=fixed_hw()))
