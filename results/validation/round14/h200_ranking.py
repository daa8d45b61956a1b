"""Issue #6 on the H200: `lookahead` (copies at arrival) against lru, overlap and slora, GPU
side of round 14's passes (run from the repo root):

    python results/validation/round14/h200_ranking.py > results/validation/round14/h200-ranking.md

Light: four passes of all five policies (dev1..dev4/light). Saturated: lookahead and overlap
back to back, three passes (dev2..dev4/saturated). Each cell: lookahead / the other policy,
means over the passes where neither run was degraded (gpu.run_health, as `lorasim validate`
leaves them out), the mean of the per-pass change, and in how many of those passes lookahead
was at least as good. In the light scenarios slora has 4
prefetch slots on top of the 4 batch slots (twice the adapter memory of the others).
"""

from pathlib import Path

import pandas as pd

ROOT = Path(__file__).parent
METRICS = {"ttft_median_ms": "P50 TTFT", "ttft_p99_ms": "P99 TTFT", "e2e_mean_ms": "mean E2E"}


def passes(kind: str) -> pd.DataFrame:
    frames = []
    for f in sorted(ROOT.glob(f"dev*/{kind}/errors.csv")):
        df = pd.read_csv(f)
        health = pd.read_csv(f.with_name("health.csv"))
        bad = health[health.degraded & (health.run != "simulator")][["scenario", "policy"]]
        df = df.merge(bad.assign(degraded=True), how="left", on=["scenario", "policy"])
        df["gpu"] = df.gpu.where(df.degraded.isna())
        df["pass"] = f.parts[-3]
        frames.append(df.drop(columns="degraded"))
    return pd.concat(frames)


def table(df: pd.DataFrame, others: list[str]) -> str:
    df = df[df.metric.isin(list(METRICS))]
    g = df.pivot_table(index=["scenario", "metric", "pass"], columns="policy", values="gpu")
    rows = []
    for (scen, metric), x in g.groupby(level=[0, 1]):
        row = {"scenario": scen, "metric": METRICS[metric]}
        for o in others:
            y = x.dropna(subset=["lookahead", o])  # passes where both runs were healthy
            d = (y["lookahead"] / y[o] - 1) * 100
            row[f"vs {o}"] = (
                f"{y['lookahead'].mean():.0f} / {y[o].mean():.0f} ({d.mean():+.1f} %, {(d <= 0).sum()}/{len(d)})"
            )
        rows.append(row)
    out = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(METRICS.values())}
    out = out.sort_values(["scenario", "metric"], key=lambda s: s.map(order) if s.name == "metric" else s)
    return out.to_markdown(index=False)


def main() -> None:
    print("# lookahead on the H200 (round 14, GPU side)\n")
    print("## Light: 40 requests at 4 req/s (configs/validate/light)\n")
    print(table(passes("light"), ["overlap", "lru", "slora"]))
    print("\n## Saturated: 64 requests (configs/validate/{uniform,zipf,bursty}.yaml)\n")
    print(table(passes("saturated"), ["overlap"]))


if __name__ == "__main__":
    main()
