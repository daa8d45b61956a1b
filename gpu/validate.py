"""Validate the simulator against the GPU: one trace, one policy, both drivers, same engine.

For each scenario and policy: generate the trace once, run it through the CudaDriver (real
model, real copies, wall-clock arrivals) and through `sim.runner.simulate` with the measured
hardware profile, then compare P50/P99 TTFT, mean E2E and median TPOT. The relative error
`(sim - gpu) / gpu` is what tells a user how far to trust a simulated answer.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from gpu import PREFILL_GRAPH_TOKENS
from gpu.distributions import Distributions, read_records
from gpu.run_budget import RunBudget
from gpu.run_health import DEGRADED_ABOVE, HealthLog
from sim.config import Scenario
from sim.core.model import Trace
from sim.errors import LorasimError
from sim.hw.profile import atomic_write_text
from sim.runner import RunResult, load_scenario

METRICS = ("ttft_median_ms", "ttft_p99_ms", "e2e_mean_ms", "tpot_median_ms")


@dataclass(frozen=True)
class GpuOptions:
    device: str | None = None
    adapter_dir: str | None = None  # where synthetic PEFT adapters are written (reused)
    seed: int = 0
    eager_decode: bool = False  # one model.forward a decode step (rounds 1-4), not graphs
    prefill_graph_tokens: int = PREFILL_GRAPH_TOKENS  # largest graphed prefill (0: eager, rounds 1-5)


# Host pools kept across runs of one validation (same adapters, same host mode): reading and
# pinning 16 x 320 MB adapters takes ~10 s, and a server keeps its host tier between requests
# anyway. Keyed by (host mode, adapter folders, tier capacity).
_HOST_POOLS: dict[tuple, object] = {}


def _host_pool(shape, paths: dict, mode: str, names: list[str], cap: int, reuse: bool):
    from gpu.adapters import HostPool

    key = (shape.name, mode, tuple(sorted((k, str(v)) for k, v in paths.items())), cap)
    host = _HOST_POOLS.get(key) if reuse else None
    if host is None or any(n not in host for n in names[:cap]) or len(host.loaded) != cap:
        host = HostPool(shape, paths, mode=mode)
        host.preload(names[:cap])  # as the engine's host tier registers them at start-up
        if reuse:
            _HOST_POOLS.clear()  # one pool alive at a time: host RAM is adapters x size
            _HOST_POOLS[key] = host
    else:  # the engine starts with names[:cap] registered, in that LRU order
        for n in names[:cap]:
            host.loaded.move_to_end(n)
    return host


# GPU cores (gpu.core: model, slots, KV pool, captured graphs) kept across runs: building
# one and capturing its graphs takes tens of seconds for Llama-3.1-8B, and a pass has 15
# runs. `run_gpu(reuse=True)` asks for a core every policy of the scenario can run on (a slot
# per adapter, graphs for any number of adapters in a batch), so one core serves a pass whose
# scenarios share the model and adapter shapes. At most two alive: each holds the weights.
_CORES: list = []


def _core(spec):
    from gpu.core import GpuCore

    for i, c in enumerate(_CORES):
        if c.spec.serves(spec):
            _CORES.append(_CORES.pop(i))
            return c
    if len(_CORES) >= 2:
        _CORES.pop(0)
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    core = GpuCore(spec)
    _CORES.append(core)
    return core


def warm_pin_cache(host, n_adapters: int, per_module: bool) -> None:
    """Pin (and free) `n_adapters` adapters' worth of temporary copies, as many as can be in
    flight at once, so torch's caching host allocator holds the pinned blocks: the server's
    steady state, which the simulator's default `pin_cache: warm` prices. A fresh process
    would otherwise pay cold pinning (~1 GB/s) on its first loads only."""
    names = list(host.loaded)[: max(1, n_adapters)]
    keep = [host.pin_for_load(host.get(n), per_module=per_module) for n in names]
    del keep


def arena_pages(engine, shape, trace: Trace, rows: int) -> int:
    """Pages of the unified arena for a unified engine (0 for slots): the engine's byte
    budget in pages, plus a page a KV row and a page an adapter, the most that rounding to
    whole pages adds to what the engine counts in bytes."""
    if not engine.unified:
        return 0
    from gpu.unified import page_numel

    page_bytes = page_numel(shape) * shape.dtype_bytes
    return -(-engine.pool.budget // page_bytes) + rows + len(trace.adapters)


def run_gpu(
    sc: Scenario,
    policy: str,
    trace: Trace,
    opts: GpuOptions = GpuOptions(),
    *,
    reuse: bool = False,
) -> RunResult:
    """Run `policy` on `trace` through the engine and the CudaDriver. `reuse`: keep the host
    pool and the GPU core (weights, slots, KV, graphs) for the next run (a validation pass)."""
    import torch

    from gpu.adapters import write_population
    from gpu.core import GpuCore
    from gpu.driver import CudaDriver
    from sim.core.engine import Engine
    from sim.hw import load_hardware
    from sim.policies import registry
    from sim.runner import check_feasible, finish_run, merge_counters, serving_knobs

    shape = sc.model.shape()
    check_feasible(sc, trace)
    pol = registry.create(policy, **sc.policy_options.get(policy, {}))
    # the engine gets the same cost model as in `simulate`: policies that predict (lookahead)
    # decide from it, so both drivers must hand them the same estimator
    hardware = load_hardware(sc.hardware, shape)
    engine = Engine(trace, serving_knobs(sc, trace), pol, estimator=hardware)
    root = Path(opts.adapter_dir or Path(tempfile.gettempdir()) / f"lorasim-adapters-{shape.name}")
    paths = write_population(root, trace.adapters, shape, seed=opts.seed)
    host_mode = pol.host_mode(sc.serving)
    names = [a.name for a in trace.adapters]
    cap = sc.serving.max_loaded_loras or len(names)
    mode = "pinned" if host_mode == "pinned" else "pageable"
    host = _host_pool(shape, paths, mode, names, cap, reuse)
    resident = policy == "resident"
    unified_pages = arena_pages(engine, shape, trace, rows=min(sc.serving.max_running_requests, len(trace.requests)))
    # unified: no per-batch adapter limit, so a batch may hold every adapter
    n_slots = len(names) if resident or unified_pages else pol.slot_capacity(sc.serving)
    device = torch.device(opts.device) if opts.device else None
    options = dict(
        seed=opts.seed,
        eager_decode=opts.eager_decode,
        prefill_graph_tokens=opts.prefill_graph_tokens,
        max_batch_adapters=None if resident or unified_pages else sc.serving.max_loras_per_batch,
        unified_pages=unified_pages,
    )
    rows = min(sc.serving.max_running_requests, len(trace.requests))
    core = None
    if reuse:  # runs of a pass share GPU cores, sized up so that scenarios can share them
        need_ctx = max(r.input_len + r.output_len for r in trace.requests)
        core = _core(
            GpuCore.spec_for_trace(
                trace,
                shape,
                n_slots=max(1, n_slots, len(names)),
                kv_rows=min(sc.serving.max_running_requests, -(-rows // 32) * 32),
                max_ctx=-(-need_ctx // 1024) * 1024,
                device=device,
                **{**options, "max_batch_adapters": None},
            )
        )
    driver = CudaDriver(
        trace, shape, host, n_slots=max(1, n_slots), device=device, kv_rows=rows, core=core,
        **options,
    )
    if resident:
        driver.make_resident(names)
    driver.warmup()
    # after the warm-up: capturing CUDA graphs leaves torch's pinned-block cache cold (round 5,
    # first pass: the first two pins of every pin-per-load run took ~200 ms instead of ~15 ms)
    if host_mode == "pin_per_load" and not resident:
        warm_pin_cache(host, n_slots, per_module=sc.serving.copy_mode == "per_module")
    driver.run(engine)
    meta = {"scenario": sc.name, "seed": sc.seed, "requests": len(trace.requests), "driver": "cuda"}
    return finish_run(engine, driver.timeline, merge_counters(engine, driver), policy, meta)


@dataclass
class SimSide:
    """The simulator's side of a cell (`simulate_ensemble`)."""

    first: RunResult  # the first run: its timeline (health) and per-request CSV
    mean: dict  # summary metrics, the mean over the runs
    spread: dict  # per metric, half the runs' range over their mean ({} for one run)
    records: pd.DataFrame  # every run's requests, pooled: the distribution the GPU's is compared with


