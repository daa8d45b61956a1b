"""Simulator vs GPU per-request distributions: CDF plots and a distance between them.

Single quantiles of a 40-request run are fragile: a P99 is one or two requests, and a median
that falls in a jump of a bimodal distribution (a queue that forms or not) moves by 2x when a
few requests cross it, although the rest of the distribution agrees. `lorasim validate`
therefore also writes, per scenario x policy, the Wasserstein-1 distance between the
simulator's TTFT (and E2E) distribution and the GPU runs' pooled one, relative to the GPU
mean: the average shift of the whole distribution, in per cent of a typical request. And it
plots both CDFs (every GPU run thin, the simulator thick) for each scenario.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sim.hw.profile import atomic_write_text
from sim.metrics import relative_w1

COLUMNS = (("ttft", "TTFT"), ("e2e", "E2E"))


@dataclass
class Cell:
    scenario: str
    policy: str
    gpu: list[pd.DataFrame]  # per-request records of each GPU run
    sim: pd.DataFrame


@dataclass
class Distributions:
    """Collects the cells of one validation, then writes distribution.{csv,md} and plots."""

    cells: list[Cell] = field(default_factory=list)

    def add(self, scenario: str, policy: str, gpu: list[pd.DataFrame], sim: pd.DataFrame) -> None:
        gpu = [g for g in gpu if not g.empty]
        if gpu:
            self.cells.append(Cell(scenario, policy, gpu, sim))

    def table(self) -> pd.DataFrame:
        rows = []
        for c in self.cells:
            row = {"scenario": c.scenario, "policy": c.policy, "gpu_runs": len(c.gpu)}
            for col, _ in COLUMNS:
                row[f"{col}_w1_rel"] = relative_w1(
                    [g[col].to_numpy(float) for g in c.gpu], c.sim[col].to_numpy(float)
                )
            rows.append(row)
        return pd.DataFrame(rows, columns=["scenario", "policy", "gpu_runs",
                                           *(f"{col}_w1_rel" for col, _ in COLUMNS)])

    def write(self, out: Path, plots: bool = True) -> pd.DataFrame:
        df = self.table()
        atomic_write_text(out / "distribution.csv", df.to_csv(index=False))
        atomic_write_text(out / "distribution.md", distribution_markdown(df))
        if plots:
            for scenario in dict.fromkeys(c.scenario for c in self.cells):
                cdf_plot([c for c in self.cells if c.scenario == scenario], out / "plots" / f"cdf_{scenario}")
        return df


def distribution_markdown(df: pd.DataFrame) -> str:
    lines = [
        "| scenario | policy | GPU runs | TTFT distance | E2E distance |",
        "|---|---|---:|---:|---:|",
    ]
    for r in df.itertuples():
        lines.append(f"| {r.scenario} | {r.policy} | {r.gpu_runs} | {100 * r.ttft_w1_rel:.1f} % |"
                     f" {100 * r.e2e_w1_rel:.1f} % |")
    lines += [
        "",
        "Distance: Wasserstein-1 between the simulator's per-request distribution and the GPU runs'",
        "pooled one, over the GPU mean (the average shift of the whole CDF, in % of a typical request).",
    ]
    if len(df):
        for col, name in COLUMNS:
            v = df[f"{col}_w1_rel"]
            lines.append(f"- {name}: mean {100 * v.mean():.1f} %, max {100 * v.max():.1f} %,"
                         f" within 10 %: {(v <= 0.10).sum()}/{len(v)}")
    return "\n".join(lines) + "\n"


def cdf_plot(cells: list[Cell], stem: Path) -> list[Path]:
    """One figure per scenario: a column per policy, TTFT on top and E2E below; each GPU run a
    thin line, the simulator a thick dashed one."""
    from experiments.plots import _ecdf, plt, save

    stem.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(2, len(cells), figsize=(3.2 * len(cells), 5.6), squeeze=False,
                             layout="constrained")
    for j, c in enumerate(cells):
        for i, (col, name) in enumerate(COLUMNS):
            ax = axes[i][j]
            for k, g in enumerate(c.gpu):
                x, y = _ecdf(1e3 * g[col].to_numpy(float))
                ax.step(x, y, where="post", color="#1f77b4", lw=0.9, alpha=0.7,
                        label="GPU runs" if k == 0 else None)
            x, y = _ecdf(1e3 * c.sim[col].to_numpy(float))
            ax.step(x, y, where="post", color="#d62728", lw=2.0, ls="--", label="simulator")
            ax.set(title=f"{c.policy}: {name}" if i == 0 else name, xlabel=f"{name} (ms)",
                   ylim=(0, 1.01))
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("fraction of requests")
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{cells[0].scenario}: simulator vs GPU")
    return save(fig, stem)


def read_records(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()
