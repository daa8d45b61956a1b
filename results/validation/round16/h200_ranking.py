"""Issue #6 on the H200, round 16: `lookahead` (now with `split_new`) against overlap, lru and
slora, GPU side, over traces 1..3 of the saturated and the light scenarios (run from the repo
root):

    python results/validation/round16/h200_ranking.py > results/validation/round16/h200-ranking.md

One host ran everything (dev1..dev4 share a GPU UUID, dev*/host.txt). The GPU values are those of
the re-simulation folders the validation README's round-16 commands write (errors-saturated,
errors-saturated-lookahead, errors-light-lookahead: one GPU run per (trace, policy), so a pair is
a trace). Cells as round 15's (`round15/h200_ranking.py`, whose `table` this reuses): lookahead /
the other policy, means over the traces, the mean per-trace change ± its standard error, and in
how many traces lookahead was at least as good.
"""

import importlib.util
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("ranking15", ROOT.parent / "round15/h200_ranking.py")
r15 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(r15)


def gpu(*folders: str) -> pd.DataFrame:
    df = pd.concat([pd.read_csv(ROOT / f / "errors.csv") for f in folders])
    return df.drop_duplicates(subset=["scenario", "policy", "metric"]).assign(run="round16")


def main() -> None:
    print("# lookahead on the H200 (round 16: traces 1..3, one host, `split_new` on)\n")
    print("Cells: lookahead / other, means over the traces (change ± standard error, traces where "
          "lookahead was at least as good).\n")
    print("## Saturated (configs/validate/{uniform,zipf,bursty}.yaml)\n")
    print(r15.table(gpu("errors-saturated-lookahead", "errors-saturated"), ["overlap", "lru", "slora"]))
    print("\n## Light (configs/validate/light/*.yaml)\n")
    print(r15.table(gpu("errors-light-lookahead"), ["overlap"]))


if __name__ == "__main__":
    main()