def simulate_ensemble(sc: Scenario, policy: str, trace: Trace, repeats: int = 1) -> SimSide:
    """The simulator's side of a cell: with `repeats` 1 one deterministic run; above 1 that
    many runs with the profile's measured run-to-run noise (sim.hw.noise, seeds 0..repeats-1),
    compared by their mean, as the GPU side is by the mean of its passes (a median on a cliff
    is a coin flip for one run), and by their pooled requests for the distributions (as the
    GPU runs' are pooled)."""
    from sim.runner import simulate

    if repeats <= 1:
        s = simulate(sc, policy, trace=trace)
        return SimSide(s, s.summary, {}, s.records)
    from sim.hw import load_hardware

    hw = load_hardware(sc.hardware, sc.model.shape())
    if not (hw.noise.speed_sd or hw.noise.issue_sd):
        raise LorasimError(
            f"{sc.hardware.profile or sc.source}: --sim-repeats {repeats} needs the profile's run-to-run "
            "noise (compute.run_speed_sd, pcie.issue_sd), else every run is the same; measure it with "
            "`lorasim calibrate --out PROFILE --noise-from GPU_RUN_FOLDERS`"
        )
    runs = [simulate(sc, policy, trace=trace, hardware=hw, noise_seed=k) for k in range(repeats)]
    mean, spread, _ = mean_and_spread([r.summary for r in runs])
    return SimSide(runs[0], mean, spread, pd.concat([r.records for r in runs], ignore_index=True))


