"""Run-to-run noise (sim.hw.noise): off unless seeded, reproducible per seed, mean-1 factors,
and the SimPy driver scales exactly what it should (every forward by the run's speed, each
load's issue time by its own factor)."""

from dataclasses import replace

import numpy as np
import pytest

from sim.config import HardwareCfg, parse_scenario
from sim.core.model import ModelShape
from sim.hw import RunNoise, load_hardware
from sim.hw.export import analytic_profile
from sim.hw.profile import HardwareProfile
from sim.runner import simulate
from tests.sim.fakes import make_trace

SC = {
    "seed": 5,
    "adapters": {"count": 8, "rank": 16},
    "workload": {"num_requests": 30, "arrival": {"process": "poisson", "rate": 20},
                 "adapter_choice": {"dist": "uniform"},
                 "input_len": {"dist": "fixed", "len": 64}, "output_len": {"dist": "fixed", "len": 8}},
    "serving": {"max_loras_per_batch": 2, "max_loaded_loras": 2, "copy_mode": "per_module"},
}


def _hw(speed_sd=0.0, issue_sd=0.0, issue_us=5.0):
    hw = load_hardware(HardwareCfg(), ModelShape())
    return replace(hw, copy=replace(hw.copy, issue_us=issue_us), noise=RunNoise(speed_sd, issue_sd))


def test_off_without_a_seed_and_reproducible_with_one():
    assert RunNoise(0.5, 0.5).speed() == 1.0 and RunNoise(0.5, 0.5).issue(3) == 1.0
    a, b = RunNoise(0.01, 0.2, seed=7), RunNoise(0.01, 0.2, seed=7)
    assert a.speed() == b.speed() != 1.0 and a.issue(3) == b.issue(3) != a.issue(4)
    assert RunNoise(0.01, 0.2, seed=8).speed() != a.speed()
    speeds = np.array([RunNoise(0.05, 0.0, seed=k).speed() for k in range(4000)])
    assert speeds.mean() == pytest.approx(1.0, abs=0.003)  # mean-1 factors
    assert np.log(speeds).std() == pytest.approx(0.05, rel=0.05)
    issues = np.array([RunNoise(0.0, 0.3, seed=1).issue(lid) for lid in range(4000)])
    assert issues.mean() == pytest.approx(1.0, abs=0.02) and np.log(issues).std() == pytest.approx(0.3, rel=0.05)


def test_a_plain_simulation_ignores_the_noise():
    sc = parse_scenario(SC)
    quiet, noisy = _hw(), _hw(0.05, 0.3)
    a = simulate(sc, "overlap", hardware=quiet)
    b = simulate(sc, "overlap", hardware=noisy)  # no noise_seed: deterministic, the same run
    assert a.summary == b.summary and a.timeline.equals(b.timeline)


def test_the_run_speed_scales_every_forward_exactly():
    """Everything arrives at t=0 and `resident` loads nothing, so no decision depends on
    time: each forward of the noisy run is the quiet one's times the run's speed factor."""
    sc = parse_scenario(SC)
    trace = make_trace([(0.0, f"a{i % 4}", 64 + 8 * i, 4 + i % 5) for i in range(12)], n_adapters=4)
    hw = _hw(0.05)
    quiet = simulate(sc, "resident", trace=trace, hardware=hw)
    noisy = simulate(sc, "resident", trace=trace, hardware=hw, noise_seed=3)
    f = RunNoise(0.05, seed=3).speed()
    assert f != 1.0
    q, n = (r.timeline[r.timeline.lane == "compute"] for r in (quiet, noisy))
    assert len(q) == len(n) > 0
    np.testing.assert_allclose((n.end - n.start).to_numpy(), f * (q.end - q.start).to_numpy(), rtol=1e-9)


def test_each_load_issue_time_gets_its_own_factor():
    sc = parse_scenario(SC)
    hw = _hw(0.0, 0.3, issue_us=20.0)
    quiet = simulate(sc, "overlap", hardware=hw)
    noisy = simulate(sc, "overlap", hardware=hw, noise_seed=2)
    qi, ni = (r.timeline[r.timeline.kind == "issue"] for r in (quiet, noisy))
    base = (qi.end - qi.start).to_numpy()
    assert len(qi) > 3 and np.allclose(base, base[0])  # one adapter size: one issue time
    got = (ni.end - ni.start).to_numpy() / base[0]
    lids = range(len(got))  # loads are numbered in the order they start
    np.testing.assert_allclose(got, [RunNoise(0.0, 0.3, seed=2).issue(k) for k in lids], rtol=1e-9)
    assert quiet.summary["completed"] == noisy.summary["completed"] == 30


def test_profile_keys_round_trip_and_reach_the_hardware(tmp_path):
    prof = analytic_profile("h200", ModelShape(), "test")
    prof = replace(prof, compute=replace(prof.compute, run_speed_sd=0.01),
                   pcie=replace(prof.pcie, issue_sd=0.17))
    path = tmp_path / "p.yaml"
    prof.to_yaml(path)
    back = HardwareProfile.from_yaml(path)
    assert back.compute.run_speed_sd == 0.01 and back.pcie.issue_sd == 0.17
    hw = load_hardware(HardwareCfg(profile=str(path)), ModelShape())
    assert hw.noise == RunNoise(0.01, 0.17)
    plain = analytic_profile("h200", ModelShape(), "test")
    plain.to_yaml(path)
    assert "run_speed_sd" not in path.read_text() and load_hardware(HardwareCfg(profile=str(path)), ModelShape()).noise == RunNoise()
