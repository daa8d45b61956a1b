"""Fake run functions: small deterministic RunResults, so sweeps are tested without the simulator."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from sim.config import Scenario
from sim.runner import RunResult

# Policy speed factors: lower = faster. resident is the floor, lru the baseline.
FACTOR = {"lru": 1.0, "fifo": 1.1, "slora": 0.8, "overlap": 0.6, "history": 0.7, "resident": 0.3}


def _rng(sc: Scenario, policy: str) -> np.random.Generator:
    return np.random.default_rng([sc.seed, zlib.crc32(policy.encode()), zlib.crc32(sc.name.encode())])


def fake_run(sc: Scenario, policy: str) -> RunResult:
    """Latencies scale with the policy factor and the arrival rate; hits fall with adapter count."""
    rng = _rng(sc, policy)
    n = min(sc.workload.num_requests, 60)
    f = FACTOR.get(policy, 1.0) * (1 + sc.workload.arrival.rate / 10)
    arrival = np.sort(rng.uniform(0, n / 4, n))
    ttft = rng.exponential(0.2 * f, n) + 0.01
    e2e = ttft + rng.uniform(1.0, 2.0, n) * f
    count = sc.adapters.count or 1
    hit = rng.random(n) < min(1.0, 8 / count)
    records = pd.DataFrame({
        "arrival": arrival, "first_token": arrival + ttft, "finish": arrival + e2e,
        "ttft": ttft, "e2e": e2e, "tpot": (e2e - ttft) / 127, "adapter": [f"a{i % count}" for i in range(n)],
        "hit": hit, "adapter_wait": np.where(hit, 0.0, 0.01), "input_len": 512, "output_len": 128,
        "policy": policy,
    })
    summary = {
        "completed": n, "duration_s": float(records.finish.max()),
        "ttft_mean_ms": 1e3 * ttft.mean(), "ttft_median_ms": 1e3 * np.median(ttft),
        "ttft_p99_ms": 1e3 * np.quantile(ttft, 0.99),
        "e2e_mean_ms": 1e3 * e2e.mean(), "e2e_median_ms": 1e3 * np.median(e2e),
        "e2e_p99_ms": 1e3 * np.quantile(e2e, 0.99),
        "hit_rate": float(hit.mean()), "loads": int((~hit).sum()),
        "pcie_busy_frac": float(min(1.0, (~hit).mean() * 0.5)), "bytes_moved": int((~hit).sum()) * 320_000_000,
    }
    starts = np.arange(12) * 0.05
    timeline = pd.DataFrame({
        "lane": ["pcie"] * 4 + ["compute"] * 8,
        "start": np.concatenate([starts[:4] * 2, starts[:8] + 0.01]),
        "end": np.concatenate([starts[:4] * 2 + 0.03, starts[:8] + 0.05]),
        "kind": ["blocking", "prefetch", "overlap", "blocking"] + ["prefill", "decode"] * 4,
        "label": [f"a{i}" for i in range(12)],
    })
    return RunResult(policy=policy, records=records, summary=summary, timeline=timeline,
                     itl=np.diff(arrival))


def failing_for(bad_policy: str):
    """A run function that raises for one policy (module-level via a class, so it pickles)."""
    return _Failing(bad_policy)


class _Failing:
    def __init__(self, bad: str):
        self.bad = bad

    def __call__(self, sc: Scenario, policy: str) -> RunResult:
        if policy == self.bad:
            raise RuntimeError(f"boom in {policy}")
        return fake_run(sc, policy)


class Logged:
    """Writes one file per call into `logdir` (counts calls across processes)."""

    def __init__(self, logdir: Path):
        self.logdir = Path(logdir)

    def __call__(self, sc: Scenario, policy: str) -> RunResult:
        self.logdir.mkdir(parents=True, exist_ok=True)
        k = len(list(self.logdir.iterdir()))
        (self.logdir / f"call-{k}-{policy}-{sc.seed}-{np.random.randint(1 << 30)}").touch()
        return fake_run(sc, policy)
