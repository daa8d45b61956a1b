"""Per-run GPU figures of the light-load scenarios: the harness's own run-to-run spread.

Run from the repository root: python results/validation/round4/per_run_table.py > results/validation/round4/per_run.md
Cells: P50 TTFT / P99 TTFT / mean E2E / median TPOT in ms, one column per GPU run.
"""

import json
from pathlib import Path

RUNS = ["round3/light", "round4/light", "round4/light-repeat"]
ROOT = Path("results/validation")
METRICS = ["ttft_median_ms", "ttft_p99_ms", "e2e_mean_ms", "tpot_median_ms"]

print("| scenario | policy | " + " | ".join(RUNS) + " | max/min of P50 TTFT | max/min of TPOT |")
print("|---|---|" + "---|" * len(RUNS) + "---|---|")
for sc in ("light-uniform", "light-zipf", "light-bursty"):
    for pol in ("lru", "slora", "overlap", "lookahead", "resident"):
        gs = [json.loads((ROOT / r / f"{sc}.{pol}.summary.json").read_text())["gpu"] for r in RUNS]
        cells = [" / ".join(f"{g[m]:.0f}" if m != "tpot_median_ms" else f"{g[m]:.1f}" for m in METRICS) for g in gs]
        p50 = [g["ttft_median_ms"] for g in gs]
        tpot = [g["tpot_median_ms"] for g in gs]
        print(f"| {sc} | {pol} | " + " | ".join(cells)
              + f" | {max(p50) / min(p50):.2f} | {max(tpot) / min(tpot):.2f} |")
