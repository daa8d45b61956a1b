"""What the simulator says of `lookahead` vs `overlap` on the validation scenarios, over 20 traces
each (traces 0..19: seed + k, as `lorasim validate --traces`), with the H200 profile; the GPU side
of the same comparison is h200-ranking.md (run from the repo root; about a minute):

    python results/validation/round15/sim_ranking.py > results/validation/round15/sim-ranking.md
"""

import numpy as np
import pandas as pd

from sim.config import load_scenario
from sim.runner import simulate
from sim.workload import generate_trace

TRACES = 20
METRICS = {"ttft_median_ms": "P50 TTFT", "ttft_p99_ms": "P99 TTFT", "e2e_mean_ms": "mean E2E"}


def main() -> None:
    rows = []
    for w in ("uniform", "zipf", "bursty"):
        base = load_scenario(f"configs/validate/{w}.yaml")
        base = base.model_copy(update={"hardware": base.hardware.model_copy(
            update={"profile": "configs/hardware/h200-measured.yaml"})})
        for k in range(TRACES):
            sc = base.model_copy(update={"seed": base.seed + k})
            trace = generate_trace(sc)
            s = {p: simulate(sc, p, trace=trace).summary for p in ("overlap", "lookahead")}
            for m, label in METRICS.items():
                rows.append({"workload": base.name, "metric": label,
                             "change": (s["lookahead"][m] / s["overlap"][m] - 1) * 100})
    df = pd.DataFrame(rows)
    g = df.groupby(["workload", "metric"], sort=False)["change"]
    out = pd.DataFrame({
        "lookahead vs overlap": g.mean().map("{:+.1f} %".format),
        "standard error": (g.std(ddof=1) / np.sqrt(TRACES)).map("{:.1f} %".format),
        "traces at least as good": g.apply(lambda d: f"{(d <= 0).sum()}/{len(d)}"),
    })
    print(f"# lookahead vs overlap in the simulator, {TRACES} traces of each validation scenario\n")
    print(out.reset_index().to_markdown(index=False))


if __name__ == "__main__":
    main()
