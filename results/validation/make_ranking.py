"""Policy ranking, GPU vs simulator, from a validate errors.csv (GPU and sim value per cell).

    python results/validation/make_ranking.py results/validation/round3/resim-light/errors.csv
"""

from __future__ import annotations

import sys

import pandas as pd

METRICS = {"ttft_median_ms": "P50 TTFT", "ttft_p99_ms": "P99 TTFT", "e2e_mean_ms": "mean E2E"}


def ranking(df: pd.DataFrame) -> str:
    lines = []
    for scn, g in df.groupby("scenario", sort=False):
        lines += [f"## {scn}", "", "| metric | GPU | simulator | same order? |", "|---|---|---|---|"]
        for m, label in METRICS.items():
            c = g[g["metric"] == m]
            order = {}
            for side in ("gpu", "sim"):
                s = c.sort_values(side)
                order[side] = " < ".join(f"{p} {v:.0f}" for p, v in zip(s["policy"], s[side], strict=True))
            same = list(c.sort_values("gpu")["policy"]) == list(c.sort_values("sim")["policy"])
            lines.append(f"| {label} | {order['gpu']} | {order['sim']} | {'yes' if same else 'no'} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(ranking(pd.read_csv(sys.argv[1])))
