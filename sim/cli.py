"""`lorasim`: one CLI for the simulator, the experiments and the GPU harness.

Sub-commands from `experiments` (sweep, plot, report) and `gpu` (calibrate, validate) are
registered here when their packages import; `gpu` imports torch only inside its commands.
User errors print one line and exit 2; they never show a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from sim.errors import LorasimError

app = typer.Typer(
    name="lorasim",
    help=(
        "Simulate LoRA adapter loading policies (lru, fifo, slora, overlap, history, lookahead; "
        "oracles resident, zero_load) "
        "for your adapters, traffic and GPU; sweep, plot, report; calibrate and validate on a GPU."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

SUMMARY_COLUMNS = [
    ("ttft_median_ms", "P50 TTFT ms"),
    ("ttft_p99_ms", "P99 TTFT ms"),
    ("ttft_mean_ms", "mean TTFT ms"),
    ("e2e_mean_ms", "mean E2E ms"),
    ("tpot_median_ms", "P50 TPOT ms"),
    ("hit_rate", "hit rate"),
    ("loads", "loads"),
    ("pcie_busy_frac", "PCIe busy"),
    ("gpu_stall_ms", "GPU stall ms"),
]


def _print_table(title: str, summaries: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    t.add_column("policy", no_wrap=True)
    for _, label in SUMMARY_COLUMNS:
        t.add_column(label, justify="right")
    for s in summaries:
        row = [str(s["policy"])]
        for key, _ in SUMMARY_COLUMNS:
            v = s.get(key)
            if v is None:
                row.append("-")
            elif key in ("hit_rate", "pcie_busy_frac"):
                row.append(f"{v:.2f}")
            elif key == "loads":
                row.append(f"{int(v)}")
            else:
                row.append(f"{v:.1f}")
        t.add_row(*row)
    import shutil

    width = shutil.get_terminal_size(fallback=(160, 24)).columns if sys.stdout.isatty() else 160
    Console(width=width).print(t)


@app.command(
    epilog="Example: lorasim run configs/scenarios/zipf.yaml -p lru -p overlap -p lookahead --out out/zipf"
)
def run(
    config: Annotated[Path, typer.Argument(help="scenario YAML (see configs/scenarios/)")],
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", "-p", help="policy to run (repeatable); default: the file's `policies`"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="write per-request parquet, timelines and summary here")
    ] = None,
    check: Annotated[bool, typer.Option(help="check invariants after every iteration")] = False,
) -> None:
    """Run one scenario under several policies on the same trace and compare them."""
    from tqdm import tqdm

    from sim.hw import load_hardware
    from sim.policies import registry
    from sim.runner import load_scenario, simulate
    from sim.workload import generate_trace, save_trace

    sc = load_scenario(config)
    policies = policy or sc.policies
    for p in policies:
        try:
            registry.check_name(p)
        except ValueError as e:
            raise LorasimError(f"--policy: {e}") from None
    trace = generate_trace(sc)
    from sim.runner import check_feasible

    check_feasible(sc, trace)  # before the progress bar: a refusal is one clean line
    if trace.meta.get("skipped_rows"):
        typer.echo(f"{sc.workload.arrival.path}: skipped {trace.meta['skipped_rows']} of "
                   f"{trace.meta.get('rows_read', '?')} rows with 0 input or 0 output tokens")
    hw = load_hardware(sc.hardware, sc.model.shape())
    results = []
    for p in tqdm(policies, desc=sc.name, unit="policy", disable=len(policies) < 2):
        results.append(simulate(sc, p, trace=trace, hardware=hw, check=check))
    _print_table(f"{sc.name}: {len(trace.requests)} requests, {len(trace.adapters)} adapters", [r.summary for r in results])
    if out is not None:
        from sim.metrics import write_parquet

        out.mkdir(parents=True, exist_ok=True)
        for r in results:
            write_parquet(r.records, out / f"records_{r.policy}.parquet")
            write_parquet(r.timeline, out / f"timeline_{r.policy}.parquet")
        save_trace(trace, out / "trace.csv")
        import pandas as pd

        write_parquet(pd.DataFrame([r.summary for r in results]), out / "summary.parquet")
        tmp = out / "summary.json.tmp"
        tmp.write_text(json.dumps([r.summary for r in results], indent=2, default=float))
        tmp.replace(out / "summary.json")
        typer.echo(f"wrote {out}/ (records_*.parquet, timeline_*.parquet, summary.json, trace.csv)")


@app.command()
def policies() -> None:
    """List the loading policies, what each does, and its options with their defaults (set them
    in a scenario as `policy_options: {lookahead: {max_inflight: 1}}`)."""
    from sim.policies import registry

    for name in registry.names():
        cls = registry.get(name)
        typer.echo(f"{name:10s} {getattr(cls, 'summary', '')}")
        opts = registry.options(name)
        if opts:
            typer.echo(" " * 11 + "options: " + ", ".join(f"{k}={v}" for k, v in opts.items()))


@app.command(
    epilog="Example: lorasim trace configs/scenarios/zipf.yaml --format sglang --out zipf.jsonl "
    "(then see docs/compare.md to replay it and `lorasim compare` the result)"
)
def trace(
    config: Annotated[Path, typer.Argument(help="scenario YAML")],
    out: Annotated[Path, typer.Option(help="trace file to write")],
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help=(
                "csv | parquet: lorasim's own (replayed by the simulator and the GPU harness; default: "
                "from OUT's suffix); sglang: JSONL for SGLang bench_serving --dataset-name openai "
                "(per-request adapters and lengths); mooncake: Mooncake trace for bench_serving "
                "--dataset-name mooncake (arrival times); vllm: JSONL for vllm bench serve "
                "--dataset-name custom. docs/compare.md says what each keeps."
            ),
        ),
    ] = None,
) -> None:
    """Generate a scenario's trace and save it, to replay in the simulator, on the GPU harness,
    or with SGLang's / vLLM's benchmark client."""
    from sim.runner import load_scenario
    from sim.workload import generate_trace, save_trace
    from sim.workload.export import FORMATS, REPLAY, export_trace

    own = ("csv", "parquet")
    if format is not None and format not in (*own, *FORMATS):
        raise LorasimError(f"--format: unknown format {format!r}; expected one of {', '.join((*own, *FORMATS))}")
    sc = load_scenario(config)
    t = generate_trace(sc)
    if format in FORMATS:
        export_trace(t, out, format)
        typer.echo(f"wrote {len(t.requests)} requests to {out} ({format})")
        typer.echo(f"replay: {REPLAY[format].replace(' F ', f' {out} ').replace(' N ', f' {len(t.requests)} ')}")
        return
    if format is not None and out.suffix.lower() != f".{format}":
        raise LorasimError(f"--out: {out}: --format {format} writes a .{format} file; name it *.{format}")
    save_trace(t, out)
    typer.echo(f"wrote {len(t.requests)} requests to {out}")


@app.command()
def bench(
    requests: Annotated[int, typer.Option(help="requests in the large Poisson trace")] = 10_000,
    quick: Annotated[bool, typer.Option(help="smaller trace (1,000 requests)")] = False,
) -> None:
    """Print simulator speed: the SGLang overlap benchmark (all policies) and a large trace."""
    from sim.bench import run_bench

    run_bench(requests=1000 if quick else requests)


def _register_optional() -> None:
    for mod in ("experiments.cli", "gpu.cli", "sim.check"):
        try:
            m = __import__(mod, fromlist=["register"])
        except ImportError:
            continue
        reg = getattr(m, "register", None)
        if reg is not None:
            reg(app)


_register_optional()


def main() -> None:
    try:
        app()
    except LorasimError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
