"""`lorasim check`: run many random small workloads through every policy, invariants on.

Each workload is a random scenario (adapter population with mixed ranks and targets, slot
and prefetch-slot counts, arrivals poisson/gamma/burst, every adapter-choice distribution
including phased and base_fraction, lengths, chunking and token budgets, copy/host modes,
eviction order, slots or unified adapter memory, hardware knobs, policy options; `idle_cache`
runs on unified memory in every workload, every policy but slora in 30 % of them). It is simulated under EVERY registered
policy with the invariant checker on (`simulate(..., check=True)`), then the results are
checked: every request finished exactly once, arrival <= first token <= finish, ITL count =
sum(output - 1), the PCIe and compute lanes never overlap themselves, loads and bytes moved
match the copies on the PCIe lane (sum of the adapters' sizes).

Workload i of seed s is a pure function of (s, i), so a failure is reproduced by its
scenario YAML (written to the failures folder) with `lorasim run FILE --check`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from sim.core.model import ALL_TARGETS

EPS = 1e-9
MODELS = ("llama-3.1-8b", "llama-3.2-1b", "tiny")
HW = ("h200", "h100", "a100", "cpu")


# ------------------------------------------------------------------ random workloads


def random_scenario(seed: int, index: int) -> dict[str, Any]:
    """Scenario mapping of workload `index` of `seed` (small: at most ~40 requests)."""
    rng = np.random.default_rng([seed, index])

    def pick(xs):
        return xs[int(rng.integers(len(xs)))]

    def chance(p: float) -> bool:
        return bool(rng.random() < p)

    # adapter population
    if chance(0.6):
        n_adapters = int(rng.integers(1, 13))
        adapters: dict[str, Any] = {"count": n_adapters, "rank": pick([1, 4, 8, 16, 64, 128])}
        if chance(0.3):
            adapters["targets"] = _targets(rng)
    else:
        groups = []
        for _ in range(int(rng.integers(1, 4))):
            g: dict[str, Any] = {"count": int(rng.integers(1, 6)), "rank": pick([2, 8, 16, 32, 64, 256])}
            if chance(0.5):
                g["targets"] = _targets(rng)
            groups.append(g)
        adapters = {"groups": groups}
        n_adapters = sum(g["count"] for g in groups)

    # arrivals
    n_req = int(rng.integers(1, 41))
    kind = pick(["poisson", "poisson", "gamma", "gamma", "burst", "inf"])
    rate = float(np.exp(rng.uniform(np.log(0.5), np.log(500))))
    if kind == "poisson":
        arrival: dict[str, Any] = {"process": "poisson", "rate": rate}
    elif kind == "gamma":
        arrival = {"process": "gamma", "rate": rate, "cv": float(rng.uniform(0.2, 5.0))}
    elif kind == "burst":
        arrival = {"process": "burst"}
    else:
        arrival = {"process": "poisson", "rate": math.inf}

    # adapter choice
    dist = pick(["uniform", "distinct", "skewed", "zipf", "phased"])
    choice: dict[str, Any] = {"dist": dist}
    if dist == "skewed":
        choice["alpha"] = float(rng.uniform(1.05, 3.0))
    elif dist == "zipf":
        choice["s"] = float(rng.uniform(0.3, 3.0))
    elif dist == "phased":
        phases = []
        for _ in range(int(rng.integers(1, 4))):
            lo = int(rng.integers(1, n_adapters + 1))
            hi = int(rng.integers(lo, n_adapters + 1))
            phases.append({"requests": int(rng.integers(1, 15)), "adapters": [lo, hi]})
        choice["phases"] = phases
    if chance(0.35):
        choice["base_fraction"] = float(rng.uniform(0.0, 0.6))

    # lengths
    def length(hi: int) -> dict[str, Any]:
        n = int(np.exp(rng.uniform(0, np.log(hi))))
        if chance(0.3):
            return {"dist": "fixed", "len": max(1, n)}
        return {"dist": "random", "len": max(1, n), "range_ratio": float(rng.uniform(0, 1))}

    inp, out = length(3000), length(200)
    need = inp["len"] + out["len"]  # the largest KV reservation any request can make

    # serving
    mlpb = int(rng.integers(1, 7))
    serving: dict[str, Any] = {
        "max_loras_per_batch": mlpb,
        "max_loras_prefetch": int(rng.integers(0, 5)),
        "max_running_requests": int(rng.integers(1, 17)),
        "max_prefill_tokens": int(rng.integers(16, 4097)),
        "chunked_prefill_size": int(rng.integers(16, 4097)),
        "kv_cache_tokens": int(need * pick([1.0, 1.0, 1.5, 3.0, 10.0, 100.0])),
        "copy_mode": pick(["flat", "per_module"]),
        "host_mode": pick(["auto", "pinned", "pageable", "pin_per_load"]),
        "eviction": pick(["lru", "fifo"]),
    }
    if chance(0.2) and mlpb > 1:
        serving["pinned_loras"] = int(rng.integers(1, mlpb))
    if chance(0.3):
        serving["adapter_memory"] = "unified"  # idle_cache runs unified in every workload
    if chance(0.3):
        serving["max_loaded_loras"] = int(rng.integers(mlpb, max(mlpb, n_adapters) + 3))
        serving["host_reload"] = pick(["arrival", "load"])

    hardware: dict[str, Any] = {"preset": pick(HW)}
    if chance(0.3):
        hardware["contention"] = float(rng.uniform(0, 1))
    if chance(0.2):
        hardware["pin_cache"] = "cold"
    if chance(0.2):
        hardware["disk_gbps"] = float(rng.uniform(0.5, 10))
    if chance(0.2):
        hardware["copy_overhead_us"] = float(rng.uniform(0, 50))

    options: dict[str, Any] = {}
    if chance(0.3):
        options["slora"] = {"lookahead": int(rng.integers(0, 10))}
    if chance(0.3):
        options["overlap"] = {"launch_ahead": int(rng.integers(1, 5))}
    if chance(0.3):
        options["history"] = {"half_life_s": float(rng.uniform(0.01, 10)),
                              "max_predictions": int(rng.integers(0, 5))}
    if chance(0.3):
        options["idle_cache"] = {"lookahead": int(rng.integers(0, 10)),
                                 "max_inflight": int(rng.integers(1, 4)),
                                 "half_life_s": float(rng.uniform(0.01, 30))}
    if chance(0.3):
        options["lookahead"] = {"lookahead": int(rng.integers(0, 10)),
                                "max_inflight": int(rng.integers(1, 4)),
                                "wait_factor": float(rng.uniform(0, 3)),
                                "busy_wait_factor": float(rng.uniform(0, 1))}

    sc: dict[str, Any] = {
        "name": f"check-{seed}-{index}",
        "seed": int(rng.integers(0, 2**31)),
        "model": {"preset": pick(MODELS)},
        "hardware": hardware,
        "adapters": adapters,
        "workload": {
            "num_requests": n_req,
            "arrival": arrival,
            "adapter_choice": choice,
            "input_len": inp,
            "output_len": out,
        },
        "serving": serving,
    }
    if options:
        sc["policy_options"] = options
    return sc


def _targets(rng: np.random.Generator) -> list[str]:
    k = int(rng.integers(1, len(ALL_TARGETS) + 1))
    idx = sorted(rng.choice(len(ALL_TARGETS), size=k, replace=False).tolist())
    return [ALL_TARGETS[i] for i in idx]


# ------------------------------------------------------------------ checks


@dataclass
class Violation:
    index: int
    policy: str
    kind: str  # exception type or post-run check name
    message: str
    scenario: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        msg = self.message.splitlines()[0] if self.message else ""
        return f"workload {self.index} / {self.policy}: {self.kind}: {msg[:300]}"


def post_checks(trace, res) -> list[tuple[str, str]]:
    """Checks on a finished run's outputs: (check name, what was seen) per failure."""
    bad: list[tuple[str, str]] = []
    rec = res.records
    n = len(trace.requests)
    rids = rec["rid"].to_numpy()
    if len(rec) != n or len(set(rids.tolist())) != len(rids) or set(rids.tolist()) != set(range(n)):
        bad.append(("finished-once", f"{len(rec)} records for {n} requests (rids unique: "
                                     f"{len(set(rids.tolist())) == len(rids)})"))
    if rec["finish"].isna().any() or rec["first_token"].isna().any():
        bad.append(("finished-once", f"{int(rec['finish'].isna().sum())} request(s) never finished"))
    if res.summary.get("completed") != n:
        bad.append(("finished-once", f"summary completed {res.summary.get('completed')} != {n}"))
    ttft, e2e = rec["ttft"].to_numpy(float), rec["e2e"].to_numpy(float)
    if np.any(ttft < -EPS) or np.any(ttft > e2e + EPS):
        i = int(np.flatnonzero((ttft < -EPS) | (ttft > e2e + EPS))[0])
        bad.append(("ttft<=e2e", f"request {int(rids[i])}: ttft {ttft[i]} e2e {e2e[i]}"))
    adm = rec["admitted"].to_numpy(float)
    if np.any(adm < rec["arrival"].to_numpy(float) - EPS) or np.any(adm > rec["first_token"].to_numpy(float) + EPS):
        bad.append(("arrival<=admitted<=first_token", "a request was admitted out of order"))
    want_itl = int((rec["output_len"] - 1).sum())
    itl = np.asarray(res.itl if res.itl is not None else [])
    if len(itl) != want_itl:
        bad.append(("itl-count", f"{len(itl)} ITL gaps, expected sum(output-1) = {want_itl}"))
    if len(itl) and np.min(itl) < -EPS:
        bad.append(("itl-count", f"negative inter-token gap {float(np.min(itl))}"))
    tl = res.timeline
    for lane in ("pcie", "compute"):
        iv = tl[tl["lane"] == lane].sort_values(["start", "end"])[["start", "end"]].to_numpy(float)
        if len(iv) and np.any(iv[:, 1] < iv[:, 0] - EPS):
            bad.append((f"{lane}-lane", "an interval ends before it starts"))
        if len(iv) > 1:
            over = np.flatnonzero(iv[1:, 0] < iv[:-1, 1] - EPS)
            if over.size:
                k = int(over[0])
                bad.append((f"{lane}-lane", f"overlaps itself: {tuple(iv[k])} and {tuple(iv[k + 1])}"))
    pcie = tl[tl["lane"] == "pcie"]
    sizes = trace.adapter_map()
    loads = int(res.summary.get("loads", -1))
    if len(pcie) != loads:
        bad.append(("bytes-moved", f"{len(pcie)} copies on the PCIe lane, {loads} loads counted"))
    try:
        copied = sum(sizes[str(lbl)].nbytes for lbl in pcie["label"])
    except KeyError as e:
        bad.append(("bytes-moved", f"PCIe copy of unknown adapter {e}"))
    else:
        if copied != int(res.summary.get("bytes_moved", -1)):
            bad.append(("bytes-moved", f"bytes_moved {res.summary.get('bytes_moved')} != "
                                       f"{copied} = sum of the sizes of the adapters copied"))
    return bad


