"""Round 15: how much of `lru`'s and `slora`'s error is the host's pin speed (run from the repo
root; about a minute):

    python results/validation/round15/host_pins.py > results/validation/round15/host-pins.md

A pin-per-load copies each adapter into freshly pinned memory on the scheduler's thread before
its DMA. The lent H200 hosts do that at very different speeds: the profile's pins (fitted on
round 9's host) take 19.3 ms for a rank-64 Llama-3.1-8B adapter, round 13's first host took
42-51 ms at the median, round 15's host 15 ms. The script fits the round-15 host's pin speed on
the runs of each workload's first new trace only (trace 1: the pin rows of its lru and slora
runs; median -> a factor on the profile's pin cost, per byte and per tensor alike; slow-pin
share and excess -> the pin tail, as `lorasim calibrate --pin-tail-from`), writes that profile
(h200-host15.yaml), and compares the simulator with the shared profile and with the host's pins
on the other traces (2 and 3), which the fit did not see.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from gpu.validate import pooled_markdown, pooled_table, resimulate
from sim.config import load_scenario
from sim.core.effects import LoadJob
from sim.hw import load_hardware
from sim.hw.profile import HardwareProfile
from sim.metrics import pin_tail
from sim.workload import generate_trace

ROOT = Path("results/validation/round15")  # run from the repository root
PROFILE = Path("configs/hardware/h200-measured.yaml")
RUNS = {"uniform": ROOT / "dev3/uniform", "zipf": ROOT / "dev2/zipf", "bursty": ROOT / "dev1/bursty"}
SCENARIOS = [f"configs/validate/{w}.yaml" for w in RUNS]


def fit_pins() -> tuple[np.ndarray, float]:
    """The pins of trace 1's lru and slora runs, and the profile's base pin for their adapter."""
    pins = []
    for w, d in RUNS.items():
        sc = load_scenario(f"configs/validate/{w}.yaml")
        for pol in ("lru", "slora"):
            t = pd.read_csv(d / f"{sc.name}-s{sc.seed + 1}.{pol}.gpu.timeline.csv")
            p = t[t.kind == "pin"]
            pins.append((p.end - p.start).to_numpy(float))
    sc = load_scenario(SCENARIOS[0])
    sc = sc.model_copy(update={"hardware": sc.hardware.model_copy(update={"profile": str(PROFILE)})})
    hw = load_hardware(sc.hardware, sc.model.shape())
    spec = generate_trace(sc).adapters[0]  # every adapter of these scenarios has one size
    job = LoadJob(0, spec, 0, "load", "load", copy_mode=sc.serving.copy_mode, host_mode="pin_per_load")
    return np.concatenate(pins), hw.copy.load_time(job).pin_s


def main() -> None:
    pins, base = fit_pins()
    scale = float(np.median(pins)) / base
    frac, extra = pin_tail(pins)
    prof = HardwareProfile.from_yaml(PROFILE)
    host = replace(prof, name="h200-host15", command=(
        f"python {ROOT}/host_pins.py (from {PROFILE}: pin cost x {scale:.3f}, pin tail from "
        "round 15's trace-1 lru/slora runs)"),
        pcie=replace(prof.pcie, pin_warm_gbps=prof.pcie.pin_warm_gbps / scale,
                     pin_per_tensor_us=prof.pcie.pin_per_tensor_us * scale,
                     pin_tail_fraction=frac, pin_tail_ms=extra * 1e3))
    host_path = ROOT / "h200-host15.yaml"
    host.to_yaml(host_path)
    print("# Round 15: the host's pin speed and `lru`/`slora`\n")
    print(f"Fit on trace 1 ({len(pins)} pins of its lru and slora runs): median {np.median(pins) * 1e3:.1f} ms "
          f"against the profile's {base * 1e3:.1f} ms (x {scale:.3f}); {frac:.1%} slow by "
          f"{extra * 1e3:.1f} ms on average (profile: {prof.pcie.pin_tail_fraction:.1%}, "
          f"{prof.pcie.pin_tail_ms:.1f} ms). Wrote {host_path}.\n")
    for label, path in (("shared profile", PROFILE), ("the host's pins", host_path)):
        df = resimulate(SCENARIOS, path, ["lru", "slora"], list(RUNS.values()), Path("/tmp/host_pins") / path.stem,
                        progress=lambda s: None, plots=False, traces=range(2, 4))
        print(f"## Traces 2 and 3, {label} ({path})\n")
        print(pooled_markdown(pooled_table(df)).split("\n", 2)[2])


if __name__ == "__main__":
    main()
