"""Reading a results directory back as tables: what plots, reports and notebooks share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.store import Store
from experiments.sweep import group_label
from sim.errors import LorasimError

# Metric names as sim.metrics writes them; `p50` is accepted for `median`.
ALIASES = {"median": ("median", "p50"), "p50": ("median", "p50")}
RATE_KEY = "workload.arrival.rate"
COUNT_KEY = "adapters.count"


@dataclass
class Results:
    root: Path
    store: Store
    manifest: dict[str, Any]
    summaries: pd.DataFrame  # one row per run of the manifest (ok and error)

    @property
    def ok(self) -> pd.DataFrame:
        df = self.summaries
        return df[df.status == "ok"] if "status" in df else df

    @property
    def errors(self) -> pd.DataFrame:
        df = self.summaries
        return df[df.status != "ok"] if "status" in df else df.iloc[0:0]

    @property
    def policies(self) -> list[str]:
        """Policies in sweep order (stable colours and table order)."""
        seen = list(self.manifest.get("policies") or [])
        return seen + [p for p in self.summaries.get("policy", pd.Series(dtype=str)).unique() if p not in seen]

    @property
    def groups(self) -> list[str]:
        """Workload/scenario groups in sweep order."""
        return list(dict.fromkeys(r["group"] for r in self.manifest.get("runs", [])))

    @property
    def axes(self) -> dict[str, list[Any]]:
        return dict(self.manifest.get("axes") or {})

    def relabel(self, without: str) -> pd.Series:
        """Group labels of the ok runs ignoring axis `without` (e.g. the rate of a knee curve)."""
        keys = [k for k in self.manifest.get("label_keys", []) if k != without]
        ok = self.ok
        return ok.apply(lambda r: group_label({k: r.get(k) for k in keys}, keys), axis=1) if len(ok) else \
            pd.Series(dtype=str)

    def records(self, group: str, policy: str) -> pd.DataFrame:
        """Per-request records of every ok run of (group, policy), all repeats together."""
        ok = self.ok
        ids = ok[(ok.group == group) & (ok.policy == policy)].run_id
        frames = [f for f in (self.store.records(r) for r in ids) if f is not None and len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_results(root: str | Path) -> Results:
    root = Path(root)
    store = Store(root)
    manifest = store.manifest()
    if manifest is None:
        raise LorasimError(f"{root}: not a sweep results directory (no readable manifest.json)")
    return Results(root, store, manifest, store.summaries())


def metric_col(df: pd.DataFrame, name: str, stat: str) -> str | None:
    """Column of e.g. ('ttft', 'median'): ttft_median_ms, or ttft_p50_ms."""
    for s in ALIASES.get(stat, (stat,)):
        for col in (f"{name}_{s}_ms", f"{name}_{s}"):
            if col in df.columns:
                return col
    return None


# (label, name, stat) of the ranking table, in order
TABLE_METRICS = [
    ("P50 TTFT (ms)", "ttft", "median"),
    ("P99 TTFT (ms)", "ttft", "p99"),
    ("mean TTFT (ms)", "ttft", "mean"),
    ("mean E2E (ms)", "e2e", "mean"),
]


def policy_table(res: Results) -> pd.DataFrame:
    """Mean over repeats of the headline metrics, one row per (group, policy)."""
    ok = res.ok
    cols: dict[str, str] = {}
    for label, name, stat in TABLE_METRICS:
        c = metric_col(ok, name, stat)
        if c:
            cols[label] = c
    for label, c in (("hit rate", "hit_rate"), ("PCIe busy", "pcie_busy_frac")):
        if c in ok.columns:
            cols[label] = c
    if ok.empty or not cols:
        return pd.DataFrame(columns=["group", "policy", "runs", *cols])
    agg = ok.groupby(["group", "policy"], sort=False)[list(cols.values())].mean(numeric_only=True)
    agg = agg.rename(columns={v: k for k, v in cols.items()})
    agg.insert(0, "runs", ok.groupby(["group", "policy"], sort=False).size())
    out = agg.reset_index()
    gorder = {g: i for i, g in enumerate(res.groups)}
    porder = {p: i for i, p in enumerate(res.policies)}
    out["_g"] = out.group.map(gorder).fillna(len(gorder))
    out["_p"] = out.policy.map(porder).fillna(len(porder))
    return out.sort_values(["_g", "_p"]).drop(columns=["_g", "_p"]).reset_index(drop=True)


def ranking(res: Results, baseline: str = "lru", by: str = "P50 TTFT (ms)") -> pd.DataFrame:
    """policy_table ranked within each group by `by`, with % change vs `baseline`
    (the first policy of the sweep when `baseline` is absent from a group)."""
    tab = policy_table(res)
    if tab.empty:
        return tab
    rel_cols = [c for c in ("P50 TTFT (ms)", "P99 TTFT (ms)", "mean E2E (ms)") if c in tab.columns]
    parts = []
    for _g, sub in tab.groupby("group", sort=False):
        sub = sub.copy()
        base = baseline if baseline in set(sub.policy) else sub.policy.iloc[0]
        ref = sub[sub.policy == base].iloc[0]
        for c in rel_cols:
            sub[f"Δ {c.split(' (')[0]} vs {baseline}"] = 100.0 * (sub[c] / ref[c] - 1.0)
        sub["baseline"] = base
        if by in sub.columns:
            sub = sub.sort_values(by, kind="stable")
        sub.insert(2, "rank", range(1, len(sub) + 1))
        parts.append(sub)
    return pd.concat(parts, ignore_index=True)
