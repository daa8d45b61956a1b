"""The scheduler time a pin-per-load's pinned copies cost to free, read from GPU runs (round 13).

The CUDA driver frees a load's temporary pinned copies when it next collects finished loads;
for `lru` that is right after the prefill that follows the blocking load. Before round 13 the
driver did not time it, so this reads it as the gap from such a prefill to the next forward,
minus the gap after any other prefill (each pass's medians; sim.metrics.post_load_gaps, which
`lorasim calibrate --unpin-from` uses). Runs from the round-13 driver on
also have `release` host rows, whose medians are printed too.

python results/validation/round13/release_gap.py PASS_DIR... > release-gap.txt
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from sim.metrics import post_load_gaps


def main(dirs: list[str]) -> None:
    print("| pass | prefills after a load | median gap ms | other prefills | median gap ms | excess ms "
          "| release rows | release median ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    excess = []
    for d in dirs:
        after, other, release = [], [], []
        for f in sorted(Path(d).glob("*.gpu.timeline.csv")):
            t = pd.read_csv(f)
            if f.name.split(".")[1] == "lru":
                a, o = post_load_gaps(t)
                after += list(a * 1e3)
                other += list(o * 1e3)
            r = t[t.kind == "release"]
            release += list((r.end - r.start) * 1e3)
        if not after:
            continue
        ex = float(np.median(after) - np.median(other))
        excess.append(ex)
        rel = f"{np.median(release):.2f}" if release else ""
        print(f"| {d} | {len(after)} | {np.median(after):.2f} | {len(other)} | {np.median(other):.2f} "
              f"| {ex:.2f} | {len(release)} | {rel} |")
    print(f"\nexcess over {len(excess)} passes: median {np.median(excess):.2f} ms, "
          f"range {min(excess):.2f}-{max(excess):.2f} ms")


if __name__ == "__main__":
    main(sys.argv[1:])
