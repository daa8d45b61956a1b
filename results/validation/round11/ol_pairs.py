"""`lookahead` against `overlap` on the H200 at saturation, pass by pass (issue #6).

The two policies run back to back in every pass below, on the same machine, so each pass is a
pair. A run during which the machine slowed down (gpu.run_health, as `lorasim validate`
screens them) drops its pair. Prints one row per workload: the mean of lookahead/overlap - 1
over the pairs for P50 TTFT, P99 TTFT and mean E2E, and in how many pairs lookahead's mean
E2E was higher.

    python results/validation/round11/ol_pairs.py > results/validation/round11/ol-pairs.md
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from gpu.run_health import check_run
from gpu.validate import _scenario_with_profile
from sim.hw import load_hardware
from sim.workload import generate_trace

ROOT = Path(__file__).resolve().parents[3]
V = ROOT / "results/validation"
PASSES = [V / f"round10/saturated/pass-{i}" for i in (1, 2, 3)] + [V / f"round10/sat-ol/pass-{i}" for i in (1, 2)] + [
    V / f"round11/{d}/pass-{i}" for d in ("sat-ol", "sat-ol-fast", "saturated") for i in (1, 2, 3)
]
PROFILE = ROOT / "configs/hardware/h200-measured.yaml"
METRICS = {"P50 TTFT": "ttft_median_ms", "P99 TTFT": "ttft_p99_ms", "mean E2E": "e2e_mean_ms"}


def main() -> None:
    lines = ["| workload | pairs | " + " | ".join(f"{m} lookahead/overlap" for m in METRICS)
             + " | lookahead's E2E higher in | pairs dropped (degraded run) |",
             "|---|---:|" + "---:|" * len(METRICS) + "---|---:|"]
    for name in ("uniform", "zipf", "bursty"):
        sc = _scenario_with_profile(ROOT / f"configs/validate/{name}.yaml", PROFILE)
        trace = generate_trace(sc)
        compute = load_hardware(sc.hardware, sc.model.shape()).compute
        ranks = {a.name: a.rank for a in trace.adapters}
        rel, dropped = {m: [] for m in METRICS}, 0
        for p in PASSES:
            files = {pol: p / f"{sc.name}.{pol}" for pol in ("overlap", "lookahead")}
            if not all(Path(f"{f}.summary.json").is_file() for f in files.values()):
                continue
            if any(check_run(pd.read_csv(f"{f}.gpu.csv"), pd.read_csv(f"{f}.gpu.timeline.csv"), compute, ranks).degraded()
                   for f in files.values()):
                dropped += 1
                continue
            s = {pol: json.loads(Path(f"{f}.summary.json").read_text())["gpu"] for pol, f in files.items()}
            for m, key in METRICS.items():
                rel[m].append(s["lookahead"][key] / s["overlap"][key] - 1)
        e2e = np.array(rel["mean E2E"])
        cells = " | ".join(f"{100 * np.mean(v):+.1f} %" for v in rel.values())
        lines.append(f"| {name} | {len(e2e)} | {cells} | {(e2e > 0).sum()} of {len(e2e)} | {dropped} |")
    lines += ["", "Mean over the pairs of lookahead / overlap - 1 (negative: lookahead lower, i.e. better)."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
