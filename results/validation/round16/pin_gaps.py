"""Round 16: are slow pins random? The share of pin-per-load pins slower than 1.5x their
round's median, by the time since the previous pin of the same run ended, on every round's
`lru`/`slora` GPU runs (run from the repo root; seconds):

    python results/validation/round16/pin_gaps.py > results/validation/round16/pin-gaps.md

The simulator's slow pins (`pcie.pin_tail_fraction`, sim.hw.pcie.PinTail) are a fixed share
of all pins, drawn independently.
"""

import glob

import numpy as np
import pandas as pd

ROUNDS = ["round9", "round10", "round11", "round13", "round14", "round15", "round16"]
BINS = [0, 50, 100, 200, 500, 1000, 2000, np.inf]


def pins(rnd: str) -> pd.DataFrame:
    rows = []
    for pol in ("lru", "slora"):
        for f in sorted(glob.glob(f"results/validation/{rnd}/**/*.{pol}.gpu.timeline.csv", recursive=True)):
            t = pd.read_csv(f)
            p = t[t["kind"] == "pin"].sort_values("start")
            d = (p["end"] - p["start"]).to_numpy(float)
            gap = np.concatenate([[np.inf], (p["start"].to_numpy(float)[1:] - p["end"].to_numpy(float)[:-1])]) * 1e3
            rows += [{"ms": x, "gap_ms": g} for x, g in zip(d * 1e3, gap, strict=True)]
    df = pd.DataFrame(rows)
    df["slow"] = df.ms > 1.5 * df.ms.median()
    return df


def main() -> None:
    print("# Slow pins against the host's quiet time before them\n")
    print("Share of pins over 1.5x their round's median pin, by the time since the previous pin of the "
          "same run ended (pins in the bin). `first`: a run's first pin.\n")
    labels = [f"{a:g}-{b:g} ms" if np.isfinite(b) else f">{a:g} ms" for a, b in zip(BINS, BINS[1:], strict=False)]
    out = []
    for rnd in ROUNDS:
        df = pins(rnd)
        finite = df[np.isfinite(df.gap_ms)]
        b = pd.cut(finite.gap_ms, BINS, labels=labels)
        g = finite.groupby(b, observed=False).slow.agg(["mean", "size"])
        row = {"round": rnd, "pins": len(df), "slow": f"{df.slow.mean():.0%}"}
        row |= {k: (f"{m:.0%} ({n})" if n else "") for k, (m, n) in zip(labels, g.itertuples(index=False), strict=True)}
        first = df[~np.isfinite(df.gap_ms)]
        row["first"] = f"{first.slow.mean():.0%} ({len(first)})"
        out.append(row)
    print(pd.DataFrame(out).to_markdown(index=False))


if __name__ == "__main__":
    main()
