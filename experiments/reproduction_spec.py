"""Reproduction files (configs/reproductions/*.yaml): a published run as data.

A reproduction names its source, the scenario it ran (inline or a scenario file), the
baseline and the feature (a policy plus scenario keys each), the numbers the source
published for both, and optional what-if variants. The published numbers live only in these
files, so `lorasim reproduce` never carries a result in code. Errors name the file, the key
and what was expected, in one line.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from experiments.sweep import set_dotted
from sim.config import read_yaml, validation_error
from sim.errors import ConfigError

# metric key -> how the doc names it (summary keys of sim.metrics.summarize, plus e2e_max_ms)
METRICS: dict[str, str] = {
    "ttft_mean_ms": "mean TTFT",
    "ttft_median_ms": "median TTFT",
    "ttft_p99_ms": "P99 TTFT",
    "e2e_mean_ms": "mean E2E",
    "e2e_median_ms": "median E2E",
    "e2e_max_ms": "last request done",
    "tpot_median_ms": "median TPOT",
    "tpot_mean_ms": "mean TPOT",
    "itl_median_ms": "median ITL",
}
SIDES = ("baseline", "feature")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceCfg(_Strict):
    url: str = Field(min_length=1)
    where: str = Field(min_length=1, description="where in the source the numbers are")
    setup: list[str] = Field(default_factory=list, description="each setting, and where it was found")


class SideCfg(_Strict):
    label: str = Field(min_length=1)
    policy: str = Field(min_length=1)
    set: dict[str, Any] = Field(default_factory=dict, description="scenario keys (dotted) for this side")


def _check_metrics(v: dict[str, float]) -> dict[str, float]:
    if not v:
        raise ValueError(f"give at least one metric; expected keys among {sorted(METRICS)}")
    bad = sorted(set(v) - set(METRICS))
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; expected keys among {sorted(METRICS)}")
    for k, x in v.items():
        if x <= 0:
            raise ValueError(f"{k} is {x}; a published latency must be > 0")
    return v


class PublishedCfg(_Strict):
    baseline: dict[str, float]
    feature: dict[str, float]

    @field_validator("baseline", "feature")
    @classmethod
    def _metrics(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_metrics(v)

    @model_validator(mode="after")
    def _same_metrics(self):
        if set(self.baseline) != set(self.feature):
            raise ValueError(f"baseline and feature must report the same metrics; got "
                             f"{sorted(self.baseline)} and {sorted(self.feature)}")
        return self


class VariantCfg(_Strict):
    name: str = Field(min_length=1)
    why: str = Field(min_length=1)
    set: dict[str, Any] = Field(min_length=1, description="dotted keys; `key@baseline` / `key@feature` for one side")
    models: Literal["analytic", "measured"] = Field(
        "analytic", description="GPU models it runs on: the analytic one, or every measured profile"
    )

    @field_validator("set")
    @classmethod
    def _sides(cls, v: dict[str, Any]) -> dict[str, Any]:
        for k in v:
            if "@" in k and k.rsplit("@", 1)[1] not in SIDES:
                raise ValueError(f"{k!r}: a side suffix must be @baseline or @feature")
        return v


class StatedCosts(_Strict):
    """Costs the source states for its example (a fixed-cost GPU), in milliseconds."""

    load_ms: float = Field(gt=0)
    prefill_ms: float = Field(gt=0)
    decode_ms: float = Field(gt=0)


class ReproductionFile(_Strict):
    name: str = Field(min_length=1)
    title: str = Field(min_length=1)
    source: SourceCfg
    scenario: dict[str, Any] | None = None
    scenario_file: str | None = None
    baseline: SideCfg
    feature: SideCfg
    published: PublishedCfg
    stated_costs: StatedCosts | None = None
    variants: list[VariantCfg] = Field(default_factory=list)
    findings: list[str] = Field(default_factory=list)
    missing: dict[str, str] = Field(
        default_factory=dict,
        description="metric (`metric@analytic` / `metric@measured` for one kind of GPU model) -> the "
        "mechanism a miss on it lacks, as a variant or a run measured it; shown beside the miss",
    )

    @model_validator(mode="after")
    def _one_scenario(self):
        if (self.scenario is None) == (self.scenario_file is None):
            raise ValueError("give exactly one of `scenario` (a mapping) or `scenario_file` (a path)")
        return self

    @model_validator(mode="after")
    def _missing_keys(self):
        for k, text in self.missing.items():
            metric, _, kind = k.partition("@")
            if metric not in self.published.baseline:
                raise ValueError(f"missing: {k!r} names no published metric; expected one of "
                                 f"{sorted(self.published.baseline)}")
            if kind not in ("", "analytic", "measured"):
                raise ValueError(f"missing: {k!r}: a suffix must be @analytic or @measured")
            if not text.strip():
                raise ValueError(f"missing: {k!r} is empty; say which mechanism is missing")
        return self

    def missing_for(self, metric: str, kind: str) -> str | None:
        """What a miss on `metric` lacks under a GPU model of `kind` ("analytic" | "measured")."""
        return self.missing.get(f"{metric}@{kind}") or self.missing.get(metric)


@dataclass(frozen=True)
class Reproduction:
    """A validated reproduction: the raw scenario mapping plus everything around it."""

    path: Path
    spec: ReproductionFile
    scenario: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def side_scenario(self, side: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The scenario mapping of one side: base <- the side's keys <- a variant's keys."""
        sc = copy.deepcopy(self.scenario)
        cfg: SideCfg = getattr(self.spec, side)
        for key, value in {**cfg.set, **_for_side(extra or {}, side)}.items():
            set_dotted(sc, key, value)
        sc["policies"] = [cfg.policy]
        return sc