def mean_and_spread(summaries: list[dict]) -> tuple[dict, dict, dict]:
    """Per metric over several runs' summaries (GPU passes or simulator ensemble members):
    the mean, the half-range relative to it (0 for one run), and how many runs had it."""
    mean, spread, n = {}, {}, {}
    for m in METRICS:
        v = [float(r[m]) for r in summaries if r.get(m) is not None]
        if v:
            mean[m], n[m] = sum(v) / len(v), len(v)
            spread[m] = (max(v) - min(v)) / 2 / mean[m] if mean[m] else 0.0
    return mean, spread, n


def compare(gpu: dict, sim: dict, metrics=METRICS) -> list[dict]:
    rows = []
    for m in metrics:
        g, s = float(gpu.get(m, float("nan"))), float(sim.get(m, float("nan")))
        rel = (s - g) / g if g else float("nan")
        rows.append({"metric": m, "gpu": g, "sim": s, "rel_err": rel})
    return rows


def run_validation(
    scenarios: list[str | Path],
    profile: str | Path | None,
    policies: list[str] | None,
    out: str | Path,
    opts: GpuOptions = GpuOptions(),
    progress=print,
    *,
    reverse: bool = False,
    resume: bool = False,
    plots: bool = True,
    degraded_above: float = DEGRADED_ABOVE,
    sim_repeats: int = 1,
    traces: int | range = 1,
    budget: RunBudget | None = None,
) -> pd.DataFrame:
    """Every scenario x policy on GPU and simulator (`traces`: which traces of each scenario, see
    `scenario_cells`; `sim_repeats`: see `simulate_ensemble`); writes errors.csv, errors.md and both
    drivers' per-request records under `out`, and distribution.{csv,md} with sim-vs-GPU CDF plots
    (gpu.distributions). Returns the error table. `reverse` runs each
    scenario's policies in reverse order. `resume` keeps the GPU runs `out` already records
    (their summary.json is written last, atomically) and only re-simulates them: a pass cut
    off by a time limit goes on where it stopped. Each GPU run is also checked for a machine
    slowdown (gpu.run_health, health.{csv,md}); a degraded run is reported, to be run again.
    `budget` (gpu.run_budget): no GPU run starts that would end past it; the tables then
    cover the runs done, and `resume` goes on."""
    from sim.workload import generate_trace

    budget = budget or RunBudget()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    health = HealthLog()
    dists = Distributions()
    cells = []  # (scenario, workload, policy) in run order
    for sc, workload in scenario_cells(scenarios, profile, traces):
        pols = list(policies or sc.policies)
        cells += [(sc, workload, pol) for pol in (pols[::-1] if reverse else pols)]
    trace, traced, announced = None, None, False
    for i, (sc, workload, pol) in enumerate(cells):
        if traced is not sc:
            trace, traced = generate_trace(sc), sc
        stem = f"{sc.name}.{pol}"
        done = out / f"{stem}.summary.json"
        t0 = budget.clock()
        if resume and done.is_file():
            progress(f"{sc.name} / {pol}: GPU run already recorded in {out}")
            gsum = json.loads(done.read_text())["gpu"]
            grec = read_records(out / f"{stem}.gpu.csv")
        elif not budget.allows_another():
            if not announced:  # the runs already recorded further on are still compared
                left = sum(1 for c, _, p in cells[i:] if not (out / f"{c.name}.{p}.summary.json").is_file())
                progress(f"stopping after {budget.elapsed():.0f} s of the {budget.seconds:.0f} s allowed: "
                         f"{left} GPU runs left (the slowest so far took {budget.slowest:.0f} s); "
                         "run again with --resume to go on")
                announced = True
            continue
        else:
            progress(f"{sc.name} / {pol}: GPU ...")
            g = run_gpu(sc, pol, trace, opts, reuse=True)
            g.records.to_csv(out / f"{stem}.gpu.csv", index=False)
            g.timeline.to_csv(out / f"{stem}.gpu.timeline.csv", index=False)
            gsum, grec = g.summary, g.records
        health.screen(sc, trace, pol, [out], degraded_above, progress)
        progress(f"{sc.name} / {pol}: simulator ...")
        side = simulate_ensemble(sc, pol, trace, sim_repeats)
        health.add_simulator(sc, pol, side.first.timeline)
        side.first.records.to_csv(out / f"{stem}.sim.csv", index=False)
        dists.add(sc.name, pol, [grec], side.records)
        atomic_write_text(done, json.dumps({"gpu": gsum, "sim": side.first.summary}, indent=2, default=str))
        for r in compare(gsum, side.mean):
            rows.append({"scenario": sc.name, "workload": workload, "policy": pol, **r,
                         **_sim_cols(r, sim_repeats, side.spread)})
        _write_tables(rows, out)  # after every run: a cut-off validation keeps its rows
        budget.took(budget.clock() - t0)
    health.write(out)
    dists.write(out, plots)
    return _write_tables(rows, out)


