"""Policy rankings from validation tables: does the simulator order policies as the GPU does?

A simulator is useful to a user when it picks the same policy the hardware would, so besides
per-cell errors we compare rankings. `lorasim validate` writes `errors.csv` (one row per
scenario trace, policy and metric, with the GPU's and the simulator's value). Pairing two
policies by trace removes most trace-to-trace variance, as the sweeps pair by seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from experiments.gap import paired_change
from sim.errors import LorasimError

METRICS = {"ttft_median_ms": "P50 TTFT", "ttft_p99_ms": "P99 TTFT", "e2e_mean_ms": "mean E2E"}
NEEDED = ["scenario", "workload", "policy", "metric", "gpu", "sim"]


def read_errors(paths: list[str | Path]) -> pd.DataFrame:
    """Rows of one or several validate errors.csv files; a later file's cell replaces an
    earlier one's (newer runs of the same trace and policy)."""
    frames = []
    for p in paths:
        try:
            df = pd.read_csv(p)
        except (OSError, ValueError) as e:
            raise LorasimError(f"{p}: cannot read ({e}); expected the errors.csv of `lorasim validate`") from None
        missing = [c for c in NEEDED if c not in df]
        if missing:
            raise LorasimError(f"{p}: columns {', '.join(missing)} missing; expected the errors.csv of `lorasim validate`")
        frames.append(df[NEEDED])
    if not frames:
        raise LorasimError("no errors.csv given")
    df = pd.concat(frames, ignore_index=True)
    return df.drop_duplicates(["scenario", "policy", "metric"], keep="last")


def _pair(t: pd.DataFrame, policy: str, other: str) -> str:
    """t: traces x policies of one side. Means, mean change ± standard error, wins."""
    t = t[[policy, other]].dropna()
    if t.empty:
        return "-"
    c = paired_change(t[policy], t[other])
    se = f" ± {c.se:.1f}" if c.n > 1 else ""
    return f"{t[policy].mean():.0f}/{t[other].mean():.0f} ({c.mean:+.1f}{se} %, {c.wins}/{c.n})"


def pairwise(df: pd.DataFrame, policy: str, against: list[str]) -> str:
    """`policy` against each of `against`, per workload and metric, GPU and simulator side."""
    have = set(df.policy)
    missing = sorted({policy, *against} - have)
    if missing:
        raise LorasimError(f"no rows of {', '.join(missing)}; the tables have {', '.join(sorted(have))}")
    rows = []
    for w in dict.fromkeys(df.workload):
        x = df[df.workload == w]
        for o in against:
            row = {"workload": w, "vs": o}
            for m, label in METRICS.items():
                c = x[x.metric == m]
                for side in ("gpu", "sim"):
                    t = c.pivot_table(index="scenario", columns="policy", values=side)
                    row[f"{label} {'GPU' if side == 'gpu' else 'simulator'}"] = (
                        _pair(t, policy, o) if {policy, o} <= set(t.columns) else "-")
            rows.append(row)
    return (pd.DataFrame(rows).to_markdown(index=False) +
            f"\n\nCells: {policy} / the other policy, means over traces (mean per-trace change ± its standard "
            f"error, traces where {policy} was at least as good).\n")


def orders(df: pd.DataFrame, oracle: str = "resident") -> str:
    """Per workload and metric, the policy order by the mean over traces on the GPU and in
    the simulator, and how often the best, the worst and the whole order agree. The oracle is
    left out: it is best by construction."""
    df = df[df.policy != oracle]
    lines = ["| workload | metric | GPU | simulator | same order? |", "|---|---|---|---|---|"]
    n = best = worst = full = 0
    for w, x in df.groupby("workload", sort=False):
        for m, label in METRICS.items():
            means = x[x.metric == m].groupby("policy")[["gpu", "sim"]].mean()
            if len(means) < 2:
                continue
            g = list(means.gpu.sort_values().index)
            s = list(means.sim.sort_values().index)
            n += 1
            best += g[0] == s[0]
            worst += g[-1] == s[-1]
            full += g == s
            lines.append(f"| {w} | {label} | {' < '.join(g)} | {' < '.join(s)} | {'yes' if g == s else 'no'} |")
    lines += ["", f"Same best policy: {best}/{n}; same worst: {worst}/{n}; same whole order: {full}/{n} "
              f"(means over traces; `{oracle}` left out)."]
    return "\n".join(lines) + "\n"


