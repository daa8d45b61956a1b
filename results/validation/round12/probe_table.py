"""Where a prefill row's time goes on the H200 (round 12; reads dev1/probe.csv).

    python results/validation/round12/probe_table.py [PROFILE]

For every prefill of the four probed runs (saturated zipf and bursty, `overlap` and `lru`):
the driver's work before and after what calibration times (`prep`, `post`: GPU clock, from
prefill_probe.py's markers), and the body's excess over the profile's price of the same batch,
by run and by size, and whether a load-stream copy overlapped the prefill.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from gpu.validate import _scenario_with_profile
from sim.core.effects import Batch, BatchItem
from sim.hw import load_hardware

HERE = Path(__file__).parent


def main() -> None:
    profile = sys.argv[1] if len(sys.argv) > 1 else "configs/hardware/h200-measured.yaml"
    sc = _scenario_with_profile("configs/validate/zipf.yaml", profile)
    comp = load_hardware(sc.hardware, sc.model.shape()).compute
    d = pd.read_csv(HERE / "dev1" / "probe.csv")
    d["price"] = [comp.forward_time(Batch("prefill", tuple(BatchItem(r, a, 0, k, n, c) for r, a, k, n, c in
                                                           json.loads(s)))) * 1e3 for s in d["items"]]
    ms = lambda a, b: (d[a] - d[b]) * 1e3  # noqa: E731
    d["row"], d["prep"], d["body"], d["post"] = ms("end", "start"), ms("run_in", "start"), ms("run_out", "run_in"), ms("end", "run_out")
    d["row_excess"], d["body_excess"] = d["row"] - d["price"], d["body"] - d["price"]
    copy_ms = []
    for r in d.itertuples():
        tl = pd.read_csv(HERE / "probe" / f"{r.scenario}.{r.policy}.gpu.timeline.csv")
        pc = tl[tl["lane"] == "pcie"]
        copy_ms.append(1e3 * sum(max(0.0, min(r.end, q.end) - max(r.start, q.start)) for q in pc.itertuples()))
    d["copy_overlap"] = pd.Series(copy_ms) > 0.5
    cols = ["row_excess", "body_excess", "prep", "post"]
    pd.set_option("display.width", 160)
    print(f"{len(d)} prefills; medians in ms\n")
    print(d.groupby(["scenario", "policy", "copy_overlap"])[cols].median().round(2).assign(
        n=d.groupby(["scenario", "policy", "copy_overlap"]).size()).to_string(), "\n")
    single = d[(d["n_items"] == 1) & (d["graphed"] == 1)]
    print("single graphed prefills by size:")
    print(single.groupby(pd.cut(single["tokens"], [0, 256, 384, 512]), observed=True)[cols].median().round(2).to_string())
    print(f"\nall: row excess {d.row_excess.median():.2f}, body excess {d.body_excess.median():.2f}, "
          f"prep {d.prep.median():.2f}, post {d.post.median():.2f} ms (medians)")


if __name__ == "__main__":
    main()
