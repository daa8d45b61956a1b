"""Gap table of a sweep: one policy against the best of the others, paired by seed.

A policy comparison is only as good as its noise estimate, so every cell pairs the runs that
share a seed (same trace) and reports the mean relative change with its standard error and
the share of seeds where the candidate was at least as good. The oracle columns say how much
of a reference policy's P99-TTFT excess over an oracle (`zero_load`, `resident`) the candidate
removes: what is reachable at all. `first_use_bound` adds a bound that no loading policy beats
without knowing which adapters will be asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.results import Results, load_results
from sim.errors import LorasimError

METRICS = {"ttft_median_ms": "P50 TTFT", "ttft_p99_ms": "P99 TTFT", "e2e_mean_ms": "mean E2E"}
FIRST_USE = "first-use bound"


@dataclass
class GapSpec:
    """What to compare: `policy` against the best of `against` (by mean, per group and
    metric); `reference`'s P99 gap to each of `oracles` (and to the first-use bound of
    `bound_sweep`, if given) is what the candidate closes."""

    policy: str = "lookahead"
    against: list[str] = field(default_factory=list)
    reference: str = "lru"
    oracles: list[str] = field(default_factory=list)
    bound_sweep: Path | None = None


@dataclass
class Cell:
    text: str
    z: float  # mean change in standard errors (> 0: the candidate is worse)


@dataclass
class Change:
    """Relative change (%) of a candidate against another policy over paired runs (seeds or
    traces): its mean, the standard error of that mean (nan for one pair) and how many
    pairs the candidate was at least as good in."""

    mean: float
    se: float
    wins: int
    n: int


def paired_change(candidate: pd.Series, other: pd.Series) -> Change:
    """Both series indexed by seed/trace; pairs with a missing side are dropped."""
    d = ((candidate / other - 1) * 100).dropna()
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return Change(float(d.mean()), se, int((d <= 0).sum()), len(d))


def paired(p: pd.DataFrame, policy: str, against: list[str]) -> Cell:
    """`policy` vs the member of `against` with the best mean; p is seeds x policies."""
    means = p.mean()
    best = means[against].idxmin()
    c = paired_change(p[policy], p[best])
    se = c.se
    text = (f"{means[policy]:.0f}/{means[best]:.0f} {best} "
            f"({c.mean:+.1f} ± {se:.1f} %, {c.wins}/{c.n})")
    if not se > 0:  # one seed, or no spread: only the sign counts
        return Cell(text, 0.0 if c.mean <= 0 else math.inf)
    return Cell(text, c.mean / se)


def gap_closed(p99: pd.Series, reference: str, policy: str, oracle: str) -> str:
    """Share of `reference`'s P99 excess over `oracle` that `policy` removes (means)."""
    d = p99[reference] - p99[oracle]
    if d <= 1:  # under a millisecond of excess: nothing to close
        return f"n/a ({reference} at {oracle})"
    return f"{(p99[reference] - p99[policy]) / d:.0%}"


def first_use_bound(sweep_file: Path) -> pd.Series:
    """P99 TTFT (ms) per group of `zero_load`'s requests plus one adapter copy for the first
    request of each adapter (its adapter cannot be on the GPU before some request names it);
    mean over seeds. Ignores the queueing such copies cause, so it is optimistic and the share
    closed against it is a lower bound. Re-simulates the sweep's zero_load runs."""
    from experiments.sweep import load_sweep
    from sim.core.effects import LoadJob
    from sim.hw import load_hardware
    from sim.runner import simulate
    from sim.workload import generate_trace

    rows = []
    for r in load_sweep(sweep_file).runs:
        if r.policy != "zero_load":
            continue
        sc = r.scenario
        trace = generate_trace(sc)
        rec = simulate(sc, "zero_load", trace=trace).records.sort_values("arrival")
        hw = load_hardware(sc.hardware, sc.model.shape())
        specs = {a.name: a for a in trace.adapters}
        first = ~rec.adapter.duplicated().to_numpy()
        extra = np.array([
            hw.copy.load_time(LoadJob(0, specs[a], 0, "load", "prefetch", copy_mode=sc.serving.copy_mode,
                                      host_mode="pinned")).total if f and a is not None else 0.0
            for a, f in zip(rec.adapter, first, strict=True)
        ])
        rows.append((r.group, float(np.percentile(rec.ttft.to_numpy() + extra, 99)) * 1e3))
    if not rows:
        raise LorasimError(f"{sweep_file}: no zero_load runs; the first-use bound re-simulates them")
    return pd.DataFrame(rows, columns=["group", "p99"]).groupby("group").p99.mean()


def _check(res: Results, spec: GapSpec) -> list[str]:
    have = set(res.ok.policy.unique()) if len(res.ok) else set()
    against = spec.against or [p for p in res.policies if p not in (spec.policy, *spec.oracles)
                               and p not in ("resident", "zero_load")]
    need = {spec.policy, *against, *spec.oracles}
    if spec.oracles:
        need.add(spec.reference)
    missing = sorted(need - have)
    if missing:
        raise LorasimError(f"{res.root}: no ok runs of {', '.join(missing)}; the sweep has {', '.join(sorted(have))}")
    if not against:
        raise LorasimError(f"{res.root}: nothing to compare {spec.policy} with; pass --against")
    return against


def gap_table(results: str | Path, spec: GapSpec) -> str:
    """The markdown table (and its closing count of cells) for a sweep's results folder."""
    res = load_results(results)
    against = _check(res, spec)
    bound = first_use_bound(spec.bound_sweep) if spec.bound_sweep else None
    df = res.ok
    rows, z = [], []
    for g in res.groups:
        x = df[df.group == g]
        if x.empty:
            continue
        row = {"workload": g}
        for m, label in METRICS.items():
            cell = paired(x.pivot_table(index="seed", columns="policy", values=m), spec.policy, against)
            row[f"{label}: {spec.policy}/best"] = cell.text
            z.append(cell.z)
        p99 = x.groupby("policy")["ttft_p99_ms"].mean()
        oracles = list(spec.oracles)
        if bound is not None and g in bound:
            p99[FIRST_USE] = bound[g]
            oracles.insert(0, FIRST_USE)
        for i, o in enumerate(oracles):
            head = f"P99 gap closed vs {o}" if i == 0 else f"vs {o}"
            row[head] = gap_closed(p99, spec.reference, spec.policy, o)
        rows.append(row)
    za = np.array(z)
    worse = ", ".join(f"{v:.1f}" for v in sorted(za[za > 1])) or "none"  # in standard errors
    return (
        f"{pd.DataFrame(rows).to_markdown(index=False)}\n\n"
        f"Cells: {spec.policy} / the best of {', '.join(against)} by mean (mean paired change over seeds "
        f"± its standard error, seeds where {spec.policy} was at least as good).\n"
        + (f"Gap columns: share of {spec.reference}'s P99-TTFT excess over each oracle that {spec.policy} removes.\n"
           if spec.oracles or bound is not None else "")
        + f"\n{spec.policy} better than the best other policy, or worse by at most one standard error of "
        f"the paired change: {(za <= 1).sum()}/{len(za)} cells; at most two: {(za <= 2).sum()}/{len(za)}; "
        f"worse by more than one (in standard errors): {worse}\n"
    )
