"""Issue #6 on the H200, round 15: `lookahead` against overlap, lru and slora over new traces of
the saturated scenarios (traces 1..3 of configs/validate/{uniform,zipf,bursty}.yaml; run from the
repo root):

    python results/validation/round15/h200_ranking.py > results/validation/round15/h200-ranking.md

Two sets of runs: `run_device.sh` (dev1 bursty, dev2 zipf, dev3 uniform: every policy, one host)
and `run_device_spin.sh` (dev4: overlap and lookahead back to back on another host, after the
CUDA driver's wait for a launched decode stopped sleeping between its looks). Each cell:
lookahead / the other policy, means over the (trace, run) pairs where neither run was degraded
(gpu.run_health), the mean of the per-pair change, and in how many pairs lookahead was at least
as good.
"""

from pathlib import Path

import pandas as pd

ROOT = Path(__file__).parent
METRICS = {"ttft_median_ms": "P50 TTFT", "ttft_p99_ms": "P99 TTFT", "e2e_mean_ms": "mean E2E",
           "tpot_median_ms": "median TPOT"}
SETS = {"before": ["dev1", "dev2", "dev3"], "spin": ["dev4"]}


def runs(devs: list[str]) -> pd.DataFrame:
    frames = []
    for dev in devs:
        for f in sorted((ROOT / dev).glob("*/errors.csv")):
            df = pd.read_csv(f)
            health = pd.read_csv(f.with_name("health.csv"))
            bad = health[health.degraded & (health.run != "simulator")][["scenario", "policy"]]
            df = df.merge(bad.assign(degraded=True), how="left", on=["scenario", "policy"])
            df["gpu"] = df.gpu.where(df.degraded.isna())
            df["run"] = dev
            frames.append(df.drop(columns="degraded"))
    return pd.concat(frames)


def table(df: pd.DataFrame, others: list[str]) -> str:
    df = df[df.metric.isin(list(METRICS))]
    g = df.pivot_table(index=["workload", "metric", "scenario", "run"], columns="policy", values="gpu")
    rows = []
    for (w, metric), x in g.groupby(level=[0, 1]):
        row = {"workload": w, "metric": METRICS[metric]}
        for o in others:
            if o not in x.columns:
                continue
            y = x.dropna(subset=["lookahead", o])
            d = (y["lookahead"] / y[o] - 1) * 100
            se = d.std(ddof=1) / len(d) ** 0.5 if len(d) > 1 else float("nan")
            row[f"vs {o}"] = (f"{y['lookahead'].mean():.0f} / {y[o].mean():.0f} "
                              f"({d.mean():+.1f} ± {se:.1f} %, {(d <= 0).sum()}/{len(d)})")
        rows.append(row)
    out = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(METRICS.values())}
    out = out.sort_values(["workload", "metric"], key=lambda s: s.map(order) if s.name == "metric" else s)
    return out.to_markdown(index=False)


def main() -> None:
    print("# lookahead on the H200 (round 15: traces 1..3 of the saturated scenarios, GPU side)\n")
    print("Cells: lookahead / other, means over (trace, run) pairs (change ± standard error, "
          "pairs where lookahead was at least as good).\n")
    print("## run_device.sh: every policy, one host (dev1..dev3)\n")
    print(table(runs(SETS["before"]), ["overlap", "lru", "slora"]))
    print("\n## run_device_spin.sh: overlap and lookahead, after the spin-wait fix (dev4)\n")
    print(table(runs(SETS["spin"]), ["overlap"]))
    print("\n## Both: lookahead vs overlap over all six (trace, run) pairs of each workload\n")
    print(table(runs(SETS["before"] + SETS["spin"]), ["overlap"]))


if __name__ == "__main__":
    main()
