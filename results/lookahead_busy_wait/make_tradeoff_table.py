"""Issue #6 trade-off table (run from the repo root after `lorasim sweep
configs/sweeps/lookahead_busy_wait.yaml --out results/lookahead_busy_wait`): lookahead at each
busy_wait_factor vs the better of lru and overlap per metric, mean over the three seeds."""
import pandas as pd

df = pd.read_parquet("results/lookahead_busy_wait/summaries.parquet")
ms = {"ttft_median_ms": "P50 TTFT", "ttft_p99_ms": "P99 TTFT", "e2e_mean_ms": "mean E2E"}
f = "policy_options.lookahead.busy_wait_factor"
t = df.groupby(["name", "policy", f])[list(ms)].mean()
rows = []
for w in df.name.unique():
    x = t.loc[w]
    best = {m: x.loc[["lru", "overlap"], m].min() for m in ms}
    who = {m: x.loc[["lru", "overlap"], m].groupby(level=0).min().idxmin() for m in ms}
    for k in sorted(df[f].unique()):
        la = x.loc[("lookahead", k)]
        rows.append({"workload": w, "busy_wait_factor": k, **{
            f"{name}: lookahead vs best of lru, overlap": f"{la[m]:.1f} vs {best[m]:.1f} {who[m]} ({la[m] / best[m] - 1:+.1%})"
            for m, name in ms.items()}})
print(pd.DataFrame(rows).to_markdown(index=False))
