"""One scenario under one policy -> RunResult. The single entry point sweeps and the CLI use.

It is also the edge where the config layer meets the policies: `load_scenario` and
`parse_scenario` validate a scenario with its policy names checked against the registry, and
`simulate` converts the validated serving config to the core's plain `ServingKnobs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from sim import config
from sim.config import Scenario
from sim.core.engine import STALL_ITERATIONS, STALL_S
from sim.core.memory import slot_bytes
from sim.core.model import Trace
from sim.core.serving import ServingKnobs
from sim.errors import ScenarioError
from sim.policies import registry

TIMELINE_COLUMNS = ["lane", "start", "end", "kind", "label"]


@dataclass
class RunResult:
    """Everything a run produces.

    records:  one row per request (metrics.RECORD_COLUMNS): arrival, first_token, finish,
              ttft, e2e, tpot, adapter, hit, adapter_wait, input_len, output_len, policy.
    summary:  flat dict of scalars (metrics.summarize): ttft_mean_ms, ttft_p50_ms, ...
    timeline: one row per interval on a lane: lane ("pcie"|"compute"|"host"|"disk"), start,
              end, kind ("prefill"|"decode"|"blocking"|"prefetch"|"overlap"|"pin"), label.
    itl:      all inter-token latencies in seconds: metrics.Itl (numpy.asarray(itl) builds the
              per-token array) or, from older callers, the array itself.
    """

    policy: str
    records: pd.DataFrame
    summary: dict
    timeline: pd.DataFrame
    itl: Any = None
    meta: dict = field(default_factory=dict)


def finish_run(engine, timeline_rows: list, counters: dict, policy: str, meta: dict | None = None) -> RunResult:
    """Metrics from a finished engine; shared by the SimPy and the CUDA driver."""
    from sim import metrics

    cols = engine.final_records()
    records = metrics.records_frame(cols, policy)
    itl = metrics.Itl.of_columns(cols, engine.step_ends)
    if hasattr(timeline_rows, "frame"):  # a TimelineLog
        timeline = timeline_rows.frame()
    else:
        timeline = pd.DataFrame(timeline_rows, columns=TIMELINE_COLUMNS)
    summary = metrics.summarize(records, itl, counters, timeline)
    summary["policy"] = policy
    return RunResult(policy, records, summary, timeline, itl, dict(meta or {}))


def merge_counters(engine, driver) -> dict:
    """The engine's counters plus the driver's host and blocking times (both drivers keep
    `stall_s`, `pin_s`, `disk_s`). GPU stall = blocking copies (compute-lane "blocking" rows,
    which metrics.summarize adds) + waits for in-flight async loads (the engine's stall_s),
    so the driver's stall is passed as `blocking_s` and not counted twice; a forward's waits
    for copies layer by layer (the drivers' `layer_wait_s`) are stall too."""
    counters = dict(engine.counters)
    counters["stall_s"] = engine.counters["stall_s"] + driver.counters.get("layer_wait_s", 0.0)
    counters["blocking_s"] = driver.counters["stall_s"]
    counters["pin_s"] = driver.counters["pin_s"]
    counters["disk_s"] = driver.counters["disk_s"]
    for k, v in driver.counters.items():  # a driver's own diagnostics (the CUDA driver's pin allocs)
        counters.setdefault(k, v)
    return counters


def check_feasible(sc: Scenario, trace: Trace) -> None:
    """Reject scenarios that could never finish, before simulating them.

    Every message names the scenario's file (or sweep), the key and what was expected."""
    src = sc.source
    kv = sc.serving.kv_cache_tokens
    if not trace.requests:
        raise ScenarioError(f"{src}: workload: the trace has no requests")
    for r in trace.requests:
        if r.input_len + r.output_len > kv:
            raise ScenarioError(
                f"{src}: serving.kv_cache_tokens: request {r.rid} needs {r.input_len}+{r.output_len} "
                f"KV tokens but serving.kv_cache_tokens is {kv}: it could never be scheduled"
            )
        if r.input_len < 1 or r.output_len < 1:
            raise ScenarioError(
                f"{src}: workload: request {r.rid} has {r.input_len} prompt and {r.output_len} "
                "output tokens; expected at least 1 of each"
            )
        if not math.isfinite(r.arrival) or r.arrival < 0:
            raise ScenarioError(
                f"{src}: workload.arrival: request {r.rid} arrives at {r.arrival!r}; expected a "
                "finite time >= 0 (is the rate too small?)"
            )
    names = {a.name for a in trace.adapters}
    missing = {r.adapter for r in trace.requests if r.adapter is not None and r.adapter not in names}
    if missing:
        raise ScenarioError(
            f"{src}: adapters: the trace names adapters not in the population: {sorted(missing)[:5]}"
        )
    small = [a.name for a in trace.adapters if a.nbytes <= 0]
    if small:
        raise ScenarioError(f"{src}: adapters: adapter(s) {small[:5]} have no bytes to load")
    check_policy_options(sc)


def serving_knobs(sc: Scenario, trace: Trace) -> ServingKnobs:
    """The core's knobs, with what unified memory needs (a policy may choose it whatever
    serving.adapter_memory says): the model's KV bytes per token and the slots
    configuration's slot size (the largest rank over the targets' union)."""
    knobs = sc.serving.knobs()
    shape = sc.model.shape()
    return replace(knobs, kv_bytes_per_token=shape.kv_bytes_per_token,
                   slot_bytes=slot_bytes(shape, trace.adapters))


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """`sim.config.parse_scenario` with the policy names checked against the registry."""
    return config.parse_scenario(data, source, check_policy=registry.check_name)


def load_scenario(path: str | Path) -> Scenario:
    """`sim.config.load_scenario` with the policy names checked against the registry."""
    return config.load_scenario(path, check_policy=registry.check_name)


def check_policy_options(sc: Scenario) -> None:
    """Every `policy_options` entry names a policy and options it accepts."""
    for name, opts in sc.policy_options.items():
        if not isinstance(opts, dict):
            raise ScenarioError(f"{sc.source}: policy_options.{name}: expected a mapping of options")
        try:
            registry.create(name, **opts)
        except (TypeError, ValueError) as e:
            raise ScenarioError(f"{sc.source}: policy_options.{name}: {e}") from None


def simulate(
    sc: Scenario,
    policy: str,
    *,
    trace: Trace | None = None,
    hardware: Any = None,
    check: bool = False,
    stall_s: float | None = STALL_S,
    stall_iterations: int | None = STALL_ITERATIONS,
    noise_seed: int | None = None,
) -> RunResult:
    """Run `policy` on the scenario's trace in the SimPy driver.

    `trace`/`hardware` may be given to share them across policies or to inject test models;
    `check=True` runs the invariant checker after every iteration; `stall_s` /
    `stall_iterations` set the engine's livelock guard (None disables it). `noise_seed`
    makes this run one member of an ensemble: the hardware's measured run-to-run noise
    (sim.hw.noise) is drawn with that seed; None (default) keeps the run deterministic.
    """
    from sim.core.engine import Engine
    from sim.hw import load_hardware
    from sim.simpy_driver import SimPyDriver
    from sim.workload import generate_trace

    if trace is None:
        trace = generate_trace(sc)
    if hardware is None:
        hardware = load_hardware(sc.hardware, sc.model.shape())
    check_feasible(sc, trace)
    try:
        pol = registry.create(policy, **sc.policy_options.get(policy, {}))
    except (TypeError, ValueError) as e:
        raise ScenarioError(f"{sc.source}: policy_options.{policy}: {e}") from None
    try:
        engine = Engine(trace, serving_knobs(sc, trace), pol, estimator=hardware, stall_s=stall_s,
                        stall_iterations=stall_iterations, keep_states=check)
    except ValueError as e:
        raise ScenarioError(f"{sc.source}: serving.adapter_memory: {e}") from None
    if check:
        from sim.core.invariants import InvariantChecker

        engine.check = InvariantChecker()
    if noise_seed is not None and getattr(hardware, "noise", None) is not None:
        hardware = replace(hardware, noise=replace(hardware.noise, seed=noise_seed))
        if getattr(hardware, "pin_tail", None) is not None:
            # which pins are slow is part of the run's draw too (seed 0 stays the plain run's)
            hardware = replace(hardware, pin_tail=replace(hardware.pin_tail, seed=1 + noise_seed))
    driver = SimPyDriver(hardware)
    driver.run(engine)
    meta = {"scenario": sc.name, "seed": sc.seed, "requests": len(trace.requests)}
    return finish_run(engine, driver.timeline, merge_counters(engine, driver), policy, meta)
