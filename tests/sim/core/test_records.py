"""RecordColumns: a long run keeps finished requests as columns, not objects, and gets the same
records and ITL summary as from the kept states."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim import metrics
from sim.core.engine import Engine
from sim.core.model import Request, RequestState
from sim.core.records import RecordColumns
from sim.hw import load_hardware
from sim.policies import registry
from sim.runner import finish_run, load_scenario, merge_counters, serving_knobs
from sim.simpy_driver import SimPyDriver
from sim.workload import generate_trace

ROOT = Path(__file__).resolve().parents[3]


def _run(policy: str, keep: bool):
    sc = load_scenario(ROOT / "configs/scenarios/gamma_bursty.yaml")
    trace = generate_trace(sc)
    hw = load_hardware(sc.hardware, sc.model.shape())
    engine = Engine(trace, serving_knobs(sc, trace), registry.create(policy), estimator=hw, keep_states=keep)
    driver = SimPyDriver(hw)
    driver.run(engine)
    return engine, finish_run(engine, driver.timeline, merge_counters(engine, driver), policy)


@pytest.mark.parametrize("policy", ["lru", "overlap", "lookahead"])
def test_without_kept_states_records_and_summary_are_the_same(policy):
    kept_engine, kept = _run(policy, keep=True)
    engine, lean = _run(policy, keep=False)
    assert engine.states is None and not engine.sched._live and not engine.sched._seq
    assert len(kept_engine.states) == len(lean.records)
    pd.testing.assert_frame_equal(kept.records, lean.records)
    pd.testing.assert_frame_equal(
        metrics.build_records(kept_engine.states, kept_engine.step_ends, policy), lean.records)
    assert kept.summary == lean.summary
    np.testing.assert_array_equal(np.asarray(lean.itl), metrics.itl_array(kept_engine.states, kept_engine.step_ends))


def test_columns_keep_every_field_and_sort_rows_into_arrival_order():
    a = RequestState(Request(7, 0.5, "x", 10, 3))
    a.admitted_at, a.first_token_at, a.finished_at = 0.6, 0.7, 0.9
    a.adapter_hit, a.waited_on_adapter, a.skipped = False, 0.05, 2
    a.first_decode_step, a.decode_steps = 4, 2
    b = RequestState(Request(3, 0.1, None, 5, 1))  # unfinished, never looked at
    cols = RecordColumns()
    cols.add(a, 1)
    cols.add(b, 0)
    df = metrics.records_frame(cols, "lru")
    assert list(df.rid) == [3, 7] and pd.isna(df.adapter[0]) and df.adapter[1] == "x"
    assert pd.isna(df.adapter_hit[0]) and not df.adapter_hit[1] and list(df.skipped) == [0, 2]
    assert np.isnan(df.finish[0]) and df.ttft[1] == pytest.approx(0.2) and df.tpot[1] == pytest.approx(0.1)
    itl = metrics.Itl.of_columns(cols, [0.0, 0.1, 0.2, 0.3, 0.8, 0.9])
    np.testing.assert_allclose(np.asarray(itl), [0.1, 0.1])


def test_an_unfinished_run_still_records_every_request():
    """Records of a run stopped early (the engine's final_records adds the unfinished)."""
    sc = load_scenario(ROOT / "configs/scenarios/zipf.yaml")
    trace = generate_trace(sc)
    engine = Engine(trace, serving_knobs(sc, trace), registry.create("lru"), keep_states=False)
    engine.sched.admit_arrivals(trace.requests[len(trace.requests) // 2].arrival)
    df = metrics.records_frame(engine.final_records(), "lru")
    assert len(df) == len(trace.requests) and df.finish.isna().all()
    assert list(df.rid) == [r.rid for r in sorted(trace.requests, key=lambda r: (r.arrival, r.rid))]
