"""Was the machine itself slow during a GPU run? A check of every forward against the profile.

A lent GPU is not always the same machine from one minute to the next: in round 10, two runs
ran for seconds at 1.3-3x the usual forward and copy times (prefills of 94 ms where every
other run took 23-43, 320 MB copies of 17-30 ms instead of 7.5). Such a run measures the
machine, not the policy, and one of them in a three-pass mean moved a policy's mean E2E by
15 % and made `lookahead` look worse than `overlap` on the H200.

Each forward of the run's timeline is priced as the simulator would price it (prefill: the
requests whose first token it produced; decode: the requests live across the row, at the
context each had reached), consecutive forwards are grouped into windows of
`window_s` of priced work, and a window's ratio is its GPU time over its price. A run's
`slowdown` is its slowest window's ratio over its median window's ratio, so a profile that is
a few per cent off everywhere does not count, while an episode does. Over 141 round-9/10 runs
every slowdown was below 1.10 except the two episodes (1.28, 2.96). Torch-free: it reads
recorded runs, so `lorasim validate --gpu-runs` uses it on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gpu import DEGRADED_ABOVE  # healthy runs stay <= 1.10
from sim.core.effects import Batch, BatchItem
from sim.hw.compute import ComputeModel

WINDOW_S = 0.5  # priced work per window: an episode of a few hundred ms still shows
_MATCH_S = 2e-3  # a prefill produced the first tokens that landed within this of its end


def _items(reqs: pd.DataFrame, ranks: dict[str, int], new_tokens, context) -> tuple[BatchItem, ...]:
    out = []
    for k, (rid, name, n, c) in enumerate(zip(reqs["rid"], reqs["adapter"], new_tokens, context, strict=True)):
        name = name if isinstance(name, str) else None
        out.append(BatchItem(int(rid), name, k, ranks.get(name, 0) if name else 0, int(n), int(c)))
    return tuple(out)


def decode_batch(records: pd.DataFrame, start: float, end: float) -> pd.DataFrame:
    """The requests of a `decode xK` row from [start, end]: past their first token at its start
    and not finished before its end, with the context each had reached (`ctx`)."""
    live = records[(records["first_token"] <= start + 1e-6) & (records["finish"] >= end - 1e-6)]
    done = ((start - live["first_token"]) / live["tpot"].clip(lower=1e-3)).round()
    return live.assign(ctx=(live["input_len"] + 1 + done).astype(int))


def forward_prices(
    records: pd.DataFrame, timeline: pd.DataFrame, compute: ComputeModel, ranks: dict[str, int]
) -> pd.DataFrame:
    """One row per compute forward of a GPU run: start, kind, steps, batch, adapters, gpu_s
    (its measured time) and model_s (the profile's price of the same batch). Forwards whose
    batch cannot be rebuilt from the records are left out."""
    rows = []
    comp = timeline[(timeline["lane"] == "compute") & timeline["kind"].isin(["prefill", "decode"])]
    for r in comp.sort_values("start").itertuples():
        if r.kind == "prefill":
            reqs = records[(records["first_token"] - r.end).abs() < _MATCH_S]
            if reqs.empty:
                continue
            batch = Batch("prefill", _items(reqs, ranks, reqs["input_len"], [0] * len(reqs)))
            steps, model_s = 1, compute.forward_time(batch)
        else:
            steps = int(str(r.label).rsplit("x", 1)[-1])
            reqs = decode_batch(records, r.start, r.end)
            if reqs.empty:
                continue
            batch = Batch("decode", _items(reqs, ranks, [1] * len(reqs), reqs["ctx"]))
            model_s = float(np.sum(compute.decode_times(batch, steps)))
        rows.append({"start": r.start, "kind": r.kind, "steps": steps, "batch": len(reqs),
                     "adapters": reqs["adapter"].nunique(), "gpu_s": r.end - r.start,
                     "model_s": model_s, "names": tuple(reqs["adapter"]),
                     "ctx": tuple(reqs["ctx"]) if "ctx" in reqs else ()})
    return pd.DataFrame(rows, columns=["start", "kind", "steps", "batch", "adapters", "gpu_s",
                                       "model_s", "names", "ctx"])


@dataclass(frozen=True)
class RunHealth:
    ratio: float  # the whole run's GPU time over its price
    slowdown: float  # slowest window's ratio over the median window's
    worst_at_s: float  # where the slowest window starts (run clock)
    windows: int

    def degraded(self, above: float = DEGRADED_ABOVE) -> bool:
        return above > 0 and self.slowdown > above


def run_health(prices: pd.DataFrame, window_s: float = WINDOW_S) -> RunHealth:
    """Window the priced forwards by `window_s` of priced work and compare the windows."""
    if prices.empty or prices["model_s"].sum() <= 0:
        return RunHealth(float("nan"), 1.0, 0.0, 0)
    done = prices["model_s"].cumsum().shift(fill_value=0.0).to_numpy()
    win = np.floor(done / window_s + 1e-9).astype(int)  # (sums of equal prices land on a bound)
    g = prices.groupby(win).agg(gpu=("gpu_s", "sum"), model=("model_s", "sum"), at=("start", "min"))
    g = g[g["model"] > 0]
    r = g["gpu"] / g["model"]
    worst = r.idxmax()
    return RunHealth(
        ratio=float(prices["gpu_s"].sum() / prices["model_s"].sum()),
        slowdown=float(r.max() / r.median()),
        worst_at_s=float(g.loc[worst, "at"]),
        windows=len(g),
    )


def check_run(
    records: pd.DataFrame, timeline: pd.DataFrame, compute: ComputeModel, ranks: dict[str, int],
    window_s: float = WINDOW_S,
) -> RunHealth:
    return run_health(forward_prices(records, timeline, compute, ranks), window_s)
