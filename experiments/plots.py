"""Figures of a sweep (PNG + SVG): latency CDFs, grouped bars, knee curves, loading vs
adapter count, and a PCIe/compute Gantt of one run per policy.

Each `*_figure` function returns a matplotlib Figure (tests inspect it); `plot_all` saves them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from experiments.results import COUNT_KEY, RATE_KEY, load_results, metric_col, policy_table  # noqa: E402
from experiments.store import atomic_write  # noqa: E402
from sim.errors import ConfigError  # noqa: E402

KIND_COLORS = {
    "prefill": "#1f77b4",
    "decode": "#9ecae1",
    "blocking": "#d62728",
    "prefetch": "#ff7f0e",
    "overlap": "#2ca02c",
    "pin": "#9467bd",
    "issue": "#c5b0d5",
}
LANE_ORDER = ["compute", "pcie", "host"]
LINESTYLES = ["-", "--", "-.", ":"]


def policy_colors(policies: list[str]) -> dict[str, str]:
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {p: cycle[i % len(cycle)] for i, p in enumerate(policies)}


def _ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.sort(values[np.isfinite(values)])
    return x, np.arange(1, len(x) + 1) / max(len(x), 1)


def cdf_figure(records: dict[str, pd.DataFrame], title: str, colors: dict[str, str] | None = None) -> Figure:
    """TTFT and E2E CDFs: one line per policy on each of the two axes."""
    colors = colors or policy_colors(list(records))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for ax, col, name in zip(axes, ("ttft", "e2e"), ("TTFT", "E2E latency"), strict=True):
        spread = []
        for i, (policy, df) in enumerate(records.items()):
            if col not in df or df.empty:
                continue
            x, y = _ecdf(1e3 * df[col].to_numpy(dtype=float))
            ax.step(x, y, where="post", label=policy, color=colors.get(policy),
                    linestyle=LINESTYLES[i % len(LINESTYLES)])  # identical curves stay visible
            if len(x):
                spread.append((x[0], x[-1]))
        lo = min((s[0] for s in spread), default=1.0)
        hi = max((s[1] for s in spread), default=1.0)
        if lo > 0 and hi / lo > 100:
            ax.set_xscale("log")
        ax.set(xlabel=f"{name} (ms)", ylabel="fraction of requests", ylim=(0, 1.01), title=name)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    return fig


BAR_METRICS = [("mean TTFT (ms)", "Mean TTFT"), ("P50 TTFT (ms)", "Median TTFT"),
               ("P99 TTFT (ms)", "P99 TTFT"), ("mean E2E (ms)", "Mean E2E")]


def bars_figure(table: pd.DataFrame, policies: list[str], groups: list[str],
                colors: dict[str, str] | None = None) -> Figure:
    """Grouped bars: one panel per metric, groups on x, one bar per policy."""
    colors = colors or policy_colors(policies)
    metrics = [(c, t) for c, t in BAR_METRICS if c in table.columns]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(max(6, 1.6 * len(groups) * max(len(policies), 1) / 3), 2.6 * len(metrics)),
                             layout="constrained", squeeze=False)
    width = 0.8 / max(len(policies), 1)
    x = np.arange(len(groups))
    for ax, (col, title) in zip(axes[:, 0], metrics, strict=True):
        for i, p in enumerate(policies):
            sub = table[table.policy == p].set_index("group")
            vals = [sub[col].get(g, np.nan) for g in groups]
            ax.bar(x + (i - (len(policies) - 1) / 2) * width, vals, width, label=p, color=colors.get(p))
        ax.set_xticks(x, [_wrap(g) for g in groups], fontsize=8)
        ax.set(ylabel="ms", title=title)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=8, ncols=min(len(policies), 6))
    return fig


def _wrap(s: str, n: int = 18) -> str:
    return "\n".join(s[i:i + n] for i in range(0, len(s), n)) if len(s) > n else s


def sweep_line_figure(df: pd.DataFrame, xkey: str, panels: list[tuple[str, str]], policies: list[str],
                      title: str, colors: dict[str, str] | None = None, logx: bool = False) -> Figure:
    """One panel per (column, label); x = an axis value, one line per policy (mean over repeats)."""
    colors = colors or policy_colors(policies)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), layout="constrained", squeeze=False)
    for ax, (col, label) in zip(axes[0], panels, strict=True):
        for i, p in enumerate(policies):
            sub = df[df.policy == p]
            if sub.empty or col not in sub:
                continue
            line = sub.groupby(xkey)[col].mean().sort_index()
            ax.plot(line.index.to_numpy(dtype=float), line.to_numpy(), marker="o", label=p, color=colors.get(p),
                    linestyle=LINESTYLES[i % len(LINESTYLES)])
        ax.set(xlabel=xkey.split(".")[-1], ylabel=label)
        if logx:
            ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    return fig


def gantt_figure(timelines: dict[str, pd.DataFrame], title: str, window: float | None = None) -> Figure:
    """PCIe and compute lanes of one run per policy, stacked, intervals coloured by kind
    (as in SGLang's overlap-loading PR: blocking copies stall compute, overlapped ones do not)."""
    n = max(len(timelines), 1)
    fig, axes = plt.subplots(n, 1, figsize=(11, 1.5 + 1.2 * n), layout="constrained", squeeze=False, sharex=True)
    end = window if window is not None else _gantt_window(timelines)
    kinds_seen: set[str] = set()
    for ax, (policy, tl) in zip(axes[:, 0], timelines.items(), strict=False):
        present = set(tl.lane)
        lanes = [ln for ln in LANE_ORDER if ln in present or ln in ("compute", "pcie")]
        lanes += sorted(present - set(lanes))
        for li, lane in enumerate(lanes):
            sub = tl[(tl.lane == lane) & (tl.start < end)]
            for kind, kdf in sub.groupby("kind"):
                kinds_seen.add(kind)
                spans = list(zip(1e3 * kdf.start, 1e3 * (kdf.end.clip(upper=end) - kdf.start), strict=True))
                ax.broken_barh(spans, (li - 0.4, 0.8), facecolors=KIND_COLORS.get(kind, "#7f7f7f"),
                               edgecolor="white", linewidth=0.3)
        ax.set_yticks(range(len(lanes)), lanes)
        ax.set_ylim(-0.6, len(lanes) - 0.4)
        ax.set_title(policy, loc="left", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("time (ms)")
    axes[-1, 0].set_xlim(0, 1e3 * end)
    handles = [Patch(color=KIND_COLORS.get(k, "#7f7f7f"), label=k) for k in sorted(kinds_seen)]
    if handles:
        # below the lanes: at the top it shared a row with the title and covered long ones
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    fig.suptitle(title)
    return fig


def _gantt_window(timelines: dict[str, pd.DataFrame], compute_steps: int = 40, loads: int = 8) -> float:
    """Long enough to show the first few loads and ~40 batches of every policy."""
    ends = []
    for tl in timelines.values():
        if tl is None or tl.empty:
            continue
        comp = tl[tl.lane == "compute"].sort_values("start").end.head(compute_steps)
        pcie = tl[tl.lane == "pcie"].sort_values("start").end.head(loads)
        ends.append(max(comp.max() if len(comp) else 0.0, pcie.max() if len(pcie) else 0.0))
    return max(ends, default=1.0) or 1.0


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-")[:40] or "all"


PLOT_FORMATS_ENV = "LORASIM_PLOT_FORMATS"


def plot_formats() -> tuple[str, ...]:
    """The figure formats to write: `LORASIM_PLOT_FORMATS` (comma-separated, e.g. `png` where
    results must stay small: the device's 64 MiB tree), else png and svg."""
    raw = os.environ.get(PLOT_FORMATS_ENV, "png,svg")
    fmts = tuple(f.strip().lower() for f in raw.split(",") if f.strip())
    bad = [f for f in fmts if f not in ("png", "svg", "pdf")]
    if bad or not fmts:
        raise ConfigError(PLOT_FORMATS_ENV, "", f"expected a comma-separated list of png, svg, pdf; got {raw!r}")
    return fmts


# no creation date and a fixed id salt: a redrawn figure of the same data is the same file, so
# regenerating a committed study changes only the plots whose data changed
_NO_DATE = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write stem.<format> for each of `plot_formats()` atomically, close the figure."""
    out = []
    with plt.rc_context({"svg.hashsalt": "lorasim"}):
        for fmt in plot_formats():
            path = stem.with_suffix(f".{fmt}")
            atomic_write(
                path, lambda p, fmt=fmt: fig.savefig(p, format=fmt, dpi=120, metadata=_NO_DATE.get(fmt))
            )
            out.append(path)
    plt.close(fig)
    return out


def plot_all(results_dir: str | Path) -> list[Path]:
    """Every figure the results support, under results_dir/plots; returns the files written."""
    res = load_results(results_dir)
    out_dir = Path(results_dir) / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    policies, groups = res.policies, res.groups
    colors = policy_colors(policies)
    paths: list[Path] = []
    if res.ok.empty:
        return paths

    for i, g in enumerate(groups):
        recs = {p: res.records(g, p) for p in policies}
        recs = {p: r for p, r in recs.items() if not r.empty}
        if recs:
            paths += save(cdf_figure(recs, f"{res.manifest.get('name', '')}: {g}", colors),
                          out_dir / f"cdf_{i:02d}_{_slug(g)}")

    table = policy_table(res)
    present = [g for g in groups if g in set(table.group)]
    if present:
        paths += save(bars_figure(table, policies, present, colors), out_dir / "bars")

    ok = res.ok.copy()
    for key, panels, name, logx in (
        (RATE_KEY, [("ttft", "median"), ("ttft", "p99"), ("e2e", "mean")], "knee", False),
        (COUNT_KEY, [("hit_rate", "hit rate"), ("pcie_busy_frac", "PCIe busy fraction")], "adapters", True),
    ):
        if key not in res.axes or key not in ok.columns or ok[key].nunique() < 2:
            continue
        cols = list(panels) if name == "adapters" else \
            [(metric_col(ok, n, s), f"{s} {n.upper()} (ms)") for n, s in panels]
        cols = [(c, lab) for c, lab in cols if c and c in ok.columns]
        if not cols:
            continue
        ok["_rest"] = res.relabel(without=key)
        for j, (rest, sub) in enumerate(ok.groupby("_rest", sort=False)):
            title = f"{res.manifest.get('name', '')}: {name}" + ("" if rest == "all" else f" ({rest})")
            fig = sweep_line_figure(sub, key, cols, policies, title, colors, logx=logx)
            paths += save(fig, out_dir / f"{name}_{j:02d}_{_slug(rest)}")

    if groups:
        g0 = groups[0]
        first = res.ok[res.ok.group == g0].sort_values("repeat") if "repeat" in res.ok else res.ok[res.ok.group == g0]
        tls = {}
        for p in policies:
            ids = first[first.policy == p].run_id
            tl = res.store.timeline(ids.iloc[0]) if len(ids) else None
            if tl is not None and not tl.empty and {"lane", "start", "end", "kind"} <= set(tl.columns):
                tls[p] = tl
        if tls:
            paths += save(gantt_figure(tls, f"timeline: {g0}"), out_dir / "timeline")
    return paths

