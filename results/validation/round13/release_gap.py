"""The scheduler time a pin-per-load's pinned copies cost to free, read from GPU runs (round 13).

The CUDA driver frees a load's temporary pinned copies when it next collects finished loads;
for `lru` that is right after the prefill that follows the blocking load. Before round 13 the
driver did not time it, so this reads it as the gap from such a prefill to the next forward,
minus the gap after any other prefill (each pass's medians: gpu.run_health.post_load_excess, as
`lorasim calibrate --unpin-from`). Runs from the round-13 driver on
also have `release` host rows, whose medians are printed too.

python results/validation/round13/release_gap.py PASS_DIR... > release-gap.txt
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from gpu.run_health import post_load_excess


def main(dirs: list[str]) -> None:
    print("| pass | prefills after a load | median gap ms | other prefills | median gap ms | excess ms "
          "| release rows | release median ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    excess = []
    for d in dirs:
        try:
            ex, after, other = post_load_excess(Path(d))
        except ValueError:
            continue
        ex, after, other = ex * 1e3, after * 1e3, other * 1e3
        release = []
        for f in sorted(Path(d).glob("*.gpu.timeline.csv")):
            t = pd.read_csv(f)
            r = t[t.kind == "release"]
            release += list((r.end - r.start) * 1e3)
        excess.append(ex)
        rel = f"{np.median(release):.2f}" if release else ""
        print(f"| {d} | {len(after)} | {np.median(after):.2f} | {len(other)} | {np.median(other):.2f} "
              f"| {ex:.2f} | {len(release)} | {rel} |")
    print(f"\nexcess over {len(excess)} passes: median {np.median(excess):.2f} ms, "
          f"range {min(excess):.2f}-{max(excess):.2f} ms")


if __name__ == "__main__":
    main(sys.argv[1:])
