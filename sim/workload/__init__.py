"""Workloads (DESIGN §3): adapter population, arrivals, adapter choice, lengths, traces.

Everything is seeded from `Scenario.seed` and deterministic; a generated trace can be saved
(CSV/parquet) and replayed by the simulator and the GPU harness alike.
"""

from sim.workload.population import build_population
from sim.workload.trace import generate_trace, load_trace, save_trace

__all__ = ["build_population", "generate_trace", "load_trace", "save_trace"]
