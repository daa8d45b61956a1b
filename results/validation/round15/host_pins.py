"""Round 15: how much of `lru`'s and `slora`'s error is the host's pin speed (run from the repo
root; about a minute):

    python results/validation/round15/host_pins.py > results/validation/round15/host-pins.md

A pin-per-load copies each adapter into freshly pinned memory on the scheduler's thread before
its DMA. The lent H200 hosts do that at very different speeds: the profile's pins (fitted on
round 9's host) take 19.3 ms for a rank-64 Llama-3.1-8B adapter, round 13's first host took
42-51 ms at the median, round 15's host 15 ms. The script fits the round-15 host's pins on the
`lru` and `slora` runs of each workload's first new trace only (trace 1), with `lorasim calibrate
--pin-speed-from` (each run's median pin over the profile's: a factor on the pin cost per byte
and per tensor) and `--pin-tail-from` (the slow-pin share), writes that profile
(h200-host15.yaml), and compares the simulator with the shared profile and with the host's pins
on the other traces (2 and 3), which the fit did not see.
"""

from dataclasses import replace
from pathlib import Path

import pandas as pd

from gpu.validate import pooled_markdown, pooled_table, resimulate
from sim.config import load_scenario
from sim.hw.profile import HardwareProfile

ROOT = Path("results/validation/round15")  # run from the repository root
PROFILE = Path("configs/hardware/h200-measured.yaml")
RUNS = {"uniform": ROOT / "dev3/uniform", "zipf": ROOT / "dev2/zipf", "bursty": ROOT / "dev1/bursty"}
SCENARIOS = [f"configs/validate/{w}.yaml" for w in RUNS]


def trace1_folder(tmp: Path, runs: dict[str, Path] = RUNS, health: Path | None = None) -> Path:
    """The trace-1 lru/slora runs alone: their timelines and health rows (GPU and simulator;
    from `health` when given, else from each run folder's own)."""
    import shutil

    tmp.mkdir(parents=True, exist_ok=True)
    keep = []
    for w, d in runs.items():
        sc = load_scenario(f"configs/validate/{w}.yaml")
        cell = f"{sc.name}-s{sc.seed + 1}"
        h = pd.read_csv(health or d / "health.csv")
        keep.append(h[(h.scenario == cell) & h.policy.isin(["lru", "slora"])])
        for pol in ("lru", "slora"):
            shutil.copy(d / f"{cell}.{pol}.gpu.timeline.csv", tmp)
    pd.concat(keep).to_csv(tmp / "health.csv", index=False)
    return tmp


def fit_trace1(host_path: Path, runs: dict[str, Path], name: str, note: str, health: Path | None = None) -> str:
    """Write PROFILE with the pins fitted on trace 1's lru/slora runs to `host_path`; the fit's
    report."""
    import shutil
    import tempfile

    from typer.testing import CliRunner

    from sim.cli import app

    shutil.copy(PROFILE, host_path)
    with tempfile.TemporaryDirectory() as tmp:
        fit = trace1_folder(Path(tmp) / "trace1", runs, health)
        r = CliRunner().invoke(app, ["calibrate", "--out", str(host_path), "--pin-speed-from", str(fit),
                                     "--pin-tail-from", str(fit)])
        assert r.exit_code == 0, r.output
    prof, host = HardwareProfile.from_yaml(PROFILE), HardwareProfile.from_yaml(host_path)
    host = replace(host, name=name, command=f"{prof.command}; then {note}")
    host.to_yaml(host_path)
    return r.output.strip().replace("\n", "; ")


def main() -> None:
    host_path = ROOT / "h200-host15.yaml"
    fit = fit_trace1(host_path, RUNS, "h200-host15", (
        f"python {ROOT}/host_pins.py: lorasim calibrate --pin-speed-from "
        "--pin-tail-from over round 15's trace-1 lru and slora runs (dev1..dev3)"))
    print("# Round 15: the host's pin speed and `lru`/`slora`\n")
    print("Fit on trace 1 (`lorasim calibrate --pin-speed-from --pin-tail-from` over its lru and slora "
          "runs): " + fit + f". Wrote {host_path}.\n")
    for label, path in (("shared profile", PROFILE), ("the host's pins", host_path)):
        df = resimulate(SCENARIOS, path, ["lru", "slora"], list(RUNS.values()), Path("/tmp/host_pins") / path.stem,
                        progress=lambda s: None, plots=False, traces=range(2, 4))
        print(f"## Traces 2 and 3, {label} ({path})\n")
        print(pooled_markdown(pooled_table(df)).split("\n", 2)[2])


if __name__ == "__main__":
    main()
