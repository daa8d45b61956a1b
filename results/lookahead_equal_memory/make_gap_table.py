"""Issue #6 table: lookahead vs the best existing policy, and P99 gap closed (run from the repo root)."""

import pandas as pd

EXISTING = ["lru", "slora", "overlap", "history"]


def gap_closed(x: pd.DataFrame, oracle: str) -> str:
    """Share of lru's P99-TTFT excess over `oracle` that lookahead removes."""
    d = x.loc["lru", "ttft_p99_ms"] - x.loc[oracle, "ttft_p99_ms"]
    if d <= 1:
        return "n/a (lru at oracle)"
    return f"{(x.loc['lru', 'ttft_p99_ms'] - x.loc['lookahead', 'ttft_p99_ms']) / d:.0%}"


def main() -> None:
    df = pd.read_parquet("results/lookahead_equal_memory/summaries.parquet")
    t = df.groupby(["group", "policy"])[["ttft_median_ms", "ttft_p99_ms", "e2e_mean_ms"]].mean()
    rows = []
    for g in sorted(df.group.unique()):
        x = t.loc[g]
        la = x.loc["lookahead"]
        row = {"workload": g}
        for m in x.columns:
            best = x.loc[EXISTING, m].min()
            label = f"{m.split('_')[0]} {m.split('_')[1]} lookahead/best"
            row[label] = f"{la[m]:.0f}/{best:.0f} ({la[m] / best - 1:+.1%})"
        row["P99 gap closed vs zero_load"] = gap_closed(x, "zero_load")
        row["vs resident"] = gap_closed(x, "resident")
        rows.append(row)
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
