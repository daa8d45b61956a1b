"""Running sweeps: resume, failures, corrupt files, process pool and Dask give the same results."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from _exp_fakes import Logged, failing_for, fake_run

from experiments.runner import run_sweep
from experiments.store import Store
from experiments.sweep import build_sweep

BASE = {
    "name": "t",
    "seed": 3,
    "adapters": {"count": 8, "rank": 16},
    "workload": {"num_requests": 30, "arrival": {"process": "poisson", "rate": 2.0}},
}


def make_sweep(policies=("lru", "slora", "overlap"), **kw):
    return build_sweep({"base": BASE, "policies": list(policies),
                        "axes": {"workload.arrival.rate": [1, 2]}, **kw}, source="sw.yaml")


class Interrupting:
    """Counts calls in-process and raises KeyboardInterrupt at call number `stop_at`."""

    def __init__(self, stop_at: int | None = None):
        self.calls: list[tuple[int, str]] = []
        self.stop_at = stop_at

    def __call__(self, sc, policy):
        if self.stop_at is not None and len(self.calls) == self.stop_at:
            raise KeyboardInterrupt
        self.calls.append((sc.workload.arrival.rate, policy))
        return fake_run(sc, policy)


def test_resume_after_interrupt_recomputes_nothing_finished(tmp_path: Path):
    sw = make_sweep()
    first = Interrupting(stop_at=4)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sw, tmp_path, run_fn=first, workers=1, progress=False)
    assert len(first.calls) == 4
    store = Store(tmp_path)
    assert len(store.completed()) == 4  # the finished runs survived the interrupt

    second = Interrupting()
    stats = run_sweep(sw, tmp_path, run_fn=second, workers=1, progress=False)
    assert len(second.calls) == len(sw.runs) - 4
    assert set(first.calls).isdisjoint(second.calls)
    assert (stats.skipped, stats.ran, stats.failed) == (4, 2, [])

    df = pd.read_parquet(tmp_path / "summaries.parquet")
    assert sorted(df.run_id) == sorted(r.run_id for r in sw.runs)
    assert (df.status == "ok").all()
    # a third run does nothing at all
    third = Interrupting()
    run_sweep(sw, tmp_path, run_fn=third, workers=1, progress=False)
    assert third.calls == []
    # results are the fake run's, row for row
    r0 = sw.runs[0]
    rec = store.records(r0.run_id)
    assert rec is not None and rec.equals(fake_run(r0.scenario, r0.policy).records)


def test_failing_run_is_recorded_and_the_others_finish(tmp_path: Path):
    sw = make_sweep()
    stats = run_sweep(sw, tmp_path, run_fn=failing_for("slora"), workers=1, progress=False)
    assert len(stats.failed) == 2 and stats.ran == 4
    df = Store(tmp_path).consolidate()
    bad = df[df.status == "error"]
    assert set(bad.policy) == {"slora"}
    assert bad.error.str.contains("RuntimeError: boom in slora").all()
    assert (df[df.status == "ok"].ttft_mean_ms > 0).all()
    # a rerun retries only the failed runs
    log = Logged(tmp_path / "log")
    run_sweep(sw, tmp_path, run_fn=log, workers=1, progress=False)
    calls = list((tmp_path / "log").iterdir())
    assert len(calls) == 2 and all("-slora-" in c.name for c in calls)
    assert (Store(tmp_path).summaries().status == "ok").all()


def test_corrupt_and_partial_files_are_redone(tmp_path: Path):
    sw = make_sweep(policies=["lru"])
    run_sweep(sw, tmp_path, run_fn=fake_run, workers=1, progress=False)
    a, b = sw.runs[0].run_id, sw.runs[1].run_id
    (tmp_path / "runs" / f"{a}.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "index" / f"{b}.json").write_text('{"run_id": "')
    (tmp_path / "index" / "junk.json").write_text("[]")
    (tmp_path / "runs" / ".leftover.parquet.123.tmp").write_bytes(b"x")
    log = Logged(tmp_path / "log")
    stats = run_sweep(sw, tmp_path, run_fn=log, workers=1, progress=False)
    assert stats.ran == 2 and stats.failed == []
    assert Store(tmp_path).completed() >= {a, b}


def _comparable(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values("run_id").reset_index(drop=True)[["run_id", "policy", "ttft_mean_ms", "hit_rate"]]


def test_process_pool_and_dask_give_the_same_results(tmp_path: Path):
    distributed = pytest.importorskip("distributed")
    sw = make_sweep(policies=["lru", "overlap"])
    log = Logged(tmp_path / "log")
    run_sweep(sw, tmp_path / "pool", run_fn=log, workers=2, progress=False)
    assert len(list((tmp_path / "log").iterdir())) == len(sw.runs)
    pool = Store(tmp_path / "pool").summaries()

    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        stats = run_sweep(sw, tmp_path / "dask", run_fn=fake_run, scheduler=cluster.scheduler_address,
                          progress=False)
    assert stats.ran == len(sw.runs)
    dask = Store(tmp_path / "dask").summaries()
    pd.testing.assert_frame_equal(_comparable(pool), _comparable(dask))
    for r in sw.runs:
        assert Store(tmp_path / "pool").records(r.run_id).equals(Store(tmp_path / "dask").records(r.run_id))


def test_summaries_keep_axis_values_and_slots(tmp_path: Path):
    sw = make_sweep(policies=["lru", "slora"], equal_memory={"adapter_slots": 16})
    run_sweep(sw, tmp_path, run_fn=fake_run, workers=1, progress=False)
    df = pd.read_parquet(tmp_path / "summaries.parquet")
    assert set(df["workload.arrival.rate"]) == {1, 2}
    slots = df.groupby("policy")[["slots_batch", "slots_prefetch"]].first().to_dict("index")
    assert slots == {"lru": {"slots_batch": 16, "slots_prefetch": 0},
                     "slora": {"slots_batch": 8, "slots_prefetch": 8}}
    lines = (tmp_path / "summaries.jsonl").read_text().splitlines()
    assert len(lines) == len(sw.runs)
