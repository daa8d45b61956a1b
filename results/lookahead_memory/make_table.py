"""Issue #6: lookahead's share of lru's P99-TTFT gap to each oracle as GPU adapter memory grows
(gamma-bursty, configs/sweeps/lookahead_memory.yaml; run from the repo root after
`lorasim sweep configs/sweeps/lookahead_memory.yaml --out results/lookahead_memory`):

    python results/lookahead_memory/make_table.py > results/lookahead_memory/gap.md
"""

import numpy as np
import pandas as pd


def closed(m: pd.Series, oracle: str) -> str:
    d = m["lru"] - m[oracle]
    return "n/a" if d <= 1 else f"{(m['lru'] - m['lookahead']) / d:.0%}"


def paired(x: pd.DataFrame, metric: str) -> str:
    """lookahead vs the better of lru/overlap (by mean): mean change over seeds ± its standard error."""
    p = x.pivot_table(index="seed", columns="policy", values=metric)
    best = p[["lru", "overlap"]].mean().idxmin()
    d = (p["lookahead"] / p[best] - 1) * 100
    return f"{d.mean():+.1f} ± {d.std(ddof=1) / np.sqrt(len(d)):.1f} % vs {best}"


def main() -> None:
    df = pd.read_parquet("results/lookahead_memory/summaries.parquet")
    rows = []
    for (rank, slots), x in df.groupby(["adapters.rank", "slots_batch"]):
        m = x.groupby("policy")["ttft_p99_ms"].mean()
        rows.append({
            "rank": rank, "GPU slots": slots,
            "P99 TTFT ms: lru / overlap / lookahead / zero_load / resident": " / ".join(
                f"{m[p]:.0f}" for p in ("lru", "overlap", "lookahead", "zero_load", "resident")),
            "lookahead P50": paired(x, "ttft_median_ms"),
            "lookahead P99": paired(x, "ttft_p99_ms"),
            "lookahead mean E2E": paired(x, "e2e_mean_ms"),
            "P99 gap closed vs zero_load": closed(m, "zero_load"),
            "vs resident": closed(m, "resident"),
        })
    print("# lookahead vs GPU adapter memory (gamma-bursty, 50 adapters, ten seeds)\n")
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
