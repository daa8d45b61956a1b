"""Scenario files: the YAML schema, validated with pydantic, errors naming file and key.

A scenario is one trace (model, adapters, workload) on one server (serving knobs, hardware)
run under one or more policies. Sweeps (experiments/) build scenarios by overriding keys.

This layer sits above the core and below the policies' registry: it never imports the
policies. Checks that need the registry (policy names) are handed in by the caller
(`check_policy`); `sim.runner.load_scenario` / `parse_scenario` hand in the registry's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sim.core.model import ALL_TARGETS, ModelShape
from sim.core.serving import ServingKnobs
from sim.errors import ConfigError

MODEL_PRESETS: dict[str, ModelShape] = {
    "llama-3.1-8b": ModelShape(),
    "llama-3.1-70b": ModelShape(
        name="llama-3.1-70b", hidden=8192, intermediate=28672, layers=80, heads=64, kv_heads=8
    ),
    "llama-3.2-1b": ModelShape(
        name="llama-3.2-1b", hidden=2048, intermediate=8192, layers=16, heads=32, kv_heads=8
    ),
    # for CPU tests of the GPU harness
    "tiny": ModelShape(
        name="tiny", hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, vocab=256, dtype_bytes=4
    ),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelCfg(_Strict):
    """A preset name plus optional overrides of any shape field."""

    preset: str = "llama-3.1-8b"
    hidden: int | None = Field(None, gt=0)
    intermediate: int | None = Field(None, gt=0)
    layers: int | None = Field(None, gt=0)
    heads: int | None = Field(None, gt=0)
    kv_heads: int | None = Field(None, gt=0)
    vocab: int | None = Field(None, gt=0)
    dtype_bytes: int | None = Field(None, gt=0)

    @field_validator("preset")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in MODEL_PRESETS:
            raise ValueError(f"unknown model preset {v!r}; expected one of {sorted(MODEL_PRESETS)}")
        return v

    def shape(self) -> ModelShape:
        base = MODEL_PRESETS[self.preset]
        over = {k: v for k, v in self.model_dump().items() if k != "preset" and v is not None}
        if not over:
            return base
        return ModelShape(**{**base.__dict__, **over, "name": f"{base.name}*"})


class HardwareCfg(_Strict):
    """Analytic GPU/PCIe spec (defaults: H200, PCIe Gen5 x16, DESIGN §6/§8), or a measured
    profile YAML written by `lorasim calibrate` (its tables override the analytic model)."""

    preset: Literal["h200", "h100", "a100", "cpu"] = "h200"
    profile: str | None = None
    pinned_gbps: float | None = Field(None, gt=0)
    pageable_gbps: float | None = Field(None, gt=0)
    copy_overhead_us: float | None = Field(None, ge=0)
    disk_gbps: float | None = Field(None, gt=0)
    contention: float = Field(0.0, ge=0, le=1, description="compute slowdown while a side-stream copy runs")
    lora_compute_scale: float = Field(
        1.0,
        ge=0,
        description="what if: multiplies the LoRA compute of every forward, analytic or from a "
        "profile's LoRA tables (0: LoRA computes for free; 0.5: kernels twice as fast)",
    )
    lora_prefill_scale: float | None = Field(
        None,
        ge=0,
        description="what if: the same factor for prefill forwards alone (default: "
        "lora_compute_scale), to price decode and prefill LoRA kernels apart",
    )
    pin_cache: Literal["warm", "cold"] = "warm"
    host_work: Literal["scheduler", "background"] = Field(
        "scheduler",
        description="where disk reads and pin-per-load pinning run: on the scheduler's thread "
        "(SGLang, the CUDA driver: no batch is issued meanwhile) or on a background thread",
    )
    wake_us: float | None = Field(
        None,
        ge=0,
        description="time an idle scheduler takes from an arrival (or a load finishing) to forming "
        "its batch; requests arriving within it are batched together. Default: the profile's "
        "compute.wake_us if it has one, else 250 (H200 harness: 53 us median since its 50-us poll, "
        "round 9)",
    )
    launch_fraction: float | None = Field(
        None,
        ge=0,
        le=1,
        description="CPU time to launch a forward / its GPU time; the scheduler is held that "
        "long by a prefill launched ahead (default: the profile's measured value, else 0)",
    )
    forward_overhead_us: float | None = Field(
        None,
        ge=0,
        description="host time the scheduler spends preparing and launching each forward before "
        "the GPU can start it: the gap between back-to-back forwards (H200 harness: median "
        "0.39 ms; default: the profile's measured value, else 0)",
    )
    attention_ms_per_mcell: float | None = Field(
        None,
        ge=0,
        description="prefill attention per million query-key cells of the padded layout, ms "
        "(default: the profile's measured value, else 0: the prefill table as measured)",
    )
    pin_tail_fraction: float | None = Field(
        None,
        ge=0,
        le=1,
        description="fraction of pin-per-load pins that are slow by the profile's pin_tail_ms "
        "(default: the profile's measured value; 0 turns the slow-pin tail off)",
    )
    hbm_eff: float | None = Field(
        None,
        gt=0,
        le=1,
        description="analytic model only: attained fraction of the preset's HBM bandwidth in "
        "weight-read-bound forwards (decode). The presets' 0.45 is torch-eager GEMMs (DESIGN §6); "
        "~0.9 (4.3 TB/s on an H200) is what a production engine's CUDA-graphed decode reads "
        "(DESIGN §11). A measured profile's tables replace it, so it is refused with a profile",
    )


def _check_targets(v):
    if v == "all":
        return v
    if not v:
        raise ValueError("must name at least one module")
    bad = [t for t in v if t not in ALL_TARGETS]
    if bad:
        raise ValueError(f"unknown modules {bad}; expected a subset of {list(ALL_TARGETS)}")
    return v


class AdapterGroup(_Strict):
    count: int = Field(gt=0)
    rank: int = Field(64, gt=0)
    targets: list[str] | Literal["all"] = "all"

    @field_validator("targets")
    @classmethod
    def _targets(cls, v):
        return _check_targets(v)

    def target_tuple(self) -> tuple[str, ...]:
        return ALL_TARGETS if self.targets == "all" else tuple(self.targets)


class AdaptersCfg(_Strict):
    """The adapter population: `groups` of (count, rank, targets), or the shorthand
    count/rank/targets for one group. `peft_dir`: real PEFT adapters (sizes read from files)."""

    count: int | None = Field(None, gt=0)
    rank: int = Field(64, gt=0)
    targets: list[str] | Literal["all"] = "all"
    groups: list[AdapterGroup] | None = None
    peft_dir: str | None = None

    @field_validator("targets")
    @classmethod
    def _targets(cls, v):
        return _check_targets(v)

    @model_validator(mode="after")
    def _one_form(self):
        if self.groups is None and self.count is None and self.peft_dir is None:
            raise ValueError("give `count` (with rank/targets), `groups`, or `peft_dir`")
        if self.groups is not None and self.count is not None:
            raise ValueError("give either `count` or `groups`, not both")
        return self

    def group_list(self) -> list[AdapterGroup]:
        if self.groups is not None:
            return list(self.groups)
        if self.count is None:
            return []
        return [AdapterGroup(count=self.count, rank=self.rank, targets=self.targets)]


TraceFormat = Literal["lorasim", "azure", "burstgpt"]
TRACE_FORMATS: tuple[str, ...] = get_args(TraceFormat)


class ArrivalCfg(_Strict):
    """poisson(rate) | gamma(rate, cv) | burst (all at t=0) | trace(path, format, time_scale)."""

    process: Literal["poisson", "gamma", "burst", "trace"] = "poisson"
    rate: float = Field(1.0, gt=0, description="requests per second (inf allowed = burst)")
    cv: float = Field(1.0, gt=0, description="coefficient of variation of gamma inter-arrivals")
    path: str | None = None
    format: TraceFormat = Field(
        "lorasim",
        description="trace file layout: lorasim (timestamp,adapter,input_len,output_len; CSV or "
        "parquet), azure (Azure LLM inference trace CSV: TIMESTAMP,ContextTokens,GeneratedTokens), "
        "burstgpt (BurstGPT CSV: Timestamp,...,Request tokens,Response tokens,...); azure and "
        "burstgpt name no adapters: workload.adapter_choice draws them",
    )
    time_scale: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="trace arrival times (seconds from the trace's first request) are multiplied "
        "by this: 0.5 replays the trace in half the time, at twice the request rate; 2 at half",
    )

    @model_validator(mode="after")
    def _trace_path(self):
        if self.process == "trace" and not self.path:
            raise ValueError(
                f"process 'trace' needs `path` to a trace file (format: one of {', '.join(TRACE_FORMATS)})"
            )
        if self.process != "trace" and (self.format != "lorasim" or self.time_scale != 1.0):
            raise ValueError(
                f"`format` and `time_scale` apply to process 'trace' only, not {self.process!r}"
            )
        return self


class Phase(_Strict):
    requests: int = Field(gt=0)
    adapters: tuple[int, int] = Field(description="1-based inclusive adapter index range")

    @field_validator("adapters")
    @classmethod
    def _range(cls, v):
        lo, hi = v
        if lo < 1 or hi < lo:
            raise ValueError(f"expected [first, last] with 1 <= first <= last, got {list(v)}")
        return v


class ChoiceCfg(_Strict):
    """Which adapter each request names (DESIGN §3)."""

    dist: Literal["uniform", "distinct", "skewed", "zipf", "phased"] = "uniform"
    alpha: float = Field(1.5, gt=0, description="skewed: P(i) ∝ alpha^-i (alpha > 1)")
    s: float = Field(1.1, gt=0, description="zipf exponent: P(i) ∝ i^-s")
    phases: list[Phase] | None = None
    base_fraction: float = Field(0.0, ge=0, lt=1, description="share of requests for the base model")

    @model_validator(mode="after")
    def _check(self):
        if self.dist == "skewed" and self.alpha <= 1:
            raise ValueError(f"skewed needs alpha > 1 (P(i) ∝ alpha^-i), got {self.alpha}")
        if self.dist == "phased" and not self.phases:
            raise ValueError("phased needs `phases`: [{requests: N, adapters: [first, last]}, ...]")
        return self


class LengthCfg(_Strict):
    """random: uniform integer in [max(floor(len*range_ratio), 1), len] (SGLang bench); fixed."""

    dist: Literal["random", "fixed"] = "fixed"
    len: int = Field(512, gt=0)
    range_ratio: float = Field(1.0, ge=0, le=1)


class WorkloadCfg(_Strict):
    num_requests: int = Field(
        100,
        gt=0,
        description="requests to generate; an azure or burstgpt trace replays its first "
        "num_requests usable rows when this is set, else the whole file",
    )
    arrival: ArrivalCfg = ArrivalCfg()
    adapter_choice: ChoiceCfg = ChoiceCfg()
    input_len: LengthCfg = LengthCfg()
    output_len: LengthCfg = LengthCfg()


class ServingCfg(_Strict):
    """SGLang-like server knobs. GPU adapter memory = (batch + prefetch slots) x slot size."""

    max_loras_per_batch: int = Field(8, gt=0, description="GPU batch slots; base model takes one")
    max_loras_prefetch: int = Field(0, ge=0, description="extra GPU slots for prefetch (slora)")
    max_loaded_loras: int | None = Field(None, gt=0, description="host (CPU) tier capacity; None = all")
    max_running_requests: int = Field(256, gt=0)
    max_prefill_tokens: int = Field(16384, gt=0)
    chunked_prefill_size: int = Field(8192, gt=0)
    kv_cache_tokens: int = Field(400_000, gt=0)
    copy_mode: Literal["flat", "per_module"] = Field(
        "per_module", description="per_module: one copy per A/B tensor (SGLang); flat: one copy"
    )
    host_mode: Literal["auto", "pinned", "pageable", "pin_per_load"] = Field(
        "auto",
        description="auto: overlap keeps host copies pinned, blocking paths pin per load (SGLang)",
    )
    eviction: Literal["lru", "fifo"] = "lru"
    lora_drain_wait_threshold: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="SGLang's --lora-drain-wait-threshold, seconds: once every batch slot is "
        "taken by running adapters, an adapter whose request has waited longer than this makes "
        "one running adapter drain (admit only short requests until its running ones finish); "
        "0 turns the drainer off (SGLang's default)",
    )
    lora_check_first: bool = Field(
        True,
        description="SGLang's scan order (get_new_batch_prefill): a waiting request's LoRA check "
        "runs before the batch-size, token-budget and KV checks that stop the scan, so with "
        "overlap loading the scan starts loads for the requests it skips until the first one "
        "whose adapter could run (SGLang today, the default); false stops the scan at once "
        "(DESIGN §2's reading)",
    )
    lora_refused: Literal["skip", "stop"] = Field(
        "skip",
        description="what the scan does at a waiting request whose LoRA check fails (its adapter "
        "would exceed max_loras_per_batch, or the drainer refuses it): skip it and go on (SGLang "
        "since PR #14795, Dec 2025; the default); stop ends the scan there, so requests behind it "
        "wait until a running request finishes, as older SGLang's `break` did "
        "(docs/sglang_rules.md)",
    )

    pinned_loras: int = Field(
        0,
        ge=0,
        description="SGLang's pinned adapters (`pinned: true` in --lora-paths): the population's "
        "first N (with zipf or skewed use, the most used) are copied to the GPU at start-up and "
        "never evicted from it or unloaded from host RAM; each keeps its batch slot, so a batch may "
        "hold at most max_loras_per_batch - N other adapters (the base model counts); at most "
        "max_loras_per_batch - 1, as in SGLang",
    )
    host_reload: Literal["arrival", "load"] = Field(
        "arrival",
        description="when an adapter missing from the host tier (max_loaded_loras) is read from "
        "disk: arrival: a request naming it waits, before the scheduler sees it, while it is "
        "reloaded, one reload at a time, the scheduler launching nothing during the read; the "
        "least recently named adapter is unloaded once no request holds it (SGLang's "
        "tokenizer manager today); load: its GPU load reads it first (docs/sglang_rules.md)",
    )
    adapter_memory: Literal["slots", "unified"] = Field(
        "slots",
        description="slots: adapters in (batch + prefetch) max-rank slots beside a KV cache of "
        "kv_cache_tokens (SGLang); unified: KV pages and adapter weights share one byte budget of "
        "the same total, adapters cached in idle KV memory (S-LoRA, Chameleon; sim.core.memory)",
    )

    @model_validator(mode="after")
    def _host(self):
        if self.max_loaded_loras is not None and self.max_loaded_loras < self.max_loras_per_batch:
            raise ValueError(
                f"max_loaded_loras ({self.max_loaded_loras}) must be >= max_loras_per_batch "
                f"({self.max_loras_per_batch}), as in SGLang"
            )
        if self.pinned_loras > self.max_loras_per_batch - 1:
            raise ValueError(
                f"pinned_loras ({self.pinned_loras}) must be <= max_loras_per_batch - 1 "
                f"({self.max_loras_per_batch - 1}): SGLang does not let pinned adapters take every slot"
            )
        return self

    def knobs(self) -> ServingKnobs:
        """The plain values the core runs on (unified memory's sizes: `sim.runner.serving_knobs`)."""
        return ServingKnobs(**self.model_dump())


POLICY_NAMES = ("lru", "fifo", "slora", "overlap", "history", "resident", "lookahead", "zero_load", "idle_cache")


class Scenario(_Strict):
    name: str = "scenario"
    seed: int = 0
    model: ModelCfg = ModelCfg()
    hardware: HardwareCfg = HardwareCfg()
    adapters: AdaptersCfg
    workload: WorkloadCfg = WorkloadCfg()
    serving: ServingCfg = ServingCfg()
    policies: list[str] = Field(default_factory=lambda: ["lru", "slora", "overlap", "history", "resident"])
    policy_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # where it was read from (file or sweep), for errors found after validation
    _source: str | None = PrivateAttr(default=None)

    @property
    def source(self) -> str:
        return self._source or f"scenario {self.name!r}"

    @field_validator("policies")
    @classmethod
    def _policies(cls, v, info: ValidationInfo):
        if not v:
            raise ValueError("name at least one policy")
        check = (info.context or {}).get("check_policy")
        if check is not None:
            for p in v:
                check(p)
        return v


def _fmt_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def validation_error(source: str, err: ValidationError) -> ConfigError:
    """First pydantic error as a one-line ConfigError (file, dotted key, expected value)."""
    e = err.errors()[0]
    loc = _fmt_loc(tuple(p for p in e["loc"] if not str(p).startswith("function-")))
    msg = e["msg"].removeprefix("Value error, ")
    got = e.get("input")
    if e["type"] not in ("missing",) and not isinstance(got, dict):
        msg += f" (got {got!r})"
    extra = len(err.errors()) - 1
    if extra:
        msg += f" [+{extra} more error{'s' if extra > 1 else ''}]"
    return ConfigError(source, loc, msg)


PolicyCheck = Callable[[str], None]


def parse_scenario(data: Any, source: str = "<scenario>", *, check_policy: PolicyCheck | None = None) -> Scenario:
    """Validate a scenario mapping. `check_policy(name)` raises ValueError for a policy name
    it does not know (the registry's `check_name`); None leaves the names unchecked."""
    if not isinstance(data, dict):
        raise ConfigError(source, "", f"expected a mapping of scenario keys, got {type(data).__name__}")
    known = set(Scenario.model_fields)
    if data and not known & {str(k) for k in data}:
        # e.g. `:::` parses as {'::': None}: a mapping, but nothing like a scenario, and the
        # first field error ("adapters: Field required") would not say so
        got = ", ".join(repr(k) for k in list(data)[:3])
        raise ConfigError(source, "", f"not a scenario: no known key (got {got}); expected a mapping of "
                                      f"{', '.join(sorted(known))}")
    try:
        sc = Scenario.model_validate(data, context={"check_policy": check_policy})
    except ValidationError as err:
        raise validation_error(source, err) from None
    sc._source = source
    return sc


def read_yaml(path: str | Path) -> Any:
    p = Path(path)
    if not p.exists():
        raise ConfigError(str(p), "", "file not found")
    if not p.is_file():
        raise ConfigError(str(p), "", "not a file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(str(p), f"byte {e.start}", "not a UTF-8 text file (binary?)") from None
    except OSError as e:
        raise ConfigError(str(p), "", f"cannot read: {e.strerror or e}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        pos = getattr(e, "position", None)  # reader errors: bad characters
        where = f"line {mark.line + 1}" if mark else (f"character {pos}" if pos is not None else "")
        what = getattr(e, "problem", None) or getattr(e, "reason", None) or str(e)
        raise ConfigError(str(p), where, f"not valid YAML: {' '.join(str(what).split())}") from None
    except RecursionError:
        raise ConfigError(str(p), "", "not valid YAML: nested too deeply") from None


def load_scenario(path: str | Path, *, check_policy: PolicyCheck | None = None) -> Scenario:
    """Read and validate a scenario YAML; relative paths inside it resolve against its folder."""
    data = read_yaml(path)
    sc = parse_scenario(data, str(path), check_policy=check_policy)
    return resolve_paths(sc, Path(path).parent)


def resolve_paths(sc: Scenario, base: Path) -> Scenario:
    def fix(p: str | None) -> str | None:
        if p is None or Path(p).is_absolute() or Path(p).exists():
            return p
        cand = base / p
        return str(cand) if cand.exists() else p

    upd: dict[str, Any] = {}
    if sc.workload.arrival.path:
        arr = sc.workload.arrival.model_copy(update={"path": fix(sc.workload.arrival.path)})
        upd["workload"] = sc.workload.model_copy(update={"arrival": arr})
    if sc.hardware.profile:
        upd["hardware"] = sc.hardware.model_copy(update={"profile": fix(sc.hardware.profile)})
    if sc.adapters.peft_dir:
        upd["adapters"] = sc.adapters.model_copy(update={"peft_dir": fix(sc.adapters.peft_dir)})
    return sc.model_copy(update=upd) if upd else sc


def is_burst(rate: float) -> bool:
    return math.isinf(rate)
