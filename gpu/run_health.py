"""Was the machine itself slow during a GPU run? A check of every forward against the profile.

A lent GPU is not always the same machine from one minute to the next: in round 10, two runs
ran for seconds at 1.3-3x the usual forward and copy times (prefills of 94 ms where every
other run took 23-43, 320 MB copies of 17-30 ms instead of 7.5). Such a run measures the
machine, not the policy, and one of them in a three-pass mean moved a policy's mean E2E by
15 % and made `lookahead` look worse than `overlap` on the H200.

Each forward of the run's timeline is priced as the simulator would price it (prefill: the
requests whose first token it produced; decode: the requests live across the row, at the
context each had reached), consecutive forwards are grouped into windows of
`window_s` of priced work, and a window's ratio is its GPU time over its price. A run's
`slowdown` is its slowest window's ratio over its median window's ratio, so a profile that is
a few per cent off everywhere does not count, while an episode does. Over the 144 runs of the
round-11 saturated and light tables, healthy runs stayed at or below 1.10; the degraded ones
read 1.21, 1.27 and 1.67. Torch-free: it reads recorded runs, so `lorasim validate --gpu-runs`
uses it on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gpu import DEGRADED_ABOVE  # healthy runs stay <= 1.10
from sim.config import Scenario
from sim.core.effects import Batch, BatchItem
from sim.core.model import Trace
from sim.hw.compute import ComputeModel
from sim.hw.profile import atomic_write_text

WINDOW_S = 0.5  # priced work per window: an episode of a few hundred ms still shows
_MATCH_S = 2e-3  # a prefill produced the first tokens that landed within this of its end


def _items(reqs: pd.DataFrame, ranks: dict[str, int], new_tokens, context) -> tuple[BatchItem, ...]:
    out = []
    for k, (rid, name, n, c) in enumerate(zip(reqs["rid"], reqs["adapter"], new_tokens, context, strict=True)):
        name = name if isinstance(name, str) else None
        out.append(BatchItem(int(rid), name, k, ranks.get(name, 0) if name else 0, int(n), int(c)))
    return tuple(out)


def decode_batch(records: pd.DataFrame, start: float, end: float) -> pd.DataFrame:
    """The requests of a `decode xK` row from [start, end]: past their first token at its start
    and not finished before its end, with the context each had reached (`ctx`)."""
    live = records[(records["first_token"] <= start + 1e-6) & (records["finish"] >= end - 1e-6)]
    done = ((start - live["first_token"]) / live["tpot"].clip(lower=1e-3)).round()
    return live.assign(ctx=(live["input_len"] + 1 + done).astype(int))


def forward_prices(
    records: pd.DataFrame, timeline: pd.DataFrame, compute: ComputeModel, ranks: dict[str, int]
) -> pd.DataFrame:
    """One row per compute forward of a GPU run: start, kind, steps, batch, adapters, gpu_s
    (its measured time) and model_s (the profile's price of the same batch). Forwards whose
    batch cannot be rebuilt from the records are left out."""
    rows = []
    comp = timeline[(timeline["lane"] == "compute") & timeline["kind"].isin(["prefill", "decode"])]
    for r in comp.sort_values("start").itertuples():
        if r.kind == "prefill":
            reqs = records[(records["first_token"] - r.end).abs() < _MATCH_S]
            if reqs.empty:
                continue
            batch = Batch("prefill", _items(reqs, ranks, reqs["input_len"], [0] * len(reqs)))
            steps, model_s = 1, compute.forward_time(batch)
        else:
            steps = int(str(r.label).rsplit("x", 1)[-1])
            reqs = decode_batch(records, r.start, r.end)
            if reqs.empty:
                continue
            batch = Batch("decode", _items(reqs, ranks, [1] * len(reqs), reqs["ctx"]))
            model_s = float(np.sum(compute.decode_times(batch, steps)))
        rows.append({"start": r.start, "kind": r.kind, "steps": steps, "batch": len(reqs),
                     "adapters": reqs["adapter"].nunique(), "gpu_s": r.end - r.start,
                     "model_s": model_s, "names": tuple(reqs["adapter"]),
                     "ctx": tuple(reqs["ctx"]) if "ctx" in reqs else ()})
    return pd.DataFrame(rows, columns=["start", "kind", "steps", "batch", "adapters", "gpu_s",
                                       "model_s", "names", "ctx"])


@dataclass(frozen=True)
class RunHealth:
    ratio: float  # the whole run's GPU time over its price
    slowdown: float  # slowest window's ratio over the median window's
    worst_at_s: float  # where the slowest window starts (run clock)
    windows: int

    def degraded(self, above: float = DEGRADED_ABOVE) -> bool:
        return above > 0 and self.slowdown > above


def run_health(prices: pd.DataFrame, window_s: float = WINDOW_S) -> RunHealth:
    """Window the priced forwards by `window_s` of priced work and compare the windows."""
    if prices.empty or prices["model_s"].sum() <= 0:
        return RunHealth(float("nan"), 1.0, 0.0, 0)
    done = prices["model_s"].cumsum().shift(fill_value=0.0).to_numpy()
    win = np.floor(done / window_s + 1e-9).astype(int)  # (sums of equal prices land on a bound)
    last = win.max()
    if last > 0 and prices["model_s"].to_numpy()[win == last].sum() < window_s / 2:
        win[win == last] = last - 1  # a short tail joins the window before: one slow prefill is not a stretch
    g = prices.groupby(win).agg(gpu=("gpu_s", "sum"), model=("model_s", "sum"), at=("start", "min"))
    g = g[g["model"] > 0]
    r = g["gpu"] / g["model"]
    worst = r.idxmax()
    return RunHealth(
        ratio=float(prices["gpu_s"].sum() / prices["model_s"].sum()),
        slowdown=float(r.max() / r.median()),
        worst_at_s=float(g.loc[worst, "at"]),
        windows=len(g),
    )


def check_run(
    records: pd.DataFrame, timeline: pd.DataFrame, compute: ComputeModel, ranks: dict[str, int],
    window_s: float = WINDOW_S,
) -> RunHealth:
    return run_health(forward_prices(records, timeline, compute, ranks), window_s)


class HealthLog:
    """The machine-slowdown check of every GPU run a validation compares with, which runs it
    left out, and each run's pin-per-load pins next to the simulator's: a host whose pins run
    slower than the profile's makes `lru`/`slora` slower than the simulator (round 11: a host
    with pins of 32-36 ms on average against the profile's 23 ms ran their mean E2E 3-21 %
    above it, while its forwards matched the profile)."""

    COLUMNS = ["scenario", "policy", "run", "ratio", "slowdown", "worst_at_s", "degraded", "dropped",
               "pins", "pin_median_ms", "pin_mean_ms", "pin_slow_share", "quiet_pins", "quiet_pin_median_ms",
               "issue_median_ms", "reloads", "reload_median_ms"]

    def __init__(self) -> None:
        self.rows: list[dict] = []

    @staticmethod
    def check(sc: Scenario, trace: Trace, pol: str, run: Path, compute) -> tuple[RunHealth | None, dict]:
        tl = run / f"{sc.name}.{pol}.gpu.timeline.csv"
        rec = run / f"{sc.name}.{pol}.gpu.csv"
        if not (tl.is_file() and rec.is_file()):
            return None, host_stats(pd.DataFrame(columns=["kind", "start", "end"]))
        timeline = pd.read_csv(tl)
        ranks = {a.name: a.rank for a in trace.adapters}
        return check_run(pd.read_csv(rec), timeline, compute, ranks), host_stats(timeline)

    def screen(
        self, sc: Scenario, trace: Trace, pol: str, runs: list[Path], degraded_above: float, progress=print
    ) -> list[Path]:
        """`runs` without the degraded ones (all of them if every one is degraded)."""
        from sim.hw import load_hardware

        compute = load_hardware(sc.hardware, sc.model.shape()).compute
        checked = [(d, *self.check(sc, trace, pol, d, compute)) for d in runs]
        bad = {d for d, h, _ in checked if h is not None and h.degraded(degraded_above)}
        keep = [d for d in runs if d not in bad] or list(runs)
        for d, h, pins in checked:
            dropped = d in bad and d not in keep
            self.rows.append({"scenario": sc.name, "policy": pol, "run": str(d),
                              "ratio": h.ratio if h else float("nan"),
                              "slowdown": h.slowdown if h else float("nan"),
                              "worst_at_s": h.worst_at_s if h else float("nan"),
                              "degraded": d in bad, "dropped": dropped, **pins})
            if dropped:
                progress(f"{sc.name} / {pol}: {d} left out: the machine slowed down "
                         f"({h.slowdown:.2f}x its usual pace from t={h.worst_at_s:.1f} s)")
            elif d in bad:
                progress(f"{sc.name} / {pol}: {d}: the machine slowed down ({h.slowdown:.2f}x "
                         f"its usual pace from t={h.worst_at_s:.1f} s); kept, as no other run of "
                         "this cell is usable: run it again")
        return keep

    def add_simulator(self, sc: Scenario, pol: str, timeline: pd.DataFrame) -> None:
        """The simulator's own host work for this cell, to read the GPU runs' against."""
        pins = host_stats(timeline)
        if pins["pins"] or pins["reloads"] or not pd.isna(pins["issue_median_ms"]):
            self.rows.append({"scenario": sc.name, "policy": pol, "run": "simulator", "ratio": float("nan"),
                              "slowdown": float("nan"), "worst_at_s": float("nan"), "degraded": False,
                              "dropped": False, **pins})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=self.COLUMNS)

    def notes(self) -> list[str]:
        df = self.frame()
        return [f"- left out: {r.run} {r.scenario} / {r.policy}: machine slowdown {r.slowdown:.2f}x "
                f"from t={r.worst_at_s:.1f} s (gpu.run_health)" for r in df[df["dropped"]].itertuples()]

    def write(self, out: Path) -> None:
        df = self.frame()
        atomic_write_text(out / "health.csv", df.to_csv(index=False))

        def num(v: float, fmt: str) -> str:
            return "" if pd.isna(v) else format(v, fmt)

        lines = ["| scenario | policy | run | GPU / profile | slowdown | left out | pins | pin median ms "
                 "| pin mean ms | slow pins | after quiet: pins, median ms | copy issue median ms "
                 "| host-tier reloads, median ms |",
                 "|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in df.itertuples():
            quiet = f"{r.quiet_pins}, {r.quiet_pin_median_ms:.1f}" if r.quiet_pins else "0"
            pins = (f"{r.pins} | {r.pin_median_ms:.1f} | {r.pin_mean_ms:.1f} | {100 * r.pin_slow_share:.0f} % | {quiet}"
                    if r.pins else " | | | | ")
            reloads = f"{r.reloads}, {r.reload_median_ms:.0f}" if r.reloads else ""
            lines.append(f"| {r.scenario} | {r.policy} | {r.run} | {num(r.ratio, '.3f')} | "
                         f"{num(r.slowdown, '.2f')} | {'yes' if r.dropped else ''} | {pins} | "
                         f"{num(r.issue_median_ms, '.2f')} | {reloads} |")
        lines += ["", "GPU / profile: the run's forward time over the profile's price of the same "
                  "batches. Slowdown: its slowest window of forwards (0.5 s of priced work) over its "
                  "median window; a run above the threshold is left out of the mean (gpu.run_health). "
                  "Pins: the pin-per-load pins of the run (lru, slora); the `simulator` row shows "
                  "what the profile prices. Slow pins: over 1.5 x the run's median. After quiet: "
                  f"the pins that began {QUIET_S:g} s or more after the previous pin ended. Copy issue: the "
                  "host time issuing a load's copies (runs recorded since round 11). Host-tier reloads: "
                  "adapters read from disk when a request named an unregistered one (`disk` rows of kind "
                  "`reload`), which the profile prices at `pcie.disk_gbps`."]
        atomic_write_text(out / "health.md", "\n".join(lines) + "\n")


def post_load_excess(folder: Path) -> tuple[float, np.ndarray, np.ndarray]:
    """A validate pass's scheduler time per finished pin-per-load, from its `lru` runs: the
    median gap after a prefill that follows a blocking load minus the median after other
    prefills (sim.metrics.post_load_gaps) -> (seconds, those gaps after, the others).
    ValueError, saying why, when the folder has no `lru` runs or no such prefills."""
    from sim.metrics import post_load_gaps

    files = sorted(Path(folder).glob("*.lru.gpu.timeline.csv"))
    if not files:
        raise ValueError("no *.lru.gpu.timeline.csv here; expected a `lorasim validate` pass with "
                         "`lru` (its loads block and pin per load)")
    gaps = [post_load_gaps(pd.read_csv(f)) for f in files]
    after = np.concatenate([a for a, _ in gaps])
    other = np.concatenate([o for _, o in gaps])
    if len(after) == 0 or len(other) == 0:
        raise ValueError("no prefill after a blocking load (or no other) in these runs")
    return float(np.median(after) - np.median(other)), after, other


def issue_times(timeline: pd.DataFrame) -> np.ndarray:
    """Seconds of each `host`/`issue` row: the host issuing one load's copies (both drivers
    record it since round 11)."""
    rows = timeline[timeline["kind"] == "issue"]  # only the host lane has them
    return (rows["end"] - rows["start"]).to_numpy(float)


def host_stats(timeline: pd.DataFrame) -> dict:
    """`pin_stats`, the median `issue` row (ms) and the host-tier reloads (count, median ms):
    the host work of a run's loads."""
    d = issue_times(timeline)
    r = timeline[timeline["kind"] == "reload"]
    rd = (r["end"] - r["start"]).to_numpy(float)
    return {**pin_stats(timeline), "issue_median_ms": float(np.median(d)) * 1e3 if len(d) else float("nan"),
            "reloads": len(rd), "reload_median_ms": float(np.median(rd)) * 1e3 if len(rd) else float("nan")}