def check_workload(seed: int, index: int, policies: Iterable[str] | None = None) -> tuple[int, int, list[Violation]]:
    """Simulate workload (seed, index) under every policy. -> (index, runs, violations)."""
    from sim.hw import load_hardware
    from sim.policies import registry
    from sim.runner import parse_scenario, simulate
    from sim.workload import generate_trace

    d = random_scenario(seed, index)
    pols = list(policies) if policies is not None else registry.names()
    if d["serving"].get("adapter_memory") == "unified":
        pols = [p for p in pols if p != "slora"]  # refuses unified memory (it has no prefetch slots)
    out: list[Violation] = []
    try:
        sc = parse_scenario(d, f"<check workload {index}>")
        trace = generate_trace(sc)
        hw = load_hardware(sc.hardware, sc.model.shape())
    except Exception as e:  # noqa: BLE001 - the generator made something the schema refuses
        return index, 0, [Violation(index, "-", f"generator:{type(e).__name__}", str(e), d)]
    runs = 0
    for p in pols:
        runs += 1
        try:
            res = simulate(sc, p, trace=trace, hardware=hw, check=True)
        except Exception as e:  # noqa: BLE001 - every failure is a finding
            out.append(Violation(index, p, type(e).__name__, str(e), d))
            continue
        for kind, msg in post_checks(trace, res):
            out.append(Violation(index, p, kind, msg, d))
    return index, runs, out


