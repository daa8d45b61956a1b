"""`lorasim sweep | plot | report`: the experiments commands, added to the main typer app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from sim.errors import LorasimError


def _fail(e: LorasimError) -> typer.Exit:
    typer.echo(f"error: {e}", err=True)
    return typer.Exit(2)


def _echo_report(make: Callable[[], str], out: Path | None) -> None:
    """Print a markdown report (a LorasimError is one line, exit 2) and write it to `out` too."""
    from experiments.store import atomic_write_text

    try:
        text = make()
    except LorasimError as e:
        raise _fail(e) from None
    if out:
        atomic_write_text(out, text)
    typer.echo(text)


def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep YAML: base scenario + axes + policies.",
                                               metavar="SWEEP.yaml")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Results directory (created; reused to resume).")],
    workers: Annotated[int | None, typer.Option(help="Local worker processes (default: min(CPUs, runs)); 1 = in-process.")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address (e.g. tcp://host:8786); runs go to that cluster.")] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Draw plots after the runs.")] = True,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Run every (scenario, policy) of a sweep, then write plots and report.md.

    Runs already stored in OUT are skipped, so rerunning after an interrupt or a failure
    only computes what is missing. A failing run is recorded and the sweep goes on.
    """
    from experiments.plots import plot_all
    from experiments.report import write_report
    from experiments.runner import run_sweep

    try:
        stats = run_sweep(sweep_file, out, workers=workers, scheduler=scheduler, progress=progress)
        if plots:
            plot_all(out)
        report = write_report(out)
    except LorasimError as e:
        raise _fail(e) from None
    typer.echo(f"{stats.total} runs: {stats.ran} ran, {stats.skipped} already done, "
               f"{len(stats.failed)} failed -> {report}")
    if stats.failed:
        typer.echo(f"failed runs are listed in {report}; rerun the same command to retry them", err=True)


def plot(results: Annotated[Path, typer.Argument(help="Results directory of a sweep.", metavar="RESULTS")]) -> None:
    """Draw CDFs, grouped bars, knee curves and a PCIe/compute timeline (PNG + SVG) into RESULTS/plots."""
    from experiments.plots import plot_all

    try:
        paths = plot_all(results)
    except LorasimError as e:
        raise _fail(e) from None
    typer.echo(f"{len(paths)} files in {results / 'plots'}")


def report(
    results: Annotated[Path, typer.Argument(help="Results directory of a sweep.", metavar="RESULTS")],
    baseline: Annotated[str, typer.Option(help="Policy the relative changes are measured against.")] = "lru",
) -> None:
    """Write RESULTS/report.md: per-workload policy ranking, change vs baseline, errors, plots."""
    from experiments.report import write_report

    try:
        path = write_report(results, baseline=baseline)
    except LorasimError as e:
        raise _fail(e) from None
    typer.echo(str(path))


def _names(values: list[str] | None) -> list[str]:
    """Repeatable options that also take comma-separated lists."""
    return [p.strip() for v in values or [] for p in v.split(",") if p.strip()]


