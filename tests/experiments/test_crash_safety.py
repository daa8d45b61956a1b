"""Crash-safe sweeps: a real `lorasim sweep` subprocess is SIGKILLed at random points more
than 20 times and resumed each time. At the end every run's result is present exactly once,
no finished run was computed again, and every results file reads back."""

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RATES = list(range(1, 41))
POLICIES = ["lru", "slora"]
KILLS = 22


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _stamps(out: Path) -> dict[str, int]:
    """mtime_ns of every stored result file (a rewrite means a finished run was redone)."""
    stamps = {}
    for sub in ("index", "runs", "timelines"):
        d = out / sub
        if d.is_dir():
            for f in d.iterdir():
                if not f.name.startswith("."):
                    stamps[f"{sub}/{f.name}"] = f.stat().st_mtime_ns
    return stamps


def _finished(out: Path) -> set[str]:
    """Files of runs whose index row says ok (those must never change again)."""
    done = set()
    d = out / "index"
    if d.is_dir():
        for f in d.glob("*.json"):
            row = json.loads(f.read_text())  # written atomically: always complete JSON
            if row["status"] == "ok":
                done |= {f"index/{f.name}", f"runs/{f.stem}.parquet", f"timelines/{f.stem}.parquet"}
    return done


@pytest.mark.slow
def test_sweep_survives_repeated_sigkill_and_resumes(tmp_path):
    sweep = tmp_path / "crash.yaml"
    sweep.write_text(
        "name: crash\nbase: {adapters: {count: 4, rank: 8}, workload: {num_requests: 20}}\n"
        f"policies: {POLICIES}\naxes:\n  workload.arrival.rate: {RATES}\n"
    )
    out, log = tmp_path / "out", tmp_path / "exec.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)]),
        "LORASIM_RUN_FN": "_crash_fake:run",
        "CRASH_LOG": str(log),
        "CRASH_OUT": str(out),
    }
    cmd = [sys.executable, "-m", "sim", "sweep", str(sweep), "--out", str(out), "--workers", "1",
           "--no-plots", "--no-progress"]
    rng = random.Random(20240611)
    kills = rounds = 0
    frozen: dict[str, int] = {}  # finished runs' files and their mtimes
    while kills < KILLS and rounds < 3 * KILLS:
        rounds += 1
        n0 = len(_lines(log))
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if rounds % 2:  # anywhere: start-up, manifest, runs, storing, consolidating
            time.sleep(rng.uniform(0.05, 1.6))
        else:  # inside the run loop: just after an execution starts, or while it is stored
            deadline = time.monotonic() + 5
            while len(_lines(log)) == n0 and p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.003)
            time.sleep(rng.uniform(0.0, 0.09))
        if p.poll() is None:
            p.kill()
            kills += 1
        assert p.wait(timeout=30) in (0, -9)
        now = _stamps(out)
        changed = [f for f, t in frozen.items() if now.get(f) != t]
        assert not changed, f"files of finished runs rewritten or lost after round {rounds}: {changed[:3]}"
        frozen = {f: now[f] for f in _finished(out)}
    assert kills >= 20, f"only {kills} kills in {rounds} rounds"

    final = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert f"{len(RATES) * len(POLICIES)} runs:" in final.stdout
    assert all(_stamps(out).get(f) == t for f, t in frozen.items())

    # no finished run was ever computed again; every run was computed at least once, and
    # re-executions (runs killed before they were stored) are at most one per kill
    lines = _lines(log)
    assert not [ln for ln in lines if ln.startswith("RECOMPUTE")]
    execs = [ln.split(" ", 1)[1] for ln in lines if ln.startswith("exec ")]
    keys = {f"{p} {r}" for p in POLICIES for r in RATES}
    assert set(execs) == keys
    assert len(execs) - len(keys) <= kills
    print(f"\nkills survived: {kills} in {rounds} rounds; executions {len(execs)} for {len(keys)} runs "
          f"({len(execs) - len(keys)} re-executions of runs killed before they were stored)")

    # every run's result present exactly once, every file readable
    manifest = json.loads((out / "manifest.json").read_text())
    ids = [r["run_id"] for r in manifest["runs"]]
    assert len(ids) == len(set(ids)) == len(keys)
    rows = [json.loads(f.read_text()) for f in sorted((out / "index").glob("*.json"))]
    assert sorted(r["run_id"] for r in rows) == sorted(ids)
    assert {r["status"] for r in rows} == {"ok"}
    assert sorted((r["policy"], int(r["workload.arrival.rate"])) for r in rows) == sorted(
        (p, r) for p in POLICIES for r in RATES)
    for rid, row in ((r["run_id"], r) for r in rows):
        rec = pd.read_parquet(out / "runs" / f"{rid}.parquet")
        assert len(rec) == 20 and set(rec.policy) == {row["policy"]}
        pq.read_table(out / "timelines" / f"{rid}.parquet")
    summ = pd.read_parquet(out / "summaries.parquet")
    assert sorted(summ.run_id) == sorted(ids)
    jl = [json.loads(x) for x in (out / "summaries.jsonl").read_text().splitlines()]
    assert sorted(r["run_id"] for r in jl) == sorted(ids)
    # leftovers of writers killed mid-write are cleaned up on resume
    assert not [f for sub in ("index", "runs", "timelines") for f in (out / sub).iterdir()
                if f.name.startswith(".")]
    assert sorted(f.name for f in out.iterdir() if not f.name.startswith(".")) == [
        "index", "manifest.json", "report.md", "runs", "summaries.jsonl", "summaries.parquet", "timelines"]
