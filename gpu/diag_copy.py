"""A host's adapter copy issuing, re-measured without a whole calibration.

python -m gpu.diag_copy [--model M] [--rank 64] [--reps 7] [--repeats 3] [--device D] [--quick]

Prints the lines `lorasim calibrate` writes for the adapter copy: the copy against the pinned
peak, the back-to-back copy gap and the copy issue time of the driver's per-module loop
(`LoraSlots.copy_modules`) timed alone, then the issue time in the serving loop (a short
`overlap` run through the CUDA driver, as calibration's host-gap run), so that

    python -m gpu.diag_copy > copy.log
    lorasim calibrate --out PROFILE --refit-from copy.log --refit-only copy_issue

puts this host's serving-loop issue time into a profile and records the step in its
`command` (`--refit-only copy_gap` takes the back-to-back copy gap of the isolated loop,
`--refit-only unpin` the time to free a pin-per-load's pinned copies, also printed). Why: the issue time is host time the scheduler cannot use, and it differs
between hosts. Round 12: the isolated loop read 13.2 and 7.8 us a copy on two hosts, while
both hosts' serving loops issued at 11-12 us a copy (the runs' `issue` rows); the profile had
5.8 us, from a cheaper loop. `--repeats` times the isolated loop that many times and prints the
spread as comment lines (`#`, which the refit ignores); its calibrate-format lines are from the
repeat with the median issue time.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from gpu.calibrate.copies import measure_copies, report_adapter_copy, report_unpin
from gpu.calibrate.grids import GRIDS
from gpu.calibrate.run import device_name
from gpu.calibrate.serving_loop import measure_host_gap
from sim.config import MODEL_PRESETS


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-3.1-8b", choices=sorted(MODEL_PRESETS))
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--reps", type=int, default=7, help="timed copies per measurement (median)")
    ap.add_argument("--repeats", type=int, default=3, help="measurements of the isolated loop")
    ap.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    ap.add_argument("--quick", action="store_true", help="a short serving run (CPU tests)")
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
    print(f"# isolated issue us/copy over {len(issues)} repeats: min {min(issues):.2f}"
          f" median {med:.2f} max {max(issues):.2f}")
    for line in next(lines for ad, lines in runs if ad["issue_us"] == med):
        print(line)
    report_unpin(shape, dev, args.rank)
    ht = measure_host_gap(shape, dev, args.rank, args.quick, gap_and_wake=False)
    if ht.issues:  # after the isolated line: the refit takes the last one
        print(f"  copy issue {ht.issue_s * 1e6:.2f} us/copy on the host in the serving loop (median of"
              f" {ht.issues} `overlap` loads through the CUDA driver)")
    else:
        print("# no serving-loop loads measured: the profile keeps the isolated loop's issue time")


if __name__ == "__main__":
    main()