def gap(
    results: Annotated[Path, typer.Argument(help="Results directory of a sweep.", metavar="RESULTS")],
    policy: Annotated[str, typer.Option("--policy", "-p", help="The policy under test.")] = "lookahead",
    against: Annotated[list[str] | None, typer.Option(
        help="Policies it is compared with, the best by mean per workload and metric (repeatable or "
             "comma-separated; default: every non-oracle policy of the sweep).")] = None,
    oracle: Annotated[list[str] | None, typer.Option(
        help="Oracle runs of the sweep (zero_load, resident) whose P99-TTFT gap to --reference the "
             "policy closes (repeatable or comma-separated).")] = None,
    reference: Annotated[str, typer.Option(help="Policy whose P99-TTFT gap to the oracles is measured.")] = "lru",
    first_use_bound: Annotated[Path | None, typer.Option(
        help="This sweep's YAML: also measure the gap against zero_load plus one copy per adapter's first "
             "request (re-simulates the zero_load runs).", metavar="SWEEP.yaml")] = None,
    out: Annotated[Path | None, typer.Option(help="Markdown file to write (default: RESULTS/gap.md).")] = None,
) -> None:
    """Write RESULTS/gap.md: one policy against the best of the others, paired by seed.

    Each cell is the policy's mean / the best other's, the mean paired change over seeds with
    its standard error, and in how many seeds the policy was at least as good.

    Example: lorasim gap results/lookahead_equal_memory --policy lookahead
    --against lru,slora,overlap,history --oracle zero_load,resident
    --first-use-bound configs/sweeps/lookahead_equal_memory.yaml
    """
    from experiments.gap import GapSpec, gap_table
    from experiments.store import atomic_write_text

    spec = GapSpec(policy=policy, against=_names(against), reference=reference, oracles=_names(oracle),
                   bound_sweep=first_use_bound)
    try:
        text = gap_table(results, spec)
    except LorasimError as e:
        raise _fail(e) from None
    path = out or results / "gap.md"
    atomic_write_text(path, text)
    typer.echo(text)
    typer.echo(f"-> {path}")


def rank(
    errors: Annotated[list[Path], typer.Argument(
        help="errors.csv of `lorasim validate` (several: a later file's cells replace an earlier one's).",
        metavar="ERRORS.csv...")],
    policy: Annotated[str | None, typer.Option("--policy", "-p", help="Also pair this policy with the others by trace.")] = None,
    against: Annotated[list[str] | None, typer.Option(
        help="Policies --policy is paired with (repeatable or comma-separated; default: all but resident).")] = None,
    out: Annotated[Path | None, typer.Option(help="Markdown file to write as well.")] = None,
) -> None:
    """Rank policies on the GPU and in the simulator from validation tables.

    Prints, per workload and metric, the policy order by the mean over traces on each side and
    whether they agree; with --policy, that policy against each other one, paired by trace.

    Example: lorasim rank results/validation/h200/saturated/errors.csv --policy lookahead --against overlap
    """
    from experiments.ranking import ranking_report

    _echo_report(lambda: ranking_report(errors, policy, _names(against)), out)


def rank_across(
    results: Annotated[Path, typer.Argument(help="Results directory of `lorasim sweep`.", metavar="RESULTS")],
    axis: Annotated[str, typer.Option(help="The sweep axis to compare orders across (e.g. hardware, serving.max_loras_per_batch).")],
    oracle: Annotated[str, typer.Option(help="Policy left out of the orders (best by construction).")] = "resident",
    out: Annotated[Path | None, typer.Option(help="Markdown file to write as well.")] = None,
) -> None:
    """Does a sweep's policy ranking hold across one of its axes?

    Prints, per workload and metric (P50/P99 TTFT, mean E2E), the policy order at each value of
    the axis (means over repeats) and whether it is the same at all of them.

    Example: lorasim rank-across results/fairness_profiles --axis hardware
    """
    from experiments.ranking import orders_across

    _echo_report(lambda: orders_across(results, axis, oracle), out)