def _chunk(args: tuple[int, list[int], list[str] | None]) -> list[tuple[int, int, list[Violation]]]:
    seed, indices, policies = args
    return [check_workload(seed, i, policies) for i in indices]


@dataclass
class CheckReport:
    workloads: int = 0
    runs: int = 0
    violations: list[Violation] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)


def run_check(n: int = 10_000, seed: int = 0, workers: int = 1, policies: list[str] | None = None,
              failures_dir: Path | None = None, keep: int = 5, progress: bool = True) -> CheckReport:
    """Check n workloads; write the scenario YAML of the first `keep` failures."""
    from tqdm import tqdm

    rep = CheckReport()
    bar = tqdm(total=n, desc="check", unit="workload", disable=not progress)
    chunk = max(1, min(50, n // max(1, workers * 8)))
    tasks = [(seed, list(range(a, min(n, a + chunk))), policies) for a in range(0, n, chunk)]
    try:
        if workers <= 1:
            results: Iterable = map(_chunk, tasks)
            ex = None
        else:
            ex = ProcessPoolExecutor(max_workers=workers)
            results = ex.map(_chunk, tasks)
        for batch in results:
            for _index, runs, viol in batch:
                rep.workloads += 1
                rep.runs += runs
                rep.violations.extend(viol)
            bar.update(len(batch))
            bar.set_postfix(violations=len(rep.violations))
        if ex is not None:
            ex.shutdown()
    finally:
        bar.close()
    if rep.violations and failures_dir is not None:
        rep.written = write_reproducers(rep.violations, failures_dir, keep)
    return rep


def write_reproducers(violations: list[Violation], folder: Path, keep: int = 5) -> list[Path]:
    """Scenario YAML of the first `keep` failing (workload, policy) pairs, written atomically."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    seen: set[tuple[int, str]] = set()
    for v in violations:
        key = (v.index, v.policy)
        if key in seen or not v.scenario:
            continue
        seen.add(key)
        if len(paths) >= keep:
            break
        d = dict(v.scenario)
        if v.policy != "-":
            d["policies"] = [v.policy]
        path = folder / f"workload{v.index:06d}_{v.policy.strip('-') or 'generator'}.yaml"
        head = (
            f"# lorasim check failure: {v.kind}\n# {v.message.splitlines()[0][:500] if v.message else ''}\n"
            f"# reproduce: lorasim run {path.name} --check\n"
        )
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(head + yaml.safe_dump(d, sort_keys=False))
        os.replace(tmp, path)
        paths.append(path)
    return paths


# ------------------------------------------------------------------ CLI


def check(
    n: Annotated[int, typer.Option("--n", help="random workloads to check")] = 10_000,
    seed: Annotated[int, typer.Option(help="seed of the workload generator")] = 0,
    workers: Annotated[int, typer.Option(help="worker processes (1 = in this process)")] = os.cpu_count() or 1,
    out: Annotated[Path, typer.Option(help="folder for reproducer scenario YAMLs of failures")] = Path("check-failures"),
    policy: Annotated[list[str] | None, typer.Option("--policy", "-p", help="only these policies (default: every registered one)")] = None,
    keep: Annotated[int, typer.Option(help="reproducers to write")] = 5,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Run N random small workloads through every policy with invariants checked; exit 1 on any violation."""
    from sim.errors import LorasimError
    from sim.policies import registry

    if n < 1 or workers < 1 or keep < 0:
        raise LorasimError(f"need --n >= 1, --workers >= 1, --keep >= 0 (got {n}, {workers}, {keep})")
    for p in policy or []:
        try:
            registry.check_name(p)
        except ValueError as e:
            raise LorasimError(f"--policy: {e}") from None
    pols = list(policy) if policy else registry.names()
    rep = run_check(n, seed, workers, pols, out, keep, progress)
    typer.echo(f"workloads checked: {rep.workloads}")
    typer.echo(f"runs: {rep.runs} ({len(pols)} policies: {', '.join(pols)})")
    typer.echo(f"violations: {len(rep.violations)}")
    if rep.violations:
        for v in rep.violations[:10]:
            typer.echo(f"  {v.line()}")
        if len(rep.violations) > 10:
            typer.echo(f"  ... and {len(rep.violations) - 10} more")
        if rep.written:
            typer.echo(f"reproducers: {', '.join(str(p) for p in rep.written)}")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `lorasim check` to the typer app."""
    app.command("check")(check)