def _for_side(keys: dict[str, Any], side: str) -> dict[str, Any]:
    """A variant's keys for one side: plain keys apply to both, `key@side` to that side."""
    out = {k: v for k, v in keys.items() if "@" not in k}
    out.update({k.rsplit("@", 1)[0]: v for k, v in keys.items() if k.endswith(f"@{side}")})
    return out


def load_reproduction(path: str | Path) -> Reproduction:
    """Read and validate one reproduction file, its scenario and every side's scenario."""
    from sim.runner import parse_scenario

    path = Path(path)
    data = read_yaml(path)
    src = str(path)
    if not isinstance(data, dict):
        raise ConfigError(src, "", f"expected a mapping of reproduction keys, got {type(data).__name__}")
    try:
        spec = ReproductionFile.model_validate(data)
    except ValidationError as err:
        raise validation_error(src, err) from None
    if spec.scenario is not None:
        scenario = copy.deepcopy(spec.scenario)
    else:
        sfile = path.parent / spec.scenario_file
        if not sfile.is_file():
            raise ConfigError(src, "scenario_file", f"file not found: {sfile}")
        scenario = read_yaml(sfile)
        if not isinstance(scenario, dict):
            raise ConfigError(str(sfile), "", "expected a scenario mapping")
    rep = Reproduction(path, spec, scenario)
    runs = [(s, None, s) for s in SIDES]
    runs += [(s, v.set, f"variants[{i}] ({v.name}), {s}") for i, v in enumerate(spec.variants) for s in SIDES]
    for side, extra, where in runs:
        try:
            data = rep.side_scenario(side, extra)
        except ValueError as e:  # a dotted key through a non-mapping
            raise ConfigError(src, where, str(e)) from None
        parse_scenario(data, f"{src}: {where}")  # names the scenario key that is wrong
    return rep


def load_reproductions(target: str | Path) -> list[Reproduction]:
    """Every reproduction file of a folder (sorted by name), or the one file given."""
    target = Path(target)
    if target.is_dir():
        files = sorted(target.glob("*.yaml"))
        if not files:
            raise ConfigError(str(target), "", "no reproduction files (*.yaml) in this folder")
    elif target.is_file():
        files = [target]
    else:
        raise ConfigError(str(target), "", "not found; expected a reproduction YAML or a folder of them")
    reps = [load_reproduction(f) for f in files]
    seen: dict[str, Path] = {}
    for r in reps:
        if r.name in seen:
            raise ConfigError(str(r.path), "name", f"{r.name!r} is also the name of {seen[r.name]}; names must differ")
        seen[r.name] = r.path
    return reps
