"""Round 16: the host's pins, priced four ways, for `lru` and `slora` (run from the repo root;
about ten minutes, most of it the ensembles):

    python results/validation/round16/host_pins.py > results/validation/round16/host-pins.md

Round 15 fitted a host's pins on its own trace-1 runs (`calibrate --pin-speed-from
--pin-tail-from`). Round 16 also measured them before each device call with `lorasim calibrate
--measure-only pins` (dev1..dev3/h200-host-<workload>.yaml), which needs no run of the workload.
This compares, on traces 2 and 3 (which neither fit saw): the shared profile; the measured pins;
the pins fitted on trace 1 (speed and slow-pin tail); and the measured pins with the tail fitted
on trace 1 (a microbenchmark cannot see the serving loop's slow pins); then the shared profile
and the trace-1 fit again as ensembles (`validate --sim-repeats`), which redraw which pins are
slow. The health rows (each run's pins, and the simulator's) come from errors-saturated/, as the
validation README's round-16 command writes it: zipf's device call ran out of time before
writing its own.
"""

import importlib.util
from dataclasses import replace
from pathlib import Path

import pandas as pd

from gpu.validate import pooled_markdown, pooled_table, resimulate
from sim.hw.profile import HardwareProfile

ROOT = Path("results/validation/round16")  # run from the repository root
DEV = {"uniform": "dev3", "zipf": "dev2", "bursty": "dev1"}
RUNS = {w: ROOT / d / w for w, d in DEV.items()}
ENSEMBLE = 32
_spec = importlib.util.spec_from_file_location("host_pins15", "results/validation/round15/host_pins.py")
r15 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(r15)


def measured(w: str) -> Path:
    return ROOT / DEV[w] / f"h200-host-{w}.yaml"


def with_tail(w: str, fitted: HardwareProfile, tmp: Path) -> Path:
    """The pins measured before workload w's call, with the slow-pin tail fitted on trace 1."""
    p = HardwareProfile.from_yaml(measured(w))
    out = tmp / f"measured-tail-{w}.yaml"
    replace(p, pcie=replace(p.pcie, pin_tail_fraction=fitted.pcie.pin_tail_fraction,
                            pin_tail_ms=fitted.pcie.pin_tail_ms)).to_yaml(out)
    return out


def table(profiles: dict[str, Path], tmp: Path, sim_repeats: int = 1) -> str:
    """lru/slora on traces 2 and 3, each workload simulated with its own profile, pooled."""
    dfs = [resimulate([f"configs/validate/{w}.yaml"], path, ["lru", "slora"], [RUNS[w]], tmp / f"{w}-{path.stem}",
                      progress=lambda s: None, plots=False, traces=range(2, 4), sim_repeats=sim_repeats)
           for w, path in profiles.items()]
    return pooled_markdown(pooled_table(pd.concat(dfs, ignore_index=True))).split("\n", 2)[2]


def main() -> None:
    import tempfile

    host_path = ROOT / "h200-host16.yaml"
    fit = r15.fit_trace1(host_path, RUNS, "h200-host16", (
        f"python {ROOT}/host_pins.py: lorasim calibrate --pin-speed-from "
        "--pin-tail-from over round 16's trace-1 lru and slora runs (dev1..dev3)"), ROOT / "errors-saturated/health.csv")
    fitted = HardwareProfile.from_yaml(host_path)
    print("# Round 16: the host's pins and `lru`/`slora`\n")
    print("Measured before each device call (`lorasim calibrate --measure-only pins`, dev*/pins.log, first "
          "line: the copy the call validated with; second line: again after its runs):\n")
    for w, d in DEV.items():
        lines = [ln for ln in (ROOT / d / "pins.log").read_text().splitlines() if ln.startswith("pins on")]
        print(f"- {w}: " + "; ".join(ln.split("; ", 1)[1] for ln in lines))
    print("\nFit on trace 1 (`lorasim calibrate --pin-speed-from --pin-tail-from` over its lru and slora "
          f"runs): {fit}. Wrote {host_path}.\n")
    shared = Path("configs/hardware/h200-measured.yaml")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        variants = {
            f"shared profile ({shared})": dict.fromkeys(DEV, shared),
            "pins measured before the call (dev*/h200-host-*.yaml)": {w: measured(w) for w in DEV},
            f"pins fitted on trace 1 ({host_path})": dict.fromkeys(DEV, host_path),
            "pins measured before the call, slow-pin tail fitted on trace 1": {w: with_tail(w, fitted, tmp) for w in DEV},
        }
        for label, profiles in variants.items():
            print(f"## Traces 2 and 3, {label}\n")
            print(table(profiles, tmp))
        # which pins are slow is one draw per run; an ensemble redraws it (and the run-to-run noise)
        for label in list(variants)[:1] + list(variants)[2:3]:
            print(f"## Traces 2 and 3, {label}, ensemble of {ENSEMBLE}\n")
            print(table(variants[label], tmp, ENSEMBLE))


if __name__ == "__main__":
    main()