QUIET_S = 1.0  # a pin this long after the previous pin ended follows quiet


def pin_stats(timeline: pd.DataFrame) -> dict:
    """Count, median and mean (ms) of a timeline's pin rows, the share over 1.5 x the median
    (sim.metrics.pin_tail's slow pins), and the count and median of the pins that follow
    `QUIET_S` of no pinning (the run's first pin left out): slow pins follow quiet (round 16;
    the H100 runs of 2026-12-06: a median of 39 ms over the runs that had such pins, 18 ms
    for all pins), which the profile's one pin cost does not price."""
    from sim.metrics import pin_tail

    pins = timeline[timeline["kind"] == "pin"].sort_values("start")
    d = (pins["end"] - pins["start"]).to_numpy(float)
    if len(d) == 0:
        return {"pins": 0, "pin_median_ms": float("nan"), "pin_mean_ms": float("nan"),
                "pin_slow_share": float("nan"), "quiet_pins": 0, "quiet_pin_median_ms": float("nan")}
    gaps = pins["start"].to_numpy(float)[1:] - pins["end"].to_numpy(float)[:-1]
    quiet = d[1:][gaps >= QUIET_S]
    return {"pins": len(d), "pin_median_ms": float(np.median(d)) * 1e3, "pin_mean_ms": float(d.mean()) * 1e3,
            "pin_slow_share": pin_tail(d)[0], "quiet_pins": len(quiet),
            "quiet_pin_median_ms": float(np.median(quiet)) * 1e3 if len(quiet) else float("nan")}


