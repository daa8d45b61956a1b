"""Sweep files -> a validated grid of runs (scenario, policy), each named by a content hash.

A sweep YAML is a base scenario plus `axes` of dotted keys to vary. Every run is validated
up front with the scenario schema, so a typo in an axis fails before any run starts, with an
error naming the sweep file and the axis. The run id hashes the run's scenario and policy,
so resuming a sweep (or growing its grid) recomputes only runs not already stored.

    name: demo                       # optional; default: file stem
    base_file: ../scenarios/x.yaml   # or `base: {...}` inline (relative to this file)
    policies: [lru, slora, overlap]  # or an axis `policy: [...]`
    equal_memory: {adapter_slots: 16, prefetch_share: 0.5}
    repeats: 2                       # seeds base.seed + 0, + 1
    axes:
      name: [uniform, zipf]                               # labels the workload groups
      workload.adapter_choice: [{dist: uniform}, {dist: zipf, s: 1.5}]
      workload.arrival.rate: [2, 4]
    zip: [[name, workload.adapter_choice]]                # varied together, not crossed

An axis value replaces the whole value at its key (a mapping is not merged).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from experiments.slots import equal_memory_slots
from sim.config import Scenario, read_yaml, resolve_paths, validation_error
from sim.errors import ConfigError
from sim.revision import file_digest, model_revision
from sim.runner import parse_scenario

POLICY_AXIS = "policy"
NAME_AXIS = "name"
EM_PREFIX = "equal_memory."
SLOT_KEYS = ("serving.max_loras_per_batch", "serving.max_loras_prefetch")


class EqualMemory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    adapter_slots: int = Field(16, ge=1, description="GPU adapter slots every policy gets in total")
    prefetch_share: float = Field(0.5, ge=0, lt=1, description="share of them a prefetching policy reserves")


class SweepFile(BaseModel):
    """The sweep YAML itself (extra keys are errors, so typos surface)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str = ""
    base: dict[str, Any] | None = None
    base_file: str | None = None
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    zip: list[list[str]] = Field(default_factory=list)
    repeats: int = Field(1, ge=1)
    policies: list[str] | None = None
    equal_memory: EqualMemory | None = None

    @field_validator("axes")
    @classmethod
    def _nonempty(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for k, vals in v.items():
            if not vals:
                raise ValueError(f"axis {k!r} has no values; expected a non-empty list")
        return v


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid. `params` holds the axis values that define it (for tables)."""

    run_id: str
    policy: str
    scenario: Scenario
    params: dict[str, Any]
    group: str  # label of its workload/scenario group: the axis values other than policy/repeat
    repeat: int = 0


@dataclass
class Sweep:
    name: str
    source: str
    description: str
    axes: dict[str, list[Any]]
    policies: list[str]
    repeats: int
    equal_memory: dict[str, Any] | None
    runs: list[RunSpec] = field(default_factory=list)
    label_keys: list[str] = field(default_factory=list)  # axis keys that make up group labels

    def manifest(self) -> dict[str, Any]:
        """JSON-safe description kept next to the results (report header, plot axes)."""
        return {
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "axes": {k: [_jsonable(x) for x in v] for k, v in self.axes.items()},
            "policies": self.policies,
            "repeats": self.repeats,
            "equal_memory": self.equal_memory,
            "label_keys": self.label_keys,
            "runs": [
                {"run_id": r.run_id, "policy": r.policy, "group": r.group, "repeat": r.repeat,
                 "params": {k: _jsonable(v) for k, v in r.params.items()}}
                for r in self.runs
            ],
            "base": _scenario_brief(self.runs[0].scenario) if self.runs else {},
        }


def _jsonable(v: Any) -> Any:
    return v if isinstance(v, str | int | float | bool | type(None)) else json.loads(json.dumps(v, default=str))


def _scenario_brief(sc: Scenario) -> dict[str, Any]:
    groups = sc.adapters.group_list()
    return {
        "model": sc.model.preset,
        "hardware": sc.hardware.preset,
        "adapters": [{"count": g.count, "rank": g.rank, "targets": g.targets} for g in groups],
        "num_requests": sc.workload.num_requests,
        "arrival": sc.workload.arrival.process,
        "rate": sc.workload.arrival.rate,
    }


def run_id_of(scenario: dict[str, Any], policy: str) -> str:
    """Short hash of the canonical JSON of (scenario dict, policy), the simulator's code
    revision and the bytes of the hardware profile it reads: a resumed sweep reuses a stored
    run only if the same model would compute it again."""
    hw = scenario.get("hardware")
    profile = hw.get("profile") if isinstance(hw, dict) else None
    key = [scenario, policy, model_revision(), file_digest(profile) if profile else None]
    blob = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    """d['a']['b']['c'] = value for key 'a.b.c', creating missing mappings."""
    parts = key.split(".")
    cur = d
    for i, p in enumerate(parts[:-1]):
        nxt = cur.get(p)
        if nxt is None:
            nxt = cur[p] = {}
        if not isinstance(nxt, dict):
            where = ".".join(parts[: i + 1])
            raise ValueError(f"{where!r} is a {type(nxt).__name__}, not a mapping, so it has no key {parts[i + 1]!r}")
        cur = nxt
    cur[parts[-1]] = copy.deepcopy(value)


def load_sweep(path: str | Path) -> Sweep:
    """Read a sweep YAML and expand it into validated runs."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", f"expected a mapping with base/axes/policies, got {type(data).__name__}")
    known = set(SweepFile.model_fields)
    if data and not known & {str(k) for k in data}:
        got = ", ".join(repr(k) for k in list(data)[:3])
        raise ConfigError(str(path), "", f"not a sweep: no known key (got {got}); expected a mapping of "
                                         f"{', '.join(sorted(known))}")
    return build_sweep(data, source=str(path), root=path.parent, default_name=path.stem)


