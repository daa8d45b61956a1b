"""docs/reproductions.md: published vs simulated for every reproduction, rendered from the
long table `lorasim reproduce` writes (no number on the page comes from anywhere else)."""

from __future__ import annotations

import math

import pandas as pd

from experiments.reproduce import (
    CRITERIA,
    RESIDENT,
    STATED,
    GpuModel,
    Verdict,
    direction,
    variant_models,
    verdicts,
)
from experiments.reproduction_spec import METRICS, Reproduction, VariantCfg


def fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    a = abs(x)
    return f"{x:.0f}" if a >= 100 else f"{x:.1f}" if a >= 10 else f"{x:.2f}"


def _arrow(a: float, b: float) -> str:
    return f"{fmt(a)} → {fmt(b)}"


def _criterion(metric: str) -> str:
    c = CRITERIA.get(metric)
    if c is None:
        return "direction"
    kind, x = c
    return f"\\|error\\| ≤ {x:.0%}" if kind == "rel" else f"within ×{x:g}"


def _mark(ok: bool | None) -> str:
    return "–" if ok is None else ("yes" if ok else "**no**")


def _verdict_table(vs: list[Verdict], rep: Reproduction, model: GpuModel) -> list[str]:
    """One row a metric; a miss says what the simulator lacks there (the file's `missing`), or
    that it is not found."""
    lines = [
        "| metric | published baseline → feature | simulated baseline → feature | direction | "
        "\\|error\\| baseline / feature | criterion | pass | missing mechanism |",
        "|---|---:|---:|:-:|---:|---|:-:|---|",
    ]
    for v in vs:
        eb, ef = v.errors
        why = "" if v.passed else (rep.spec.missing_for(v.metric, model.kind) or "not found")
        lines.append(
            f"| {METRICS[v.metric]} | {_arrow(*v.pub)} | {_arrow(*v.sim)} | "
            f"{'right' if v.direction_ok else '**wrong**'} | {eb:.0%} / {ef:.0%} | {_criterion(v.metric)} | "
            f"{_mark(v.passed)} | {why} |"
        )
    return lines


def _value(table: pd.DataFrame, rep: str, model: str, variant: str, side: str, metric: str) -> float:
    t = table[(table.reproduction == rep) & (table.model == model) & (table.variant == variant)
              & (table.side == side) & (table.metric == metric)]
    return float(t.simulated.iloc[0]) if len(t) else math.nan


def _load_line(table: pd.DataFrame, rep: Reproduction, model: str, variant: str = "") -> str:
    def side(s: str) -> str:
        loads = _value(table, rep.name, model, variant, s, "loads")
        stall = _value(table, rep.name, model, variant, s, "gpu_stall_ms")
        return f"{s} {fmt(loads)} loads, GPU stalled {fmt(stall)} ms"

    res = [f"{METRICS[m]} {fmt(_value(table, rep.name, model, variant, RESIDENT, m))}"
           for m in rep.spec.published.baseline]
    line = f"Simulated: {side('baseline')}; {side('feature')}."
    if not math.isnan(_value(table, rep.name, model, variant, RESIDENT, "loads")):
        line += f" Resident oracle (no loads, no slot limit): {', '.join(res)} ms."
    return line


def _summary(table: pd.DataFrame, reps: list[Reproduction], models: list[GpuModel]) -> list[str]:
    lines = ["| reproduction | GPU model | direction right | size criteria met | all criteria |",
             "|---|---|---:|---:|:-:|"]
    for rep in reps:
        for m in models + ([STATED] if rep.spec.stated_costs else []):
            vs = verdicts(table, rep.name, m.key)
            sized = [v for v in vs if v.within is not None]
            lines.append(
                f"| {rep.spec.title} | {m.label} | {sum(v.direction_ok for v in vs)} of {len(vs)} | "
                f"{sum(bool(v.within) for v in sized)} of {len(sized)} | {_mark(all(v.passed for v in vs))} |"
            )
    return lines


