"""`lorasim bench-scale`: simulator time and peak memory from 10k to 1M requests (issue #29).

Each point runs in a fresh process (spawned), so its peak RSS is its own and not the high-water
mark of an earlier, larger run. The trace is the `lorasim bench` Poisson trace (zipf over 64
adapters, 512-token outputs, 10 req/s) at each size. Points are appended to `scaling.csv` as
they finish and skipped when already there, so an interrupted run resumes; `scaling.png`
plots seconds against requests (log-log, with a line through the origin fitted to the
largest size: a point on it means time grows linearly).
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from experiments.store import atomic_write

SIZES = (10_000, 30_000, 100_000, 300_000, 1_000_000)
POLICIES = ("lru", "overlap", "slora", "lookahead")
COLUMNS = ["policy", "requests", "seconds", "requests_per_s", "peak_rss_mb", "completed"]
# issue #29's targets at 1M requests on the 2-core machine: seconds per policy, and peak RSS
TARGET_S = {"lru": 60.0, "overlap": 60.0, "slora": 60.0, "lookahead": 120.0}
TARGET_RSS_MB = 2048.0
TARGET_REQUESTS = 1_000_000


def _point(policy: str, requests: int, q) -> None:
    """In a child: generate, simulate, report (seconds simulating, peak RSS MB, completed)."""
    from sim.bench import large_scenario
    from sim.hw import load_hardware
    from sim.runner import simulate
    from sim.workload import generate_trace

    sc = large_scenario(requests)
    trace = generate_trace(sc)
    hw = load_hardware(sc.hardware, sc.model.shape())
    t0 = time.perf_counter()
    res = simulate(sc, policy, trace=trace, hardware=hw)
    dt = time.perf_counter() - t0
    q.put((dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, int(res.summary["completed"])))


def measure(policy: str, requests: int) -> dict:
    """One point in a fresh process: the simulate() call's seconds and the process's peak RSS."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_point, args=(policy, requests, q))
    p.start()
    while True:  # a child that dies (out of memory, killed) puts nothing: don't wait for ever
        try:
            dt, rss, done = q.get(timeout=5)
            break
        except queue.Empty:
            if not p.is_alive():
                raise RuntimeError(f"{policy} at {requests:,d} requests: the run's process exited "
                                   f"with code {p.exitcode} before reporting") from None
    p.join()
    return {"policy": policy, "requests": requests, "seconds": dt, "requests_per_s": requests / dt,
            "peak_rss_mb": rss, "completed": done}


def plan(sizes: Sequence[int], policies: Sequence[str]) -> list[tuple[str, int]]:
    """lru at every size (the scaling curve); the other policies at the largest size only."""
    first = [(policies[0], n) for n in sizes]
    return first + [(p, max(sizes)) for p in policies[1:]]


def run_scaling(out: Path, sizes: Sequence[int] = SIZES, policies: Sequence[str] = POLICIES,
                echo: Callable[[str], None] = print) -> pd.DataFrame:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "scaling.csv"
    df = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=COLUMNS)
    done = set(zip(df["policy"], df["requests"], strict=True))
    for policy, n in plan(sizes, policies):
        if (policy, n) in done:
            continue
        echo(f"  {policy:9s} {n:>9,d} requests ...")
        row = measure(policy, n)
        echo(f"  {policy:9s} {n:>9,d} requests: {row['seconds']:8.1f} s  {row['requests_per_s']:8.0f} req/s  "
             f"peak RSS {row['peak_rss_mb']:6.0f} MB")
        df = pd.concat([df, pd.DataFrame([row])], ignore_index=True) if len(df) else pd.DataFrame([row])
        atomic_write(path, lambda p, df=df: df.to_csv(p, index=False))
    return df


def verdicts(df: pd.DataFrame) -> list[str]:
    """One line per policy at the largest size: time and RSS against issue #29's targets."""
    n = int(df["requests"].max())
    lines = []
    for _, r in df[df["requests"] == n].iterrows():
        head = f"{r['policy']:9s} {n:,d} requests: {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB"
        t = TARGET_S.get(r["policy"])
        if n != TARGET_REQUESTS or t is None:
            lines.append(head + f" (the targets are for {TARGET_REQUESTS:,d} requests of lru/overlap/slora/lookahead)")
            continue
        ok_t = "met" if r["seconds"] <= t else "missed"
        ok_m = "met" if r["peak_rss_mb"] <= TARGET_RSS_MB else "missed"
        lines.append(head + f" (targets {t:.0f} s: {ok_t}; {TARGET_RSS_MB:.0f} MB: {ok_m})")
    return lines


def plot(df: pd.DataFrame, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = df["policy"].iloc[0]
    curve = df[df["policy"] == first].sort_values("requests")
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax.loglog(curve["requests"], curve["seconds"], "o-", label=f"{first}")
    big = curve.iloc[-1]
    xs = curve["requests"].to_numpy(float)
    ax.loglog(xs, xs * big["seconds"] / big["requests"], ":", color="grey", label="linear through the largest")
    for _, r in df[df["policy"] != first].iterrows():
        ax.loglog([r["requests"]], [r["seconds"]], "s", label=r["policy"])
    ax.set(xlabel="requests", ylabel="seconds (simulate)", title="time vs trace length")
    ax.legend(fontsize=8)
    ax2.semilogx(curve["requests"], curve["peak_rss_mb"], "o-", label=first)
    ax2.axhline(TARGET_RSS_MB, color="red", ls="--", lw=1, label="2 GB target")
    ax2.set(xlabel="requests", ylabel="peak RSS (MB)", title="peak memory of the run's process", ylim=(0, None))
    ax2.legend(fontsize=8)
    fig.suptitle("lorasim simulator scaling: Poisson 10 req/s, zipf over 64 adapters, 512-token outputs")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
    return path
