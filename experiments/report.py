"""Markdown report of a sweep: what was run, which policy wins per workload, what failed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.results import Results, load_results, ranking
from experiments.slots import equal_memory_slots
from experiments.store import atomic_write_text
from experiments.sweep import short_value

RANK_BY = "P50 TTFT (ms)"


def _cell(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.3g}" if abs(v) < 10 else f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.1f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def _pct(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.1f}%"


def md_table(df: pd.DataFrame) -> str:
    """A pipe table; Δ columns as signed percentages."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---" if c in ("policy", "group", "error", "run") else "---:" for c in df.columns) + "|"
    rows = ["| " + " | ".join(_pct(v) if str(c).startswith("Δ") else _cell(v) for c, v in zip(df.columns, r, strict=True))
            + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, sep, *rows])


def _header(res: Results) -> list[str]:
    m = res.manifest
    s = res.summaries
    n_ok = int((s.status == "ok").sum()) if "status" in s else 0
    lines = [f"# Sweep report: {m.get('name', res.root.name)}", ""]
    if m.get("description"):
        lines += [m["description"].strip(), ""]
    lines += [
        f"- sweep file: `{m.get('source', '?')}`",
        f"- runs: {len(m.get('runs', []))} planned, {n_ok} ok, {len(res.errors)} failed, "
        f"{len(m.get('runs', [])) - len(s)} not run",
        f"- policies: {', '.join(res.policies)}; repeats (seeds): {m.get('repeats', 1)}",
    ]
    base = m.get("base") or {}
    if base:
        ads = "; ".join(f"{a['count']}× rank {a['rank']} ({a['targets'] if isinstance(a['targets'], str) else ','.join(a['targets'])})"
                        for a in base.get("adapters", []))
        lines.append(f"- base scenario: model {base.get('model')}, hardware {base.get('hardware')}, "
                     f"adapters {ads or '?'}, {base.get('num_requests')} requests, "
                     f"{base.get('arrival')} arrivals at {base.get('rate')} req/s")
    em = m.get("equal_memory")
    if em:
        split = ", ".join(f"{p} {'+'.join(map(str, equal_memory_slots(p, em['adapter_slots'], em['prefetch_share'])))}"
                          for p in res.policies)
        lines.append(f"- equal GPU adapter memory: {em['adapter_slots']} slots per policy "
                     f"(batch+prefetch: {split})")
    axes = res.axes
    if axes:
        lines += ["", "| axis | values |", "|---|---|"]
        lines += [f"| `{k}` | {_cell(', '.join(short_value(x) for x in v))} |" for k, v in axes.items()]
    return lines


def _rankings(res: Results, baseline: str) -> list[str]:
    rk = ranking(res, baseline=baseline, by=RANK_BY)
    lines = ["", "## Policy ranking per workload", ""]
    if rk.empty:
        return lines + ["No successful runs."]
    lines.append(f"Ranked by {RANK_BY} (mean over repeats). Δ = relative change vs `{baseline}` "
                 "(lower is better); where a group has no "
                 f"`{baseline}` run the first policy is the baseline.")
    keep = ["rank"] + [c for c in rk.columns if c not in ("rank", "group", "baseline", "mean TTFT (ms)")]
    for g, sub in rk.groupby("group", sort=False):
        lines += ["", f"### {g}", ""]
        if sub.baseline.iloc[0] != baseline:
            lines.append(f"(baseline here: `{sub.baseline.iloc[0]}`)\n")
        lines.append(md_table(sub[keep]))
    return lines


def _plots(root: Path) -> list[str]:
    pngs = sorted((root / "plots").glob("*.png")) if (root / "plots").is_dir() else []
    lines = ["", "## Plots", ""]
    if not pngs:
        return lines + ["No plots yet: run `lorasim plot " + str(root) + "`."]
    for p in pngs:
        lines += [f"![{p.stem}](plots/{p.name})", ""]
    return lines


def _errors(res: Results) -> list[str]:
    err = res.errors
    if err.empty:
        return []
    tab = pd.DataFrame({"run": err.run_id, "policy": err.policy, "group": err.group,
                        "error": err.get("error", "")})
    return ["", "## Errors", "", f"{len(err)} run(s) failed; rerun the sweep to retry only these.", "",
            md_table(tab)]


def write_report(results_dir: str | Path, baseline: str = "lru") -> Path:
    """Write results_dir/report.md (plots linked relatively, so the folder can be moved)."""
    res = load_results(results_dir)
    lines = _header(res) + _rankings(res, baseline) + _errors(res) + _plots(res.root)
    path = res.root / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
