"""A host's adapter copy issuing, re-measured without a whole calibration.

python -m gpu.diag_copy [--model M] [--rank 64] [--reps 7] [--repeats 3] [--device D]

Prints the lines `lorasim calibrate` writes for the adapter copy (against the pinned peak),
the back-to-back copy gap and the copy issue time, measured through the driver's own
per-module loop (`LoraSlots.copy_modules`), so that

    python -m gpu.diag_copy > copy.log
    lorasim calibrate --out PROFILE --refit-from copy.log --refit-only copy_issue

puts this host's copy gap and issue time into a profile and records the step in its
`command`. Why: the issue time is host time the scheduler cannot use, it differs between
hosts, and until round 11 calibration timed a cheaper loop than the driver's (5.8 us a copy
where the driver's loop took 13 us on the same host). `--repeats` measures it that many times
and prints the spread as comment lines (`#`), which the refit ignores; the calibrate-format
lines are from the repeat with the median issue time.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from gpu.calibrate import GRIDS, device_name, measure_copies, report_adapter_copy
from sim.config import MODEL_PRESETS


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-3.1-8b", choices=sorted(MODEL_PRESETS))
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--reps", type=int, default=7, help="timed copies per measurement (median)")
    ap.add_argument("--repeats", type=int, default=3, help="measurements (spread printed)")
    ap.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    args = ap.parse_args(argv)
    if args.reps < 1 or args.repeats < 1:
        ap.error("--reps and --repeats must be >= 1")
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    shape = MODEL_PRESETS[args.model]
    sizes = GRIDS["full" if dev.type == "cuda" else "quick"]["sizes"]
    pinned = measure_copies(dev, sizes, True, args.reps)
    peak = max(n / t for n, t in zip(sizes, pinned, strict=True))
    print(f"# gpu.diag_copy on {device_name(dev)}, {shape.name}, rank {args.rank}")
    runs: list[tuple[dict, list[str]]] = []
    for i in range(args.repeats):
        lines: list[str] = []
        ad = report_adapter_copy(shape, dev, args.rank, args.reps, peak, lines.append)
        runs.append((ad, lines))
        print(f"# repeat {i + 1}: issue {ad['issue_us']:.2f} us/copy, gap {ad['gap_us']:.2f} us/copy")
    issues = [ad["issue_us"] for ad, _ in runs]
    med = statistics.median_low(issues)
    print(f"# issue us/copy over {len(issues)} repeats: min {min(issues):.2f} median {med:.2f} max {max(issues):.2f}")
    for line in next(lines for ad, lines in runs if ad["issue_us"] == med):
        print(line)


if __name__ == "__main__":
    main()
