"""Issue #6 on the H200, round 17: `lookahead` with `layer_pipeline` (a prefill waits for its
adapters' copies layer by layer) against `overlap`, and the pipelining's own effect (lookahead
with it on vs off), GPU side and as the simulator predicted it, traces 1..3 (run from the repo
root):

    python results/validation/round17/h200_ranking.py > results/validation/round17/h200-ranking.md

One host ran dev1-dev4 (their host.txt share a GPU UUID): dev1 the light scenarios and dev2 the
saturated ones (overlap and lookahead), dev3 saturated zipf/uniform with pipelining on and off
(`*-nolp.yaml`: the same scenario and traces, `layer_pipeline: false`), dev4 the light ones off.
dev5, on another host, repeats light zipf on and off within one call, after the policy's wait
pricing learned about copies queued behind others (commit "price a copy's wait from its
predicted DMA"; re-simulating dev1's light runs with it moves lookahead's simulated cells by at
most 3 ms).
Cells as round 15's `table`: lookahead / other, means over the traces, the mean per-trace change
± its standard error, and in how many traces lookahead was at least as good.
"""

import importlib.util
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("ranking15", ROOT.parent / "round15/h200_ranking.py")
r15 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(r15)
r15.ROOT = ROOT  # its `runs` reads dev*/ folders (and drops degraded runs) under ROOT


def pipelining(devs: list[str], value: str) -> str:
    """lookahead with pipelining (column `lookahead`) vs without (`no pipelining`), GPU
    (`value="gpu"`) or simulator (`"sim"`) values, paired by trace."""
    df = r15.runs(devs)
    df = df[df.policy == "lookahead"].copy()
    off = df.workload.str.endswith("-nolp")
    df.loc[off, "policy"] = "no pipelining"
    for col in ("workload", "scenario"):
        df[col] = df[col].str.replace("-nolp", "", regex=False)
    df["gpu"] = df[value]
    df["run"] = "round17"
    return r15.table(df, ["no pipelining"])


def issue(pattern: str) -> str:
    """Median host time issuing one load's copies (`issue` rows) over the matching GPU runs."""
    tl = pd.concat(pd.read_csv(f) for f in sorted(ROOT.glob(pattern + ".gpu.timeline.csv")))
    rows = tl[(tl.lane == "host") & (tl.kind == "issue")]
    return f"{((rows.end - rows.start) * 1e3).median():.1f}"


def main() -> None:
    print("# lookahead with layer pipelining on the H200 (round 17: traces 1..3, one host)\n")
    print("Cells: lookahead / other, means over the traces (change ± standard error, traces where "
          "lookahead was at least as good).\n")
    print("## vs overlap, saturated (configs/validate/{uniform,zipf,bursty}.yaml; dev2)\n")
    print(r15.table(r15.runs(["dev2"]), ["overlap"]))
    print("\n## vs overlap, light (configs/validate/light/*.yaml; dev1)\n")
    print(r15.table(r15.runs(["dev1"]), ["overlap"]))
    print("\n## Pipelining on vs off, both in one call (lookahead; dev3 saturated, dev5 light zipf)\n")
    print("GPU:\n")
    print(pipelining(["dev3", "dev5"], "gpu"))
    print("\nWhat the simulator predicted for the same traces:\n")
    print(pipelining(["dev3", "dev5"], "sim"))
    print("\n## Pipelining on vs off across calls (light; on in dev1, off in dev4)\n")
    print("The two calls' hosts issued copies at different speeds (median issue row of a load: "
          f"{issue('dev1/light/light-*.overlap')} ms for overlap in dev1, {issue('dev4/ablight/*')} ms "
          "in dev4) and decoded 1-2 % apart (median TPOT), so these pairs mix the pipelining with "
          "the calls' drift; dev5 repeats light zipf within one call.\n")
    print("GPU:\n")
    print(pipelining(["dev1", "dev4"], "gpu"))
    print("\nSimulator:\n")
    print(pipelining(["dev1", "dev4"], "sim"))


if __name__ == "__main__":
    main()
