"""`lorasim sweep | plot | report`: the experiments commands, added to the main typer app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sim.errors import LorasimError


def _fail(e: LorasimError) -> typer.Exit:
    typer.echo(f"error: {e}", err=True)
    return typer.Exit(2)


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


def register(app: typer.Typer) -> None:
    """Add the sweep, plot and report commands to `app`."""
    app.command("sweep")(sweep)
    app.command("plot")(plot)
    app.command("report")(report)