def _scenario_with_profile(path: str | Path, profile: str | Path | None) -> Scenario:
    sc = load_scenario(path)
    if profile is not None:
        sc = sc.model_copy(update={"hardware": sc.hardware.model_copy(update={"profile": str(profile)})})
    return sc


def trace_name(name: str, seed: int) -> str:
    """The cell name of scenario `name` replayed with trace seed `seed` (its file's own seed
    keeps the plain name, so earlier runs of that trace pair with the new ones)."""
    return f"{name}-s{seed}"


def scenario_cells(
    paths: list[str | Path], profile: str | Path | None, traces: int | range = 1
) -> list[tuple[Scenario, str]]:
    """(scenario, workload) for each scenario file, replayed with its traces `traces` (a count
    N: traces 0..N-1; or a range of them): trace k has the scenario's seed + k, so trace 0 is its
    own (the plain name, so earlier runs of it pair with new ones) and the others are named by
    `trace_name`. One trace of 64 requests can hinge on a single race: in round 14's saturated
    bursty trace, whether one request arrived a few ms before another finished decided both
    policies' P50 and P99, and the simulator and the GPU fell on opposite sides. Several traces
    of the same workload average such races out (`pooled_table`)."""
    cells = []
    for path in paths:
        sc = _scenario_with_profile(path, profile)
        for k in range(traces) if isinstance(traces, int) else traces:
            seed = sc.seed + k
            name = sc.name if seed == sc.seed else trace_name(sc.name, seed)
            cells.append((sc.model_copy(update={"seed": seed, "name": name}), sc.name))
    return cells


