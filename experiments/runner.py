"""Run a sweep's grid in parallel (local processes or a Dask cluster), storing as runs finish.

Workers only compute; the parent writes every result the moment it arrives, so an interrupt
loses at most the runs in flight, and a rerun skips whatever is already stored. A run that
raises is stored with its error and the sweep goes on.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from experiments.store import Store
from experiments.sweep import RunSpec, Sweep, load_sweep
from sim.config import Scenario
from sim.errors import LorasimError

RunFn = Callable[[Scenario, str], Any]  # -> sim.runner.RunResult


RUN_FN_ENV = "LORASIM_RUN_FN"


def default_run_fn() -> RunFn:
    """sim.runner.simulate, imported late so sweeps can be tested with fake run functions.

    `LORASIM_RUN_FN=module:function` substitutes another run function (tests use it to run
    real sweep subprocesses with a fast fake simulator)."""
    spec = os.environ.get(RUN_FN_ENV)
    if spec:
        import importlib

        mod, _, attr = spec.partition(":")
        try:
            return getattr(importlib.import_module(mod), attr or "run")
        except (ImportError, AttributeError) as e:
            raise LorasimError(f"{RUN_FN_ENV}={spec}: cannot import the run function: {e}") from None
    try:
        from sim.runner import simulate
    except ImportError as e:
        raise LorasimError(f"the simulator is not available (sim.runner.simulate): {e}") from None
    return simulate


@dataclass
class Outcome:
    """What a worker sends back: the result's tables, or the error of a failed run."""

    run_id: str
    records: pd.DataFrame | None = None
    timeline: pd.DataFrame | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def execute(run_fn: RunFn, spec: RunSpec) -> Outcome:
    """Run one grid point; any exception becomes the run's error (the sweep goes on)."""
    try:
        res = run_fn(spec.scenario, spec.policy)
        records = getattr(res, "records", None)
        if not isinstance(records, pd.DataFrame):
            raise TypeError(f"run function returned {type(res).__name__}, expected a RunResult with records")
        return Outcome(spec.run_id, records, getattr(res, "timeline", None), dict(getattr(res, "summary", {}) or {}))
    except Exception as e:  # noqa: BLE001 - recorded, not raised
        where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        at = f" (at {Path(where.filename).name}:{where.lineno})" if where else ""
        msg = f"{type(e).__name__}: {e}".splitlines()[0] if str(e) else type(e).__name__
        return Outcome(spec.run_id, error=msg + at)


@dataclass
class SweepStats:
    total: int
    skipped: int
    ran: int = 0
    failed: list[str] = field(default_factory=list)


def spec_row(spec: RunSpec) -> dict[str, Any]:
    """Index columns that identify a run: its policy, group and every axis value."""
    sv = spec.scenario.serving
    return {
        "run_id": spec.run_id,
        "policy": spec.policy,
        "group": spec.group,
        "scenario": spec.scenario.name,
        "repeat": spec.repeat,
        "slots_batch": sv.max_loras_per_batch,
        "slots_prefetch": sv.max_loras_prefetch,
        **spec.params,
    }


def run_sweep(sweep: Sweep | str | Path, out: str | Path, *, run_fn: RunFn | None = None,
              workers: int | None = None, scheduler: str | None = None,
              progress: bool = True) -> SweepStats:
    """Run every run of `sweep` not already stored ok in `out`; returns counts and failures.

    workers: local processes (default min(cpu_count, pending)); 1 runs in this process.
    scheduler: address of a Dask scheduler; runs go there instead of a local pool.
    """
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    if workers is not None and workers < 1:
        raise LorasimError(f"--workers must be >= 1, got {workers}")
    store = Store(out)
    done = store.completed()
    pending = [r for r in sweep.runs if r.run_id not in done]
    if run_fn is None:
        check_runs_feasible(sweep, pending)  # before anything is written
    store.init(sweep.manifest())
    stats = SweepStats(total=len(sweep.runs), skipped=len(sweep.runs) - len(pending))
    if not pending:
        store.consolidate()
        return stats
    fn = run_fn or default_run_fn()
    by_id = {r.run_id: r for r in pending}
    bar = tqdm(total=len(pending), desc=sweep.name, unit="run", disable=not progress)
    try:
        if scheduler:
            outcomes = _dask(fn, pending, scheduler)
        else:
            n = workers or min(os.cpu_count() or 1, len(pending))
            outcomes = _serial(fn, pending) if n == 1 else _pool(fn, pending, n)
        for oc in outcomes:
            _store(store, by_id[oc.run_id], oc, stats)
            bar.update()
    finally:
        bar.close()
        store.consolidate()
    return stats


def check_runs_feasible(sweep: Sweep, runs: list[RunSpec]) -> None:
    """Reject a sweep up front if any run could never finish (a request longer than the KV
    cache, a trace file that does not load, bad policy options...), naming the sweep file,
    the key and the run, instead of failing those runs one by one later."""
    from sim.runner import check_feasible
    from sim.workload import generate_trace

    traces: dict[str, Any] = {}
    for spec in runs:
        sc = spec.scenario
        key = sc.model_dump_json(include={"seed", "model", "adapters", "workload"})
        try:
            if key not in traces:
                traces[key] = generate_trace(sc)
            check_feasible(sc, traces[key])
        except LorasimError as e:
            where = f"run {spec.run_id}: {spec.group}, policy {spec.policy}"
            raise LorasimError(f"{e} ({where})") from None


def _store(store: Store, spec: RunSpec, oc: Outcome, stats: SweepStats) -> None:
    row = spec_row(spec)
    if oc.ok:
        try:
            store.save_ok(row, oc.records, oc.timeline, oc.summary)
            stats.ran += 1
            return
        except (OSError, ValueError, TypeError) as e:  # e.g. records that parquet cannot hold
            oc.error = f"could not store result: {type(e).__name__}: {e}"
    store.save_error(row, oc.error)
    stats.failed.append(spec.run_id)


def _serial(fn: RunFn, runs: list[RunSpec]) -> Iterator[Outcome]:
    for spec in runs:
        yield execute(fn, spec)


def _pool(fn: RunFn, runs: list[RunSpec], n: int) -> Iterator[Outcome]:
    ex = ProcessPoolExecutor(max_workers=n)
    futs: dict[Future, RunSpec] = {}
    try:
        futs = {ex.submit(execute, fn, spec): spec for spec in runs}
        for fut in as_completed(futs):
            try:
                yield fut.result()
            except Exception as e:  # noqa: BLE001 - a worker died or the result did not pickle
                yield Outcome(futs[fut].run_id, error=f"worker failed: {type(e).__name__}: {e}")
    finally:
        ex.shutdown(wait=False, cancel_futures=True)


def _dask(fn: RunFn, runs: list[RunSpec], address: str) -> Iterator[Outcome]:
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise LorasimError("--scheduler needs dask: pip install 'lorasim[dask]'") from None
    try:
        client = Client(address, timeout="20s")
    except OSError as e:
        raise LorasimError(f"cannot reach the Dask scheduler at {address}: {e}") from None
    try:
        futs = {client.submit(execute, fn, spec, pure=False, key=f"lorasim-{spec.run_id}"): spec
                for spec in runs}
        for fut in dask_completed(list(futs)):
            try:
                yield fut.result()
            except Exception as e:  # noqa: BLE001
                yield Outcome(futs[fut].run_id, error=f"worker failed: {type(e).__name__}: {e}")
    finally:
        client.close()
