"""A single load on the analytic H200 model: copy time = n x (overhead + size / bandwidth)."""

import pytest

from sim.config import HardwareCfg, parse_scenario
from sim.core.model import ModelShape
from sim.hw import load_hardware
from sim.runner import simulate
from tests.sim.fakes import make_trace


@pytest.mark.parametrize("copy_mode,n_copies", [("flat", 1), ("per_module", 2)])
def test_single_load_copy_time_is_bytes_over_bandwidth_plus_overhead(copy_mode, n_copies):
    nbytes = 320 << 20
    trace = make_trace([(0.0, "a0", 16, 1)], n_adapters=1, nbytes=nbytes)  # n_tensors = 2
    sc = parse_scenario(
        {"adapters": {"count": 1}, "serving": {"copy_mode": copy_mode, "host_mode": "pinned"},
         "hardware": {"pinned_gbps": 50.0, "copy_overhead_us": 4.0}}
    )
    hw = load_hardware(HardwareCfg(pinned_gbps=50.0, copy_overhead_us=4.0), ModelShape())
    res = simulate(sc, "lru", trace=trace, hardware=hw)
    pcie = res.timeline[res.timeline.lane == "pcie"]
    assert len(pcie) == 1
    expected = n_copies * (4e-6 + (nbytes / n_copies) / 50e9)
    assert (pcie.end - pcie.start).iloc[0] == pytest.approx(expected, rel=1e-9)
    # the blocking copy sits on the compute stream right before the prefill; the idle
    # scheduler sees the t=0 arrival after its wake-up latency
    assert pcie.start.iloc[0] == pytest.approx(hw.wake_s, rel=1e-9)
    prefill = res.timeline[(res.timeline.lane == "compute") & (res.timeline.kind == "prefill")]
    assert prefill.start.iloc[0] == pytest.approx(hw.wake_s + expected, rel=1e-9)