def resimulate(
    scenarios: list[str | Path],
    profile: str | Path | None,
    policies: list[str] | None,
    gpu_runs: list[str | Path],
    out: str | Path,
    progress=print,
    plots: bool = True,
    degraded_above: float = DEGRADED_ABOVE,
    sim_repeats: int = 1,
    traces: int | range = 1,
) -> pd.DataFrame:
    """Re-run only the simulator against GPU runs recorded by earlier validations
    (`sim_repeats`: the simulator's side as an ensemble, see `simulate_ensemble`; `traces`:
    which traces of each scenario, a count or a range, see `scenario_cells`; a trace's runs may
    sit in different folders).

    `gpu_runs` are folders written by `run_validation` (their `<scenario>.<policy>.summary.json`
    hold the GPU summary of that trace; traces are regenerated from the scenario's seed). With
    several folders the simulator is compared with the mean of the GPU runs and `gpu_spread`
    is half their range relative to that mean: the GPU's own noise, below which an error
    cannot be resolved. A run during which the machine itself slowed down (gpu.run_health:
    a window of its forwards over `degraded_above` x the run's usual pace) is left out of the
    mean and listed, unless every run of that cell is; `degraded_above` 0 keeps every run.
    Also health.{csv,md}, distribution.{csv,md} and CDF plots of every GPU run vs the
    simulator (gpu.distributions). Needs no GPU and no torch: a model change is checked in
    seconds."""
    from sim.workload import generate_trace

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dirs = [Path(d) for d in gpu_runs]
    for d in dirs:
        if not d.is_dir():
            raise LorasimError(f"--gpu-runs {d}: no such folder; expected the --out folder of a validate run")
    rows: list[dict] = []
    health = HealthLog()
    dists = Distributions()
    for sc, workload in scenario_cells(scenarios, profile, traces):
        trace = generate_trace(sc)
        for pol in policies or sc.policies:
            found = [d for d in dirs if (d / f"{sc.name}.{pol}.summary.json").is_file()]
            if not found:
                progress(f"{sc.name} / {pol}: no GPU run recorded in {', '.join(map(str, dirs))}; skipped")
                continue
            kept = health.screen(sc, trace, pol, found, degraded_above, progress)
            progress(f"{sc.name} / {pol}: simulator vs {len(kept)} GPU run(s) ...")
            runs = [json.loads((d / f"{sc.name}.{pol}.summary.json").read_text())["gpu"] for d in kept]
            side = simulate_ensemble(sc, pol, trace, sim_repeats)
            health.add_simulator(sc, pol, side.first.timeline)
            side.first.records.to_csv(out / f"{sc.name}.{pol}.sim.csv", index=False)
            dists.add(sc.name, pol, [read_records(d / f"{sc.name}.{pol}.gpu.csv") for d in kept], side.records)
            mean, gspread, counts = mean_and_spread(runs)
            for r in compare(mean, side.mean):
                m = r["metric"]
                rows.append({"scenario": sc.name, "workload": workload, "policy": pol, **r, "gpu_runs": counts.get(m, 0),
                             "gpu_spread": gspread.get(m, 0.0), **_sim_cols(r, sim_repeats, side.spread)})
            _write_tables(rows, out, health.notes())
    health.write(out)
    dists.write(out, plots)
    return _write_tables(rows, out, health.notes())


def _sim_cols(row: dict, repeats: int, spread: dict) -> dict:
    """The ensemble's size and half-range for a table row (nothing for one plain run)."""
    if repeats <= 1:
        return {}
    return {"sim_runs": repeats, "sim_spread": spread.get(row["metric"], 0.0)}


