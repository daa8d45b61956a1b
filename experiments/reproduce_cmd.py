"""The `lorasim reproduce` command (registered by experiments.cli): options, progress, summary lines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sim.errors import LorasimError

DEFAULT_PROFILE = Path("configs/hardware/h200-measured.yaml")


def reproduce(
    target: Annotated[Path, typer.Argument(
        help="A reproduction YAML, or a folder of them (each: source, scenario, baseline, feature, "
             "published numbers, optional variants).", metavar="[REPRODUCTIONS]")] = Path("configs/reproductions"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Results folder: summaries.csv, report.md; per-request "
                                                          "records under runs/.")] = Path("results/reproductions"),
    docs: Annotated[Path | None, typer.Option(help="Also write the page here (e.g. docs/reproductions.md).")] = None,
    analytic: Annotated[str, typer.Option(help="Analytic GPU preset of the first column (h200, h100, a100).")] = "h200",
    profile: Annotated[list[Path] | None, typer.Option(
        help="Measured hardware profile for a further column (repeatable; default: "
             "configs/hardware/h200-measured.yaml).", metavar="PROFILE.yaml")] = None,
    no_profile: Annotated[bool, typer.Option("--no-profile", help="Run the analytic model only.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Run every published run (configs/reproductions/) in the simulator; published vs simulated.

    Each reproduction's baseline and feature run under the analytic GPU model, under each
    measured profile, and under the source's stated costs when it states them; its what-if
    variants run under the analytic model. Writes OUT/summaries.csv and OUT/report.md (and
    --docs): per metric the published and simulated baseline -> feature, the direction
    (right/wrong), |error|, and issue #27's pass criteria. Prints one line per reproduction
    and GPU model with the metrics that miss.

    Example: lorasim reproduce configs/reproductions --out results/reproductions --docs docs/reproductions.md
    --profile configs/hardware/h200-measured.yaml --profile configs/hardware/h100-measured.yaml
    """
    from experiments.reproduce import STATED, verdicts
    from experiments.reproduce import reproduce as run_reproduce
    from experiments.reproduction_doc import fmt

    profiles = [] if no_profile else (profile or [DEFAULT_PROFILE])
    parts = ["lorasim reproduce", str(target), "--out", str(out)]
    parts += ["--docs", str(docs)] if docs else []
    parts += ["--analytic", analytic] if analytic != "h200" else []
    parts += [x for p in profiles for x in ("--profile", str(p))] if profile else []
    parts += ["--no-profile"] if no_profile else []
    try:
        res = run_reproduce(target, out, docs, preset=analytic, profiles=profiles, command=" ".join(parts),
                            progress=progress)
    except LorasimError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    for rep in res.reps:
        for m in res.models + ([STATED] if rep.spec.stated_costs else []):
            vs = verdicts(res.table, rep.name, m.key)
            bad = [f"{v.metric} ({fmt(v.sim[0])} -> {fmt(v.sim[1])} vs {fmt(v.pub[0])} -> {fmt(v.pub[1])})"
                   for v in vs if not v.passed]
            typer.echo(f"{rep.name} [{m.label}]: {len(vs) - len(bad)} of {len(vs)} metrics pass"
                       + (f"; misses: {', '.join(bad)}" if bad else ""))
    typer.echo("-> " + ", ".join(str(p) for p in res.paths.values()))