def build_sweep(data: dict[str, Any], source: str = "<sweep>", root: Path | None = None,
                default_name: str = "sweep") -> Sweep:
    """Expand a sweep mapping (already read) into runs; `root` resolves base_file and paths."""
    root = root or Path(".")
    try:
        sf = SweepFile.model_validate(data)
    except ValidationError as err:
        raise validation_error(source, err) from None
    base, base_source, base_dir = _base(sf, source, root)
    policies = _policies(sf, base, source)
    dims = _dims(sf, policies, source)
    em = sf.equal_memory.model_dump() if sf.equal_memory else None
    _check_em_axes(sf, em, source)
    label_keys = _label_keys(sf)

    runs: list[RunSpec] = []
    seen: set[str] = set()
    for combo in itertools.product(*dims):
        assign: dict[str, Any] = {}
        for part in combo:
            assign.update(part)
        spec = _make_run(assign, base, em, sf, source, base_source, base_dir, label_keys)
        if spec.run_id not in seen:
            seen.add(spec.run_id)
            runs.append(spec)
    return Sweep(
        name=sf.name or default_name,
        source=source,
        description=sf.description,
        axes=dict(sf.axes),
        policies=policies,
        repeats=sf.repeats,
        equal_memory=em,
        runs=runs,
        label_keys=label_keys,
    )


def _base(sf: SweepFile, source: str, root: Path) -> tuple[dict[str, Any], str, Path]:
    if (sf.base is None) == (sf.base_file is None):
        raise ConfigError(source, "base", "give exactly one of `base` (a scenario mapping) or `base_file` (a path)")
    if sf.base is not None:
        return copy.deepcopy(sf.base), source, root
    bpath = Path(sf.base_file)
    if not bpath.is_absolute():
        bpath = root / bpath
    if not bpath.exists():
        raise ConfigError(source, "base_file", f"file not found: {bpath}")
    data = read_yaml(bpath)
    if not isinstance(data, dict):
        raise ConfigError(str(bpath), "", "expected a scenario mapping")
    return data, str(bpath), bpath.parent


def _policies(sf: SweepFile, base: dict[str, Any], source: str) -> list[str]:
    if POLICY_AXIS in sf.axes:
        if sf.policies is not None:
            raise ConfigError(source, "policies", "give policies either as `policies:` or as the axis `policy`, not both")
        return [str(p) for p in sf.axes[POLICY_AXIS]]
    if sf.policies is not None:
        if not sf.policies:
            raise ConfigError(source, "policies", "expected a non-empty list of policy names")
        return list(sf.policies)
    if base.get("policies"):
        return list(base["policies"])
    return list(Scenario.model_fields["policies"].default_factory())


def _dims(sf: SweepFile, policies: list[str], source: str) -> list[list[dict[str, Any]]]:
    """Grid dimensions, in axis order; a zip group is one dimension; policy innermost."""
    group_of: dict[str, int] = {}
    for gi, group in enumerate(sf.zip):
        if len(group) < 2:
            raise ConfigError(source, f"zip[{gi}]", f"a zip group needs at least two axis keys, got {group}")
        for k in group:
            if k not in sf.axes:
                raise ConfigError(source, f"zip[{gi}]", f"{k!r} is not an axis; expected one of {list(sf.axes)}")
            if k in group_of:
                raise ConfigError(source, f"zip[{gi}]", f"{k!r} is already in zip group {group_of[k]}")
            group_of[k] = gi
        lengths = {k: len(sf.axes[k]) for k in group}
        if len(set(lengths.values())) > 1:
            raise ConfigError(source, f"zip[{gi}]", f"zipped axes need equal lengths, got {lengths}")

    dims: list[list[dict[str, Any]]] = []
    done: set[int] = set()
    policy_zipped = POLICY_AXIS in group_of
    for key, values in sf.axes.items():
        if key in group_of:
            gi = group_of[key]
            if gi in done:
                continue
            done.add(gi)
            group = sf.zip[gi]
            dims.append([{k: sf.axes[k][i] for k in group} for i in range(len(sf.axes[group[0]]))])
        elif key != POLICY_AXIS:
            dims.append([{key: v} for v in values])
    dims.append([{"repeat": i} for i in range(sf.repeats)])
    if not policy_zipped:
        dims.append([{POLICY_AXIS: p} for p in policies])
    return dims