def _variants(table: pd.DataFrame, rep: Reproduction, model: GpuModel, variants: list[VariantCfg]) -> list[str]:
    metrics = list(rep.spec.published.baseline)
    head = "| variant | " + " | ".join(METRICS[m] for m in metrics) + " | resident " + \
           " / ".join(METRICS[m] for m in metrics) + " |"
    lines = [head, "|---|" + "---:|" * (len(metrics) + 1)]
    pub = rep.spec.published
    lines.append("| *published* | " + " | ".join(_arrow(pub.baseline[m], pub.feature[m]) for m in metrics) + " | |")
    for name in [""] + [v.name for v in variants]:
        cells = []
        for m in metrics:
            b = _value(table, rep.name, model.key, name, "baseline", m)
            f = _value(table, rep.name, model.key, name, "feature", m)
            ok = direction(b, f) == direction(pub.baseline[m], pub.feature[m])
            cells.append(f"{_arrow(b, f)} {'right' if ok else '**wrong**'}")
        res = " / ".join(fmt(_value(table, rep.name, model.key, name, RESIDENT, m)) for m in metrics)
        lines.append(f"| {name or 'as published'} | " + " | ".join(cells) + f" | {res} |")
    lines.append("")
    for v in variants:
        keys = ", ".join(f"`{k}: {val}`" for k, val in v.set.items())
        lines.append(f"- *{v.name}* ({keys}): {v.why}")
    return lines


def _section(table: pd.DataFrame, rep: Reproduction, models: list[GpuModel]) -> list[str]:
    s = rep.spec
    scen = f"`{rep.path.parent / s.scenario_file}`" if s.scenario_file else "inline in the file"
    lines = [f"## {s.title}", "", f"Source: <{s.source.url}> ({s.source.where}). Reproduction file: "
             f"`{rep.path}`; scenario: {scen}.", ""]
    lines += [f"- {x}" for x in s.source.setup]

    def side(name: str) -> str:
        c = getattr(s, name)
        keys = "".join(f", `{k}: {v}`" for k, v in c.set.items())
        return f"{name}: {c.label} (policy `{c.policy}`{keys})"

    lines += ["", f"Compared: {side('baseline')}; {side('feature')}.", ""]
    for m in models + ([STATED] if s.stated_costs else []):
        lines += [f"### {m.label}", ""]
        if m is STATED:
            c = s.stated_costs
            lines += [f"Every load {fmt(c.load_ms)} ms, every prefill {fmt(c.prefill_ms)} ms, every decode step "
                      f"{fmt(c.decode_ms)} ms, as the source states them.", ""]
        lines += _verdict_table(verdicts(table, rep.name, m.key), rep, m)
        if m is not STATED:
            lines += ["", _load_line(table, rep, m.key)]
        lines.append("")
    for m in models:
        variants = [v for v in s.variants if m in variant_models(v, models)]
        if not variants:
            continue
        lines += [f"### What-if variants ({m.label})", "",
                  "Each variant changes the published setup's scenario keys shown below it, on both sides "
                  "unless a key names one (`@baseline`, `@feature`).", ""]
        lines += _variants(table, rep, m, variants) + [""]
    if s.findings:
        lines += ["### Findings", ""] + [f"- {x}" for x in s.findings] + [""]
    return lines


def render(table: pd.DataFrame, reps: list[Reproduction], models: list[GpuModel], command: str) -> str:
    crit = "; ".join(f"{METRICS[m]} {_criterion(m)}" for m in CRITERIA)
    lines = [
        "# Reproductions of published runs",
        "",
        f"Generated by `{command}` (no GPU needed); do not edit by hand, rerun it. "
        "The published numbers are data in each reproduction file (`configs/reproductions/`), "
        "with the source and where in it they are.",
        "",
        "Pass criteria (issue #27), on baseline and feature alike: the change from baseline to feature "
        f"goes the published way on every metric; {crit}. \\|error\\| = \\|simulated − published\\| / "
        "published. Each run is the scenario's one seed, as the sources report one run. A miss says "
        "in its last column which mechanism the simulator lacks there, as a what-if variant or a GPU "
        "run measured it (the reproduction file's `missing`), or that none is found.",
        "",
        "## Summary",
        "",
        *_summary(table, reps, models),
        "",
    ]
    for rep in reps:
        lines += _section(table, rep, models)
    return "\n".join(lines).rstrip() + "\n"
