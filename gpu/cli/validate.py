"""`lorasim validate`: each scenario's trace on the GPU and in the simulator, or the simulator
alone against GPU runs recorded earlier (--gpu-runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gpu import DEGRADED_ABOVE, PREFILL_GRAPH_TOKENS
from gpu.cli.common import PrefillGraphTokens, need_torch, refuse_big_model_on_cpu


def _parse_traces(traces: str) -> range:
    """`--traces 4` (traces 0..3) or `--traces 1..3`, as a range of trace numbers."""
    from sim.errors import ConfigError

    first, sep, last = traces.partition("..")
    try:
        r = range(int(first), int(last) + 1) if sep else range(int(traces))
    except ValueError:
        r = range(0)
    if not r or r.start < 0:
        raise ConfigError("command line", "--traces",
                          f"got {traces!r}; expected a count N >= 1 (traces 0..N-1) or FIRST..LAST with "
                          "0 <= FIRST <= LAST, e.g. 4 or 1..3")
    return r


def validate(
    scenario: Annotated[
        list[Path], typer.Option("--scenario", help="scenario YAML (repeat for several)")
    ],
    profile: Annotated[
        Path | None, typer.Option(help="hardware profile for the simulator side")
    ] = None,
    policies: Annotated[
        str | None, typer.Option(help="comma-separated policies (default: each scenario's)")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="folder for errors.csv/errors.md and records")
    ] = Path("results/validate"),
    device: Annotated[
        str | None, typer.Option(help="torch device (default: cuda if present)")
    ] = None,
    adapter_dir: Annotated[
        Path | None, typer.Option(help="where synthetic PEFT adapters are written")
    ] = None,
    gpu_runs: Annotated[
        list[Path] | None,
        typer.Option(
            "--gpu-runs",
            help="re-simulate only, against the GPU side recorded in this earlier --out "
            "folder (repeat to compare with the mean of several runs); no GPU needed",
        ),
    ] = None,
    repeats: Annotated[
        int,
        typer.Option(
            min=1,
            help="GPU passes (every other in reverse policy order); the table then compares "
            "the simulator with their mean and shows their spread. Finished passes are kept.",
        ),
    ] = 1,
    eager_decode: Annotated[
        bool,
        typer.Option(
            help="GPU side decodes with one eager model.forward a step (rounds 1-4) "
            "instead of CUDA graphs; calibrate the profile the same way"
        ),
    ] = False,
    prefill_graph_tokens: PrefillGraphTokens = PREFILL_GRAPH_TOKENS,
    degraded_above: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="leave a GPU run out of the mean when the machine slowed down during it: a "
            "stretch of its forwards ran this many times slower than the run's usual pace "
            "against the profile (healthy runs stay below 1.10; see health.md). 0 keeps "
            "every run",
        ),
    ] = DEGRADED_ABOVE,
    sim_repeats: Annotated[
        int,
        typer.Option(
            min=1,
            help="simulator runs per cell, each drawing the profile's measured run-to-run "
            "noise (compute.run_speed_sd, pcie.issue_sd; `calibrate --noise-from`); the table "
            "compares their mean, as the GPU side's is of its passes. 1: one deterministic run",
        ),
    ] = 1,
    traces: Annotated[
        str,
        typer.Option(
            help="traces of each scenario: N (traces 0..N-1) or FIRST..LAST; trace k has the "
            "scenario's seed + k (cells SCENARIO-sSEED; trace 0 is its own). The table adds "
            "each workload's mean over its traces, so no one trace's race (a request arriving "
            "just before or after another finishes) decides a cell. Run new traces on the GPU "
            "with 1..3, compare all with --gpu-runs and 4",
        ),
    ] = "1",
    resume: Annotated[
        bool,
        typer.Option(
            help="keep the GPU runs --out already records (each run's summary.json is written "
            "last) and run only the missing ones: a validation cut off by a time limit goes on "
            "where it stopped (the passes of --repeats always do). Only with the same GPU options and traces",
        ),
    ] = False,
    stop_after: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="seconds: start no GPU run that would end later than this from the start, "
            "timing it as the slowest run so far (a machine lent for a fixed time loses the "
            "run it is killed in); the tables cover the runs done, and --resume goes on",
        ),
    ] = None,
) -> None:
    """Run each scenario's trace on the GPU and in the simulator; print the error table.

    With --gpu-runs, the GPU side is read from earlier runs instead: a change to the
    simulator's model is checked against the hardware in seconds, on any machine.

    Example (out/validate: the --out of an earlier run on a GPU): lorasim validate
    --scenario configs/validate/zipf.yaml --traces 1..3 --profile
    configs/hardware/h200-measured.yaml --gpu-runs out/validate --out /tmp/resim
    """
    pols = [p.strip() for p in policies.split(",") if p.strip()] if policies else None
    trace_range = _parse_traces(traces)
    if 0 < degraded_above < 1:
        from sim.errors import ConfigError

        raise ConfigError("command line", "--degraded-above", f"got {degraded_above}; expected 0 (keep "
                          "every run) or at least 1: a run's slowdown, its slowest stretch over its "
                          "usual pace, is never below 1")
    if gpu_runs:
        from gpu.validate import resimulate

        resimulate(scenario, profile, pols, gpu_runs, out, progress=typer.echo,
                   degraded_above=degraded_above, sim_repeats=sim_repeats, traces=trace_range)
        typer.echo((out / "errors.md").read_text())
        return
    need_torch()
    from sim.runner import load_scenario

    for path in scenario:
        refuse_big_model_on_cpu(load_scenario(path).model.shape(), device, str(path), "model")
    from gpu.run_budget import RunBudget
    from gpu.validate import GpuOptions, run_validation

    opts = GpuOptions(
        device=device,
        adapter_dir=str(adapter_dir) if adapter_dir else None,
        eager_decode=eager_decode,
        prefill_graph_tokens=prefill_graph_tokens,
    )
    if repeats > 1:
        from gpu.validate import run_validation_repeated

        df = run_validation_repeated(scenario, profile, pols, out, repeats, opts, progress=typer.echo,
                                     degraded_above=degraded_above, sim_repeats=sim_repeats,
                                     traces=trace_range, budget=RunBudget(stop_after))
    else:
        df = run_validation(scenario, profile, pols, out, opts, progress=typer.echo, resume=resume,
                            degraded_above=degraded_above, sim_repeats=sim_repeats, traces=trace_range,
                            budget=RunBudget(stop_after))
    if not df.empty:  # a pass stopped by --stop-after before any run has no table yet
        typer.echo((out / "errors.md").read_text())