def _check_em_axes(sf: SweepFile, em: dict[str, Any] | None, source: str) -> None:
    for k in sf.axes:
        if k.startswith(EM_PREFIX):
            if em is None:
                raise ConfigError(source, f"axes.{k}", "an equal_memory axis needs an `equal_memory:` block")
            sub = k.removeprefix(EM_PREFIX)
            if sub not in EqualMemory.model_fields:
                raise ConfigError(source, f"axes.{k}", f"expected one of {[EM_PREFIX + f for f in EqualMemory.model_fields]}")
        if em is not None and k in SLOT_KEYS:
            raise ConfigError(source, f"axes.{k}",
                              "equal_memory derives the slot counts per policy; vary equal_memory.adapter_slots instead")


def _label_keys(sf: SweepFile) -> list[str]:
    """Axis keys that name a workload group: all but policy; a `name` axis stands for its zip;
    keys zipped with `policy` are settings of the policy, not of the workload."""
    described: set[str] = set()
    for group in sf.zip:
        if NAME_AXIS in group:
            described.update(k for k in group if k != NAME_AXIS)
        if POLICY_AXIS in group:
            described.update(group)
    return [k for k in sf.axes if k != POLICY_AXIS and k not in described]


def short_value(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str, separators=(",", ":"))
    return s if len(s) <= 40 else s[:37] + "..."


def group_label(params: dict[str, Any], keys: list[str]) -> str:
    if not keys:
        return "all"
    if keys == [NAME_AXIS]:
        return str(params[NAME_AXIS])
    lasts = [k.split(".")[-1] for k in keys]
    parts = []
    for k, last in zip(keys, lasts, strict=True):
        if k == NAME_AXIS:
            parts.append(str(params[k]))
        else:
            parts.append(f"{last if lasts.count(last) == 1 else k}={short_value(params[k])}")
    return ", ".join(parts)


def _make_run(assign: dict[str, Any], base: dict[str, Any], em: dict[str, Any] | None, sf: SweepFile,
              source: str, base_source: str, base_dir: Path, label_keys: list[str]) -> RunSpec:
    policy = str(assign[POLICY_AXIS])
    repeat = int(assign["repeat"])
    d = copy.deepcopy(base)
    d.pop("policies", None)
    em_run = dict(em) if em else None
    for key, val in assign.items():
        if key in (POLICY_AXIS, "repeat"):
            continue
        if key.startswith(EM_PREFIX):
            em_run[key.removeprefix(EM_PREFIX)] = val
            continue
        try:
            set_dotted(d, key, val)
        except ValueError as e:
            raise ConfigError(source, f"axes.{key}", str(e)) from None
    d["seed"] = int(d.get("seed", 0) or 0) + repeat
    if em_run is not None:
        try:
            em_cfg = EqualMemory.model_validate(em_run)
            batch, prefetch = equal_memory_slots(policy, em_cfg.adapter_slots, em_cfg.prefetch_share)
        except (ValidationError, ValueError) as e:
            msg = e.errors()[0]["msg"] if isinstance(e, ValidationError) else str(e)
            raise ConfigError(source, "equal_memory", f"{msg} (policy {policy!r})") from None
        serving = d.setdefault("serving", {})
        if not isinstance(serving, dict):
            raise ConfigError(base_source, "serving", "expected a mapping")
        serving["max_loras_per_batch"], serving["max_loras_prefetch"] = batch, prefetch
    d["policies"] = [policy]

    try:
        scenario = parse_scenario(d, source)
    except ConfigError as e:
        raise _blame(e, assign, em_run is not None, POLICY_AXIS in sf.axes, source, base_source) from None
    scenario = resolve_paths(scenario, base_dir)

    params = {k: v for k, v in assign.items() if k != "repeat"}
    params["seed"] = d["seed"]
    return RunSpec(
        run_id=run_id_of(d, policy),
        policy=policy,
        scenario=scenario,
        params=params,
        group=group_label(params, label_keys),
        repeat=repeat,
    )


def _blame(e: ConfigError, assign: dict[str, Any], em: bool, policy_axis: bool, source: str,
           base_source: str) -> ConfigError:
    """Name the axis (or base key) a validation error comes from."""
    loc = e.key
    head = loc.split("[")[0]
    if head == "policies":
        return ConfigError(source, "axes.policy" if policy_axis else "policies", e.message)
    for k, v in assign.items():
        if k in (POLICY_AXIS, "repeat"):
            continue
        if head == k or head.startswith(k + ".") or k.startswith(head + "."):
            return ConfigError(source, f"axes.{k}", f"value {short_value(v)}: {loc}: {e.message}")
    if em and head.startswith("serving"):
        return ConfigError(source, "equal_memory", f"{loc}: {e.message} (policy {assign[POLICY_AXIS]!r})")
    return ConfigError(base_source, f"base.{loc}" if base_source == source else loc, e.message)