def _axis_label(v: object) -> str:
    """A compact label of an axis value: a path by its file name (profiles share prefixes)."""
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return Path(v).name if "/" in v else v
    if isinstance(v, dict):
        return " ".join(_axis_label(x) for x in v.values())
    return Path(str(v)).name if "/" in str(v) else str(v)


def orders_across(results: str | Path, axis: str, oracle: str = "resident") -> str:
    """Per workload and metric of a sweep, the policy order (mean over repeats) at each value of
    `axis`, and whether the order holds across them: how a ranking shifts with the hardware
    model, the slot count or the load. The oracle is left out: it is best by construction."""
    from experiments.results import load_results, metric_col

    res = load_results(results)
    ok = res.ok
    if axis not in res.axes:
        raise LorasimError(f"{results}: no axis {axis!r}; the sweep's axes are {', '.join(res.axes) or 'none'}")
    ok = ok[ok.policy != oracle]
    others = [k for k in res.manifest.get("label_keys", []) if k != axis]
    from experiments.sweep import group_label

    ok = ok.assign(_w=ok.apply(lambda r: group_label({k: r.get(k) for k in others}, others), axis=1),
                   _v=ok[axis].map(_axis_label))
    values = list(dict.fromkeys(ok._v))
    lines = ["| workload | metric | " + " | ".join(values) + " | same order? |",
             "|---|---|" + "---|" * len(values) + "---|"]
    n = same = best = 0
    seen: list[dict[str, list[str]]] = []  # per row: axis value -> order
    for w, x in ok.groupby("_w", sort=False):
        for m, label in METRICS.items():
            name, stat = m.split("_")[0], m.split("_")[1]
            col = metric_col(x, name, stat)
            if col is None:
                continue
            order = {v: list(g.groupby("policy")[col].mean().sort_values().index) for v, g in x.groupby("_v", sort=False)}
            cells = [" < ".join(order.get(v, [])) or "-" for v in values]
            seqs = [o for o in order.values() if o]
            seen.append(order)
            n += 1
            same += all(o == seqs[0] for o in seqs)
            best += all(o[0] == seqs[0][0] for o in seqs)
            lines.append(f"| {w} | {label} | " + " | ".join(cells) + f" | {'yes' if all(o == seqs[0] for o in seqs) else 'no'} |")
    lines += ["", f"Same best policy at every `{axis}` value: {best}/{n}; same whole order: {same}/{n} "
              f"(means over repeats; `{oracle}` left out; lower is better).", "",
              "Two values at a time (rows where both ran):", "",
              "| value | value | same best | same order |", "|---|---|---|---|"]
    for i, a in enumerate(values):
        for b in values[i + 1:]:
            both = [(o[a], o[b]) for o in seen if o.get(a) and o.get(b)]
            sb = sum(x[0] == y[0] for x, y in both)
            so = sum(x == y for x, y in both)
            lines.append(f"| {a} | {b} | {sb}/{len(both)} | {so}/{len(both)} |")
    return "\n".join(lines) + "\n"


def ranking_report(paths: list[str | Path], policy: str | None, against: list[str]) -> str:
    df = read_errors(paths)
    text = "## Policy order, GPU vs simulator\n\n" + orders(df)
    if policy:
        others = against or [p for p in dict.fromkeys(df.policy) if p not in (policy, "resident")]
        text += f"\n## {policy} against the others, paired by trace\n\n" + pairwise(df, policy, others)
    return text
