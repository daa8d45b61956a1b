"""Policy ranking, GPU vs simulator, from a validate errors.csv (GPU and sim value per cell).

    python results/validation/make_ranking.py results/validation/round3/resim-light/errors.csv
"""

from __future__ import annotations

import sys

import pandas as pd

METRICS = {"ttft_median_ms": "P50 TTFT", "ttft_p99_ms": "P99 TTFT", "e2e_mean_ms": "mean E2E"}


def _tied(v: dict[str, tuple[float, float]], a: str, b: str) -> bool:
    """Do policies a and b's GPU values (value, half-range) differ by less than their noise?"""
    return abs(v[a][0] - v[b][0]) <= v[a][1] + v[b][1]


def ranking(df: pd.DataFrame) -> str:
    """Per scenario and metric, the GPU's and the simulator's order; a last line counts the rows
    whose best policy, worst policy and whole order agree. `resident` (the oracle) is left out
    of the best/worst counts: it is best by construction."""
    lines = []
    n = best = worst = full = best_t = worst_t = 0
    for scn, g in df.groupby("scenario", sort=False):
        lines += [f"## {scn}", "", "| metric | GPU | simulator | same order? |", "|---|---|---|---|"]
        for m, label in METRICS.items():
            c = g[g["metric"] == m]
            order = {}
            for side in ("gpu", "sim"):
                s = c.sort_values(side)
                order[side] = " < ".join(f"{p} {v:.0f}" for p, v in zip(s["policy"], s[side], strict=True))
            same = list(c.sort_values("gpu")["policy"]) == list(c.sort_values("sim")["policy"])
            pols = c[c["policy"] != "resident"]
            g_ord, s_ord = list(pols.sort_values("gpu")["policy"]), list(pols.sort_values("sim")["policy"])
            n += 1
            best += g_ord[0] == s_ord[0]
            worst += g_ord[-1] == s_ord[-1]
            full += same
            # up to the GPU's noise: policies whose GPU values differ by less than their
            # half-ranges over the passes (gpu_spread, relative) are tied
            half = pols["gpu"] * pols.get("gpu_spread", 0.0)
            v = dict(zip(pols["policy"], zip(pols["gpu"], half, strict=True), strict=True))
            best_t += _tied(v, s_ord[0], g_ord[0])
            worst_t += _tied(v, s_ord[-1], g_ord[-1])
            lines.append(f"| {label} | {order['gpu']} | {order['sim']} | {'yes' if same else 'no'} |")
        lines.append("")
    lines.append(f"Rows where the simulator has the GPU's best loading policy: {best}/{n}; its worst: "
                 f"{worst}/{n}; the whole order: {full}/{n}. Counting policies the GPU cannot tell "
                 f"apart (values within their half-ranges over the passes) as tied: best {best_t}/{n}, "
                 f"worst {worst_t}/{n}.")
    return "\n".join(lines)


if __name__ == "__main__":
    print(ranking(pd.read_csv(sys.argv[1])))