@dataclass(frozen=True)
class NoiseStats:
    """Run-to-run variation measured from validation runs (sim.hw.noise)."""

    speed_sd: float  # sd of log(run's forward time / the profile's price) between runs
    runs: int
    issue_sd: float  # sd of log(a load's issue time / its run's median), pooled
    loads: int


def pin_speed(health: pd.DataFrame) -> tuple[float, int]:
    """From health.csv rows: the median, over GPU runs with pin-per-load pins, of the run's median
    pin over the simulator's for the same cell -> (that factor, runs). The host's pin speed
    against the profile the rows were simulated with (`calibrate --pin-speed-from`). ValueError
    when no GPU run has pins beside a simulator row."""
    h = health[health["pins"].fillna(0) > 0]
    sim = h[h["run"] == "simulator"].set_index(["scenario", "policy"])["pin_median_ms"]
    ratios = [
        r["pin_median_ms"] / base
        for _, r in h[h["run"] != "simulator"].iterrows()
        if (base := sim.get((r["scenario"], r["policy"]))) is not None and base > 0
    ]
    if not ratios:
        raise ValueError("no GPU run with pins beside a simulator row in these health.csv files; "
                         "expected runs of a pin-per-load policy (lru, slora)")
    return float(np.median(ratios)), len(ratios)


def measure_noise(health: pd.DataFrame) -> NoiseStats:
    """From health.csv rows (`lorasim validate` writes them; a `--gpu-runs` re-simulation lists
    every pass): the spread of the runs' GPU/profile ratio, degraded runs left out (an
    episode of the machine, not its usual spread), and of each run's load issue times around
    the run's own median (its `issue` rows). Needs at least two runs."""
    degraded = health["degraded"].astype(str).str.lower() == "true"
    g = health[(health["run"] != "simulator") & ~degraded].dropna(subset=["ratio"])
    if len(g) < 2:
        raise ValueError(f"{len(g)} healthy GPU run(s) listed; the spread needs at least two")
    speed = float(np.log(g["ratio"].to_numpy(float)).std(ddof=1))
    logs: list[float] = []
    for r in g.itertuples():
        tl = Path(str(r.run)) / f"{r.scenario}.{r.policy}.gpu.timeline.csv"
        if not tl.is_file():
            continue
        d = issue_times(pd.read_csv(tl))
        d = d[d > 0]
        if len(d) >= 2:
            logs.extend(np.log(d / np.median(d)))
    issue = float(np.std(logs, ddof=1)) if len(logs) >= 2 else 0.0
    return NoiseStats(speed, len(g), issue, len(logs))