def compare(
    result_file: Annotated[Path, typer.Argument(
        help="The engine's benchmark output: SGLang `bench_serving --output-file` (JSONL) or vLLM "
             "`vllm bench serve --save-result` (JSON).", metavar="RESULT_FILE")],
    scenario: Annotated[Path, typer.Option(help="Scenario YAML the engine's workload came from.",
                                           metavar="S.yaml")],
    policy: Annotated[str, typer.Option("--policy", "-p", help=(
        "Policy the simulator runs; lru is SGLang's and vLLM's default blocking load, overlap is "
        "SGLang's --enable-lora-overlap-loading."))] = "lru",
    run: Annotated[int | None, typer.Option(help="Which run of a file holding several (1 = first; "
                                                 "default: the last, as both tools append).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write OUT.csv, OUT.md and OUT.png.")] = None,
) -> None:
    """Set an engine's measured bench_serving metrics next to the simulator's on the same scenario.

    Prints mean/median/P99 TTFT, TPOT, ITL, E2E latency, request and output throughput for
    both, with the simulator's relative error (sim - engine) / engine, and checks that the
    engine ran the scenario's requests (count and lengths when the file has them; export the
    workload with `lorasim trace SCENARIO --format sglang|mooncake|vllm`).

    Example: lorasim compare sglang.jsonl --scenario configs/scenarios/uniform.yaml -p overlap --out out/cmp
    """
    import math

    from experiments.compare import run_compare

    try:
        c, paths = run_compare(result_file, scenario, policy, run, out)
    except LorasimError as e:
        raise _fail(e) from None
    e = c.engine
    typer.echo(f"{e.engine} run {e.run} of {e.runs} ({e.source}) vs lorasim {c.policy} on {scenario}")
    typer.echo(f"{'metric':24s} {'engine':>12s} {'simulator':>12s} {'rel. error':>11s}")
    for r in c.table.itertuples(index=False):
        rel = "-" if math.isnan(r.rel_error) else f"{r.rel_error:+.1%}"
        sim = "-" if math.isnan(r.simulator) else f"{r.simulator:.2f}"
        typer.echo(f"{r.metric:24s} {r.engine:12.2f} {sim:>12s} {rel:>11s}")
    typer.echo(f"lengths: {c.lengths}")
    for w in c.warnings:
        typer.echo(f"warning: {w}", err=True)
    if paths:
        typer.echo("-> " + ", ".join(str(p) for p in paths.values()))


def bench_scale(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for scaling.csv and scaling.png (reused to resume).")]
    = Path("results/bench_scale"),
    sizes: Annotated[str, typer.Option(help="Comma-separated request counts for the scaling curve.")]
    = "10000,30000,100000,300000,1000000",
    policies: Annotated[str, typer.Option(help="Comma-separated policies: the first at every size, "
                                          "the rest at the largest.")] = "lru,overlap,slora,lookahead",
) -> None:
    """Simulator time and peak memory against trace length (10k to 1M requests; issue #29).

    Each point runs in a fresh process and prints its seconds and peak RSS; points already in
    OUT/scaling.csv are skipped, so an interrupted run resumes. The 1M points take minutes each."""
    from experiments.bench_scale import plot as plot_scaling
    from experiments.bench_scale import run_scaling, verdicts
    from sim.policies import registry

    try:
        ns = [int(x) for x in sizes.split(",") if x.strip()]
        if not ns or min(ns) < 1:
            raise ValueError
    except ValueError:
        raise _fail(LorasimError(f"--sizes: expected comma-separated positive integers, got {sizes!r}")) from None
    pols = [p.strip() for p in policies.split(",") if p.strip()]
    for p in pols:
        try:
            registry.check_name(p)
        except ValueError as e:
            raise _fail(LorasimError(f"--policies: {e}")) from None
    try:
        df = run_scaling(out, ns, pols, echo=typer.echo)
    except RuntimeError as e:  # a point's process died: the points before it are saved
        raise _fail(LorasimError(str(e))) from None
    png = plot_scaling(df, out / "scaling.png")
    for line in verdicts(df):
        typer.echo(line)
    typer.echo(f"wrote {out / 'scaling.csv'} and {png}")


def register(app: typer.Typer) -> None:
    """Add the sweep, plot, report, gap, rank, rank-across and compare commands to `app`."""
    app.command("sweep")(sweep)
    app.command("bench-scale")(bench_scale)
    app.command("plot")(plot)
    app.command("report")(report)
    app.command("gap")(gap)
    app.command("rank")(rank)
    app.command("rank-across")(rank_across)
    app.command("compare")(compare)
    from experiments.reproduce_cmd import reproduce

    app.command("reproduce")(reproduce)
