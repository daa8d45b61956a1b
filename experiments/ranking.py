"""Policy rankings from validation tables: does the simulator order policies as the GPU does?

A simulator is useful to a user when it picks the same policy the hardware would, so besides
per-cell errors we compare rankings. `lorasim validate` writes `errors.csv` (one row per
scenario trace, policy and metric, with the GPU's and the simulator's value). Pairing two
policies by trace removes most trace-to-trace variance, as the sweeps pair by seed.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from experiments.gap import paired_change
from sim.errors import LorasimError

METRICS = {"ttft_median_ms": "P50 TTFT", "ttft_p99_ms": "P99 TTFT", "e2e_mean_ms": "mean E2E"}
NEEDED = ["scenario", "workload", "policy", "metric", "gpu", "sim"]


def read_errors(paths: list[str | Path]) -> pd.DataFrame:
    """Rows of one or several validate errors.csv files; a later file's cell replaces an
    earlier one's (newer runs of the same trace and policy)."""
    frames = []
    for p in paths:
        try:
            df = pd.read_csv(p)
        except (OSError, ValueError) as e:
            raise LorasimError(f"{p}: cannot read ({e}); expected the errors.csv of `lorasim validate`") from None
        missing = [c for c in NEEDED if c not in df]
        if missing:
            raise LorasimError(f"{p}: columns {', '.join(missing)} missing; expected the errors.csv of `lorasim validate`")
        frames.append(df[NEEDED])
    if not frames:
        raise LorasimError("no errors.csv given")
    df = pd.concat(frames, ignore_index=True)
    return df.drop_duplicates(["scenario", "policy", "metric"], keep="last")


def _pair(t: pd.DataFrame, policy: str, other: str) -> str:
    """t: traces x policies of one side. Means, mean change ± standard error, wins."""
    t = t[[policy, other]].dropna()
    if t.empty:
        return "-"
    c = paired_change(t[policy], t[other])
    se = f" ± {c.se:.1f}" if c.n > 1 else ""
    return f"{t[policy].mean():.0f}/{t[other].mean():.0f} ({c.mean:+.1f}{se} %, {c.wins}/{c.n})"


def pairwise(df: pd.DataFrame, policy: str, against: list[str]) -> str:
    """`policy` against each of `against`, per workload and metric, GPU and simulator side."""
    have = set(df.policy)
    missing = sorted({policy, *against} - have)
    if missing:
        raise LorasimError(f"no rows of {', '.join(missing)}; the tables have {', '.join(sorted(have))}")
    rows = []
    for w in dict.fromkeys(df.workload):
        x = df[df.workload == w]
        for o in against:
            row = {"workload": w, "vs": o}
            for m, label in METRICS.items():
                c = x[x.metric == m]
                for side in ("gpu", "sim"):
                    t = c.pivot_table(index="scenario", columns="policy", values=side)
                    row[f"{label} {'GPU' if side == 'gpu' else 'simulator'}"] = (
                        _pair(t, policy, o) if {policy, o} <= set(t.columns) else "-")
            rows.append(row)
    return (pd.DataFrame(rows).to_markdown(index=False) +
            f"\n\nCells: {policy} / the other policy, means over traces (mean per-trace change ± its standard "
            f"error, traces where {policy} was at least as good).\n")


def orders(df: pd.DataFrame, oracle: str = "resident") -> str:
    """Per workload and metric, the policy order by the mean over traces on the GPU and in
    the simulator, and how often the best, the worst and the whole order agree. The oracle is
    left out: it is best by construction."""
    df = df[df.policy != oracle]
    lines = ["| workload | metric | GPU | simulator | same order? |", "|---|---|---|---|---|"]
    n = best = worst = full = 0
    for w, x in df.groupby("workload", sort=False):
        for m, label in METRICS.items():
            means = x[x.metric == m].groupby("policy")[["gpu", "sim"]].mean()
            if len(means) < 2:
                continue
            g = list(means.gpu.sort_values().index)
            s = list(means.sim.sort_values().index)
            n += 1
            best += g[0] == s[0]
            worst += g[-1] == s[-1]
            full += g == s
            lines.append(f"| {w} | {label} | {' < '.join(g)} | {' < '.join(s)} | {'yes' if g == s else 'no'} |")
    lines += ["", f"Same best policy: {best}/{n}; same worst: {worst}/{n}; same whole order: {full}/{n} "
              f"(means over traces; `{oracle}` left out)."]
    return "\n".join(lines) + "\n"


def ranking_report(paths: list[str | Path], policy: str | None, against: list[str]) -> str:
    df = read_errors(paths)
    text = "## Policy order, GPU vs simulator\n\n" + orders(df)
    if policy:
        others = against or [p for p in dict.fromkeys(df.policy) if p not in (policy, "resident")]
        text += f"\n## {policy} against the others, paired by trace\n\n" + pairwise(df, policy, others)
    return text