def _write_tables(rows: list[dict], out: Path, notes: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    from sim.hw.profile import atomic_write_text

    cols = ["scenario", "workload", "policy", "metric", "gpu", "sim", "rel_err"]
    if rows and "gpu_runs" in rows[0]:
        cols += ["gpu_runs", "gpu_spread"]
    if rows and "sim_runs" in rows[0]:
        cols += ["sim_runs", "sim_spread"]
    df = pd.DataFrame(rows, columns=cols)
    atomic_write_text(out / "errors.csv", df.to_csv(index=False))
    md = error_table_markdown(df)
    pooled = pooled_table(df)
    if pooled is not None:
        atomic_write_text(out / "errors-pooled.csv", pooled.to_csv(index=False))
        md += "\n" + pooled_markdown(pooled)
    else:  # not an earlier validation's, left in a reused folder
        (out / "errors-pooled.csv").unlink(missing_ok=True)
    if notes:
        md += "\n" + "\n".join(notes) + "\n"
    atomic_write_text(out / "errors.md", md)
    return df


def pooled_table(df: pd.DataFrame) -> pd.DataFrame | None:
    """Per workload x policy x metric, the mean over its traces of the GPU's value and of the
    simulator's, and the error of those means: what a user's own traffic would see on average,
    with no single trace's race deciding it. None unless some workload has several traces."""
    if df.empty or "workload" not in df.columns or df.groupby("workload")["scenario"].nunique().max() < 2:
        return None
    ok = df.dropna(subset=["gpu", "sim"])
    g = ok.groupby(["workload", "policy", "metric"], sort=False)
    out = g.agg(traces=("scenario", "nunique"), gpu=("gpu", "mean"), sim=("sim", "mean")).reset_index()
    out["rel_err"] = (out["sim"] - out["gpu"]) / out["gpu"]
    # how far the traces' own errors scatter: a mean error of +1 % over traces at +-30 % each
    # is a different claim from +1 % at +-2 %
    out["trace_err_sd"] = g["rel_err"].std(ddof=1).to_numpy()
    return out


def _metric_cells(g: pd.DataFrame, cell) -> list[str]:
    """One table cell per metric of a scenario/workload x policy group ("-" where missing)."""
    out = []
    for m in METRICS:
        r = g[g["metric"] == m]
        out.append("-" if r.empty else cell(r.iloc[0]))
    return out


def pooled_markdown(p: pd.DataFrame) -> str:
    lines = [
        "## Over several traces of each workload",
        "",
        "| workload | policy | traces | " + " | ".join(METRICS) + " |",
        "|---|---|---:|" + "---|" * len(METRICS),
    ]
    def cell(r) -> str:
        sd = "" if pd.isna(r.trace_err_sd) else f", per trace ±{100 * r.trace_err_sd:.0f}"
        return f"{r.gpu:.1f} / {r.sim:.1f} ({100 * r.rel_err:+.0f}%{sd})"

    for (w, pol), g in p.groupby(["workload", "policy"], sort=False):
        lines.append(f"| {w} | {pol} | {int(g['traces'].max())} | " + " | ".join(_metric_cells(g, cell)) + " |")
    lines += [
        "",
        "Cells: mean over the workload's traces of the GPU's value / of the simulator's (error of "
        "those means, and the standard deviation of the traces' own errors).",
        "",
    ]
    for m in METRICS:
        g = p[p["metric"] == m]
        err = g["rel_err"].abs()
        if len(err):
            # an error of the mean within two of its standard errors (the traces' own errors'
            # scatter over sqrt(traces)) cannot be told from trace-to-trace chance
            se = (g["trace_err_sd"] / g["traces"].clip(lower=1) ** 0.5).fillna(0.0)
            unresolved = int(((err <= 0.10) | (err <= 2 * se)).sum())
            lines.append(f"- {m}: mean |error| {100 * err.mean():.0f} %, max {100 * err.max():.0f} %, "
                         f"within 10 %: {int((err <= 0.10).sum())}/{len(err)}; within 10 % or two "
                         f"standard errors over the traces: {unresolved}/{len(err)}")
    return "\n".join(lines) + "\n"


def error_table_markdown(df: pd.DataFrame) -> str:
    """One row per scenario/policy, one column per metric: `gpu / sim (err%)`."""
    lines = [
        "| scenario | policy | " + " | ".join(METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    def cell(r) -> str:
        spread = f" ±{100 * r.gpu_spread:.0f}%" if "gpu_runs" in r and r.gpu_runs > 1 else ""
        sspread = f" ±{100 * r.sim_spread:.0f}%" if "sim_runs" in r and r.sim_runs > 1 else ""
        return f"{r.gpu:.1f}{spread} / {r.sim:.1f}{sspread} ({100 * r.rel_err:+.0f}%)"

    for (scn, pol), g in df.groupby(["scenario", "policy"], sort=False):
        lines.append(f"| {scn} | {pol} | " + " | ".join(_metric_cells(g, cell)) + " |")
    lines += ["", "Cells: GPU / simulator (relative error of the simulator)."]
    if "gpu_runs" in df.columns and (df["gpu_runs"] > 1).any():
        lines[-1] = (
            "Cells: mean of the GPU runs ±half their range / simulator (error vs that mean)."
        )
    if "sim_runs" in df.columns and (df["sim_runs"] > 1).any():
        n = int(df["sim_runs"].max())
        lines[-1] = lines[-1].replace(
            "/ simulator", f"/ mean of {n} simulator runs with the profile's run-to-run noise ±half their range"
        )
    lines += _summary_lines(df)
    return "\n".join(lines) + "\n"


def _summary_lines(df: pd.DataFrame) -> list[str]:
    """Per metric: mean |error|, cells within 10 %, and the GPU's own spread if known."""
    if df.empty:
        return []
    out = [""]
    for m in METRICS:
        g = df[df["metric"] == m]
        if g.empty:
            continue
        err = g["rel_err"].abs()
        line = (f"- {m}: mean |error| {100 * err.mean():.0f} %, max {100 * err.max():.0f} %, "
                f"within 10 %: {int((err <= 0.10).sum())}/{len(g)}")
        if "gpu_spread" in g.columns and (g["gpu_runs"] > 1).any():
            # an error below the GPU's own run-to-run half-range cannot be resolved
            resolved = int((err <= g["gpu_spread"].clip(lower=0.10)).sum())
            line += (f"; GPU half-spread mean {100 * g['gpu_spread'].mean():.0f} %; "
                     f"within 10 % or the GPU's half-spread: {resolved}/{len(g)}")
        out.append(line)
    return out


def run_validation_repeated(
    scenarios: list[str | Path],
    profile: str | Path | None,
    policies: list[str] | None,
    out: str | Path,
    repeats: int,
    opts: GpuOptions = GpuOptions(),
    progress=print,
    degraded_above: float = DEGRADED_ABOVE,
    sim_repeats: int = 1,
    traces: int | range = 1,
    budget: RunBudget | None = None,
) -> pd.DataFrame:
    """`repeats` GPU passes into `out/pass-1`, `out/pass-2`, ..., every other one in reverse
    policy order (so warm-up and slow periods do not always hit the same policy), then the
    simulator against their mean and spread in `out/errors.*` (as `resimulate`). A pass whose
    errors.csv already holds every scenario x policy is not run again. When `budget` stops a
    pass, the later passes and the comparison wait for the next call."""
    budget = budget or RunBudget()
    out = Path(out)
    want = {(sc.name, p) for sc, _ in scenario_cells(scenarios, None, traces) for p in (policies or sc.policies)}
    dirs = [out / f"pass-{k}" for k in range(1, repeats + 1)]
    for k, d in enumerate(dirs, start=1):
        if (d / "errors.csv").is_file():
            done = pd.read_csv(d / "errors.csv")
            if want <= set(zip(done["scenario"], done["policy"], strict=True)):
                progress(f"pass {k}/{repeats}: already complete in {d}")
                continue
        progress(f"pass {k}/{repeats} -> {d}")
        run_validation(scenarios, profile, policies, d, opts, progress, reverse=k % 2 == 0, resume=True,
                       plots=False, degraded_above=degraded_above, traces=traces, budget=budget)
        if budget.stopped:
            progress(f"pass {k}/{repeats} is not complete: run the same command again to go on")
            return pd.DataFrame()
    return resimulate(scenarios, profile, policies, dirs, out, progress, degraded_above=degraded_above,
                      sim_repeats=sim_repeats, traces=traces)
