"""`lorasim reproduce`: every published run of configs/reproductions/ against the simulator.

Each reproduction runs its baseline and its feature under the analytic GPU model, under each
measured profile given, and under the source's stated costs when it states them; its
variants (what-if scenario keys) run under the analytic model only, to locate a missing
mechanism. Results go to OUT/summaries.csv (one row per run and metric) and the generated
page (docs/reproductions.md), which sets published and simulated side by side with the pass
criteria of issue #27.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from experiments.reproduction_spec import (
    SIDES,
    Reproduction,
    StatedCosts,
    VariantCfg,
    load_reproductions,
)
from experiments.store import atomic_write, atomic_write_text
from sim.hw import Hardware
from sim.hw.pcie import LoadCost

# Issue #27's pass criteria, per metric: ("rel", x) = |sim - pub| / pub <= x on both sides;
# ("factor", x) = max(sim / pub, pub / sim) <= x on both sides. Every metric must also change
# from baseline to feature in the published direction.
CRITERIA: dict[str, tuple[str, float]] = {
    "ttft_mean_ms": ("rel", 0.25),
    "ttft_p99_ms": ("rel", 0.25),
    "e2e_mean_ms": ("rel", 0.25),
    "tpot_median_ms": ("rel", 0.25),
    "ttft_median_ms": ("factor", 1.5),
}
RESIDENT = "resident"  # the no-loading oracle, run beside each variant for reference
COLUMNS = ["reproduction", "model", "variant", "side", "policy", "metric", "published", "simulated"]


# ---- hardware models ------------------------------------------------------------------


@dataclass(frozen=True)
class _StatedCopy:
    load_s: float

    def load_time(self, job) -> LoadCost:
        return LoadCost(0.0, 0.0, self.load_s)

    def read_time(self, nbytes: int, pinned: bool) -> float:
        return 0.0  # a source's stated costs name no disk


@dataclass(frozen=True)
class _StatedCompute:
    prefill_s: float
    decode_s: float

    def forward_time(self, batch) -> float:
        return self.prefill_s if batch.kind == "prefill" else self.decode_s

    def decode_times(self, batch, steps: int) -> np.ndarray:
        return np.full(max(steps, 0), self.decode_s)


def stated_hardware(c: StatedCosts) -> Hardware:
    """A GPU whose every load and forward costs what the source states (e.g. the SGLang
    docs' 2 ms load, 20 ms prefill), with no host-side delays: the source's own arithmetic."""
    return Hardware(_StatedCopy(c.load_ms * 1e-3), _StatedCompute(c.prefill_ms * 1e-3, c.decode_ms * 1e-3),
                    wake_s=0.0)  # type: ignore[arg-type]


@dataclass(frozen=True)
class GpuModel:
    """One column of the page: how a scenario's hardware is set for it."""

    key: str  # "analytic:h200", "profile:h200-measured", "stated"
    label: str
    preset: str | None = None
    profile: Path | None = None

    @property
    def kind(self) -> str:
        """"measured" (a calibrated profile) or "analytic" (a preset, or the stated costs)."""
        return "measured" if self.profile is not None else "analytic"

    def scenario(self, sc: dict[str, Any]) -> dict[str, Any]:
        sc = copy.deepcopy(sc)
        hw = dict(sc.get("hardware") or {})
        hw.pop("profile", None)
        if self.preset is not None:
            hw["preset"] = self.preset
        if self.profile is not None:
            hw.pop("hbm_eff", None)  # analytic only; the profile's tables replace it
            hw["profile"] = str(self.profile)
        sc["hardware"] = hw
        return sc


def gpu_models(preset: str, profiles: list[Path]) -> list[GpuModel]:
    models = [GpuModel(f"analytic:{preset}", f"analytic {preset}", preset=preset)]
    models += [GpuModel(f"profile:{p.stem}", f"measured {p.stem}", profile=p) for p in profiles]
    return models


STATED = GpuModel("stated", "stated costs")


# ---- running --------------------------------------------------------------------------


@dataclass
class RunJob:
    rep: Reproduction
    model: GpuModel
    variant: str  # "" = the published setup
    side: str  # baseline | feature | resident
    scenario: dict[str, Any] = field(repr=False)
    policy: str


def variant_models(v: VariantCfg, models: list[GpuModel]) -> list[GpuModel]:
    """The GPU models a variant runs on: the first (analytic) one, or the measured profiles."""
    return models[:1] if v.models == "analytic" else [m for m in models if m.profile is not None]


def plan(reps: list[Reproduction], models: list[GpuModel]) -> list[RunJob]:
    """Every run: published setup x GPU models x (baseline, feature, resident oracle), then each
    variant under the models it names (`models`: the first, analytic, model or every measured one)."""
    jobs: list[RunJob] = []
    for rep in reps:
        cols = models + ([STATED] if rep.spec.stated_costs else [])
        for m in cols:
            for side in SIDES:
                cfg = getattr(rep.spec, side)
                jobs.append(RunJob(rep, m, "", side, m.scenario(rep.side_scenario(side)), cfg.policy))
            if m is not STATED:
                jobs.append(RunJob(rep, m, "", RESIDENT, m.scenario(rep.side_scenario("baseline")), RESIDENT))
        for v in rep.spec.variants:
            for m in variant_models(v, models):
                for side in SIDES:
                    cfg = getattr(rep.spec, side)
                    jobs.append(RunJob(rep, m, v.name, side, m.scenario(rep.side_scenario(side, v.set)), cfg.policy))
                res = m.scenario(rep.side_scenario("baseline", v.set))
                jobs.append(RunJob(rep, m, v.name, RESIDENT, res, RESIDENT))
    return jobs


def _metrics(summary: dict[str, Any], records: pd.DataFrame) -> dict[str, float]:
    out = {k: float(v) for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    done = records[records["finish"].notna()]
    out["e2e_max_ms"] = float(done["e2e"].max() * 1e3) if len(done) else math.nan
    return out


def run_job(job: RunJob, out: Path | None = None) -> dict[str, float]:
    """Simulate one run; its per-request records go to OUT/runs/ (not committed)."""
    from sim.runner import parse_scenario, simulate

    sc = parse_scenario(job.scenario, f"{job.rep.path}: {job.model.key} {job.variant or 'published setup'}")
    hw = stated_hardware(job.rep.spec.stated_costs) if job.model is STATED else None
    res = simulate(sc, job.policy, hardware=hw)
    if out is not None:
        d = out / "runs" / job.rep.name / job.model.key.replace(":", "_") / (_slug(job.variant) or "published")
        d.mkdir(parents=True, exist_ok=True)
        atomic_write(d / f"{job.side}.parquet", lambda p: res.records.to_parquet(p, index=False))
    return _metrics(res.summary, res.records)


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in s).strip("_")


def run_all(jobs: list[RunJob], out: Path | None, progress: bool = True,
            run: Callable[[RunJob, Path | None], dict[str, float]] = run_job) -> pd.DataFrame:
    """Run every job (serially: each is well under a second) into the long table."""
    rows = []
    for job in tqdm(jobs, desc="reproduce", unit="run", disable=not progress):
        got = run(job, out)
        pub = job.rep.spec.published
        for metric in _reported(job.rep):
            p = getattr(pub, job.side)[metric] if job.side in SIDES else math.nan
            rows.append((job.rep.name, job.model.key, job.variant, job.side, job.policy, metric, p,
                         got.get(metric, math.nan)))
        for extra in ("loads", "gpu_stall_ms", "duration_s"):
            rows.append((job.rep.name, job.model.key, job.variant, job.side, job.policy, extra, math.nan,
                         got.get(extra, math.nan)))
    return pd.DataFrame(rows, columns=COLUMNS)


def _reported(rep: Reproduction) -> list[str]:
    return list(rep.spec.published.baseline)


# ---- judging ----------------------------------------------------------------------------


def rel_error(sim: float, pub: float) -> float:
    return abs(sim - pub) / pub


def direction(base: float, feat: float) -> int:
    return int(np.sign(feat - base))


@dataclass(frozen=True)
class Verdict:
    """One metric of one reproduction under one GPU model."""

    metric: str
    pub: tuple[float, float]
    sim: tuple[float, float]

    @property
    def direction_ok(self) -> bool:
        return direction(*self.pub) == direction(*self.sim)

    @property
    def errors(self) -> tuple[float, float]:
        return rel_error(self.sim[0], self.pub[0]), rel_error(self.sim[1], self.pub[1])

    @property
    def criterion(self) -> tuple[str, float] | None:
        return CRITERIA.get(self.metric)

    @property
    def within(self) -> bool | None:
        """The metric's size criterion on both sides (None: the issue sets none for it)."""
        c = self.criterion
        if c is None:
            return None
        kind, x = c
        if kind == "rel":
            return all(e <= x for e in self.errors)
        return all(max(s / p, p / s) <= x for s, p in zip(self.sim, self.pub, strict=True))

    @property
    def passed(self) -> bool:
        return self.direction_ok and self.within is not False


def verdicts(table: pd.DataFrame, rep: str, model: str, variant: str = "") -> list[Verdict]:
    t = table[(table.reproduction == rep) & (table.model == model) & (table.variant == variant)]
    out = []
    for metric in dict.fromkeys(t.metric):
        m = t[t.metric == metric].set_index("side")
        if not {"baseline", "feature"} <= set(m.index) or m.published.isna().all():
            continue
        out.append(Verdict(metric, (m.published["baseline"], m.published["feature"]),
                           (m.simulated["baseline"], m.simulated["feature"])))
    return out


# ---- the command ----------------------------------------------------------------------


@dataclass
class ReproduceResult:
    table: pd.DataFrame
    reps: list[Reproduction]
    models: list[GpuModel]
    paths: dict[str, Path]


def reproduce(target: Path, out: Path, docs: Path | None, *, preset: str = "h200",
              profiles: list[Path] | None = None, command: str = "", progress: bool = True) -> ReproduceResult:
    """Load, run, write OUT/summaries.csv and the page; returns the table and paths."""
    from experiments.reproduction_doc import render

    reps = load_reproductions(target)
    models = gpu_models(preset, list(profiles or []))
    _check_models(models, reps)
    out.mkdir(parents=True, exist_ok=True)
    table = run_all(plan(reps, models), out, progress=progress)
    paths = {"summaries": out / "summaries.csv"}
    atomic_write(paths["summaries"], lambda p: table.to_csv(p, index=False, float_format="%.6g"))
    text = render(table, reps, models, command)
    paths["report"] = out / "report.md"
    atomic_write_text(paths["report"], text)
    if docs is not None:
        atomic_write_text(docs, text)
        paths["docs"] = docs
    return ReproduceResult(table, reps, models, paths)


def _check_models(models: list[GpuModel], reps: list[Reproduction]) -> None:
    """A bad preset or profile fails before any run, naming the option."""
    from sim.errors import ConfigError
    from sim.hw import load_hardware
    from sim.runner import parse_scenario

    for m in models:
        if m.profile is not None and not m.profile.is_file():
            raise ConfigError(str(m.profile), "--profile", "file not found; expected a profile YAML "
                                                           "written by `lorasim calibrate`")
        sc = parse_scenario(m.scenario(reps[0].side_scenario("baseline")), f"{m.key} ({reps[0].path})")
        try:
            load_hardware(sc.hardware, sc.model.shape())
        except ValueError as e:
            raise ConfigError(m.key, "--analytic" if m.preset else "--profile", str(e)) from None
