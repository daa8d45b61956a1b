"""Why some pin-per-load pins take ~50 ms longer than the ~17 ms median (round 13).

Over rounds 9-12 the harness's "pin" rows (`HostPool.pin_for_load`: a copy of the adapter's
pageable buffer into a block of torch's caching pinned allocator) were slow 6-8 % of the time in
light runs and 13-18 % in saturated ones, and more often the longer since the previous pin.
This probe pins a 320 MB buffer (a rank-64 Llama-8B adapter) after controlled gaps, with the
host thread either sleeping or driving the GPU (a stream of matmuls it waits on, as the serving
loop does), and records each pin's time and the CPU (and its NUMA node) before and after, so a
slow pin can be told apart as a time effect, a busy-host effect or a thread migration.

Writes one CSV row per pin to OUT/pins.csv and the host's NUMA settings to OUT/host.txt.
Usage (device): python3 results/validation/round13/pin_probe.py OUT [--reps 12]
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import os
import random
import subprocess
import time
from pathlib import Path

import torch

MB = 1 << 20
_libc = ctypes.CDLL(None)  # os.sched_getcpu is Python 3.13+


def cpu_now() -> int:
    return int(_libc.sched_getcpu())


def numa_of(cpu: int) -> int:
    for p in Path(f"/sys/devices/system/cpu/cpu{cpu}").glob("node*"):
        return int(p.name[4:])
    return -1


def host_info(out: Path) -> None:
    lines = []
    for f in ["/proc/sys/kernel/numa_balancing", "/sys/kernel/mm/transparent_hugepage/enabled",
              "/sys/kernel/mm/transparent_hugepage/defrag", "/proc/sys/vm/zone_reclaim_mode"]:
        try:
            lines.append(f"{f}: {Path(f).read_text().strip()}")
        except OSError as e:
            lines.append(f"{f}: {e}")
    lines.append(f"affinity: {sorted(os.sched_getaffinity(0))}")
    for cmd in (["nvidia-smi", "topo", "-m"], ["lscpu"]):
        try:
            lines.append(subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout)
        except (OSError, subprocess.SubprocessError) as e:
            lines.append(f"{cmd}: {e}")
    (out / "host.txt").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--reps", type=int, default=12)
    ap.add_argument("--adapters", type=int, default=16)
    ap.add_argument("--mb", type=int, default=320)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    host_info(a.out)
    dev = torch.device("cuda")
    n = a.mb * MB // 2
    bufs = [torch.full((n,), float(i), dtype=torch.bfloat16) for i in range(a.adapters)]
    x = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    for b in bufs[:2]:  # warm the caching pinned allocator, as validate's warm_pin_cache does
        p = b.pin_memory()
        del p
    plan = [(c, g) for c in ("sleep", "gpu") for g in (0.01, 0.2, 0.5, 1.0, 2.0) for _ in range(a.reps)]
    random.Random(0).shuffle(plan)
    rows = []
    t_start = time.perf_counter()
    for k, (cond, gap) in enumerate(plan):
        t_end = time.perf_counter() + gap
        if cond == "sleep":
            time.sleep(gap)
        else:
            while time.perf_counter() < t_end:
                for _ in range(4):
                    x @ x
                torch.cuda.synchronize()
        i = random.Random(k).randrange(a.adapters)
        cpu0 = cpu_now()
        t0 = time.perf_counter()
        p = bufs[i].pin_memory()
        t1 = time.perf_counter()
        cpu1 = cpu_now()
        d = p.to(dev, non_blocking=True)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        del p, d
        rows.append(dict(k=k, cond=cond, gap_s=gap, adapter=i, t=t0 - t_start, pin_ms=(t1 - t0) * 1e3,
                         copy_ms=(t2 - t1) * 1e3, cpu0=cpu0, cpu1=cpu1,
                         node0=numa_of(cpu0), node1=numa_of(cpu1)))
    with open(a.out / "pins.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} pins in {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
