"""gpu.run_health: a GPU run during which the machine slowed down is told from a healthy one,
and `lorasim validate --gpu-runs` leaves it out of the mean (and says so)."""

import json
from functools import partial

import numpy as np
import pandas as pd
import pytest
import yaml

from gpu.run_health import check_run, decode_batch, forward_prices, run_health
from gpu.validate import METRICS, resimulate
from tests.gpu.tiny_scenario import SCENARIO

STEP_S = 0.01  # the stub's price of one decode step


class StubCompute:
    """A decode step costs STEP_S whatever the batch; a prefill STEP_S per request."""

    def forward_time(self, batch):
        return STEP_S * len(batch.items)

    def decode_times(self, batch, steps):
        return np.full(steps, STEP_S)


def _run(pace, steps=5, rows=100):
    """Two requests decoding through `rows` rows of `steps` steps; row i takes pace(i) x its
    price. -> (records, timeline)"""
    rec = pd.DataFrame({"rid": [0, 1], "adapter": ["a", "b"], "first_token": [0.0, 0.0],
                        "finish": [1e3, 1e3], "input_len": [100, 200], "tpot": [STEP_S, STEP_S],
                        "ttft": [0.1, 0.1], "e2e": [1.0, 1.0]})
    t, tl = 0.001, []
    for i in range(rows):
        d = pace(i) * steps * STEP_S
        tl.append(("compute", t, t + d, "decode", f"decode x{steps}"))
        t += d
    return rec, pd.DataFrame(tl, columns=["lane", "start", "end", "kind", "label"])


def test_an_episode_is_a_slowdown_and_a_profile_bias_is_not():
    steady = check_run(*_run(lambda i: 1.07), StubCompute(), {"a": 8, "b": 8})
    assert steady.ratio == pytest.approx(1.07) and steady.slowdown == pytest.approx(1.0)
    assert not steady.degraded()
    # 0.5 s of priced work a window (10 rows): rows 40-49 at twice the pace are one window
    ep = check_run(*_run(lambda i: 2.0 if 40 <= i < 50 else 1.0), StubCompute(), {"a": 8})
    assert ep.slowdown == pytest.approx(2.0) and ep.degraded() and not ep.degraded(2.5)
    assert ep.worst_at_s == pytest.approx(0.001 + 40 * 5 * STEP_S)
    assert not ep.degraded(0)  # 0: the check is off
    # one slow last forward (0.05 s of work at 1.6x, host jitter) is too short to be a window of
    # its own: it joins the one before, and the run stays healthy
    tail = check_run(*_run(lambda i: 1.6 if i == 100 else 1.0, rows=101), StubCompute(), {"a": 8})
    assert tail.windows == 10 and tail.slowdown == pytest.approx((10 + 1.6) / 11)
    assert not tail.degraded()
    assert run_health(forward_prices(*_run(lambda i: 1.0, rows=0), StubCompute(), {})).windows == 0


def test_pin_stats_measure_the_slow_share():
    from gpu.run_health import host_stats, pin_stats

    rows = [("host", i, i + 0.015, "pin", "a") for i in range(9)] + [("host", 20, 20.075, "pin", "a")]
    rows.append(("compute", 0.0, 0.01, "prefill", "p"))
    s = pin_stats(pd.DataFrame(rows, columns=["lane", "start", "end", "kind", "label"]))
    assert s["pins"] == 10 and s["pin_median_ms"] == pytest.approx(15.0)
    rows += [("host", 30, 30.004, "issue", "a"), ("host", 31, 31.006, "issue", "a"), ("host", 32, 32.005, "issue", "a")]
    h = host_stats(pd.DataFrame(rows, columns=["lane", "start", "end", "kind", "label"]))
    assert h["pins"] == 10 and h["issue_median_ms"] == pytest.approx(5.0)
    assert s["pin_mean_ms"] == pytest.approx(21.0) and s["pin_slow_share"] == pytest.approx(0.1)
    # pins 0.985 s apart are not after quiet; the one 11.9 s after the last is
    assert s["quiet_pins"] == 1 and s["quiet_pin_median_ms"] == pytest.approx(75.0)
    assert h["reloads"] == 0
    rows += [("disk", 40, 40.2, "reload", "a"), ("disk", 41, 41.3, "reload", "b"), ("disk", 42, 42.25, "blocking", "c")]
    h = host_stats(pd.DataFrame(rows, columns=["lane", "start", "end", "kind", "label"]))
    assert h["reloads"] == 2 and h["reload_median_ms"] == pytest.approx(250.0)  # a GPU load's read is not one


def test_prices_rebuild_each_forward_from_the_records():
    rec = pd.DataFrame({"rid": [0, 1, 2], "adapter": ["a", "a", None], "first_token": [0.05, 0.05, 0.3],
                        "finish": [0.5, 0.2, 0.9], "input_len": [100, 50, 10], "tpot": [0.01] * 3})
    tl = pd.DataFrame([("compute", 0.02, 0.05, "prefill", "prefill x1"),
                       ("compute", 0.05, 0.15, "decode", "decode x10"),
                       ("pcie", 0.0, 0.01, "overlap", "a")],
                      columns=["lane", "start", "end", "kind", "label"])
    p = forward_prices(rec, tl, StubCompute(), {"a": 8})
    assert list(p["kind"]) == ["prefill", "decode"]  # copies are not forwards
    assert p["batch"].tolist() == [2, 2] and p["adapters"].tolist() == [1, 1]
    assert p["model_s"].tolist() == pytest.approx([2 * STEP_S, 10 * STEP_S])
    live = decode_batch(rec, 0.25, 0.35)  # rid 1 finished, rid 2 not started
    assert live["rid"].tolist() == [0] and live["ctx"].tolist() == [100 + 1 + 20]


def _record(folder, policy, value, pace):
    folder.mkdir(parents=True, exist_ok=True)
    rec, tl = _run(pace)
    rec.to_csv(folder / f"tiny-val.{policy}.gpu.csv", index=False)
    tl.to_csv(folder / f"tiny-val.{policy}.gpu.timeline.csv", index=False)
    (folder / f"tiny-val.{policy}.summary.json").write_text(
        json.dumps({"gpu": {m: value for m in METRICS}, "sim": {}}))


@pytest.fixture
def stub_health(monkeypatch):
    # the tiny scenario's roofline prices are microseconds: price with the stub instead
    import gpu.run_health

    monkeypatch.setattr(gpu.run_health, "check_run",
                        lambda rec, tl, compute, ranks: check_run(rec, tl, StubCompute(), ranks))


def test_resimulate_leaves_a_degraded_run_out_of_the_mean(tmp_path, stub_health):
    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    _record(tmp_path / "p1", "lru", 100.0, lambda i: 1.0)
    _record(tmp_path / "p2", "lru", 300.0, lambda i: 3.0 if i < 10 else 1.0)
    log: list[str] = []
    run = partial(resimulate, [path], None, ["lru"], [tmp_path / "p1", tmp_path / "p2"], progress=log.append)
    df = run(tmp_path / "out")
    assert (df["gpu"] == 100.0).all() and (df["gpu_runs"] == 1).all()
    assert any("p2 left out: the machine slowed down (3.00x" in m for m in log)
    health = pd.read_csv(tmp_path / "out" / "health.csv")
    gpu_rows = health[health["run"] != "simulator"]
    assert gpu_rows["dropped"].tolist() == [False, True]
    # lru pins per load: the simulator's pins are listed to read the runs' (which have none) by
    sim_row = health[health["run"] == "simulator"].iloc[0]
    assert sim_row["pins"] > 0 and sim_row["pin_mean_ms"] > 0 and (gpu_rows["pins"] == 0).all()
    assert gpu_rows["issue_median_ms"].isna().all()  # runs recorded before issue rows: blank
    assert "- left out: " + str(tmp_path / "p2") in (tmp_path / "out" / "errors.md").read_text()
    # threshold 0 keeps every run; so does a cell whose every run is degraded
    kept = run(tmp_path / "all", degraded_above=0)
    assert (kept["gpu"] == 200.0).all() and (kept["gpu_runs"] == 2).all()
    log.clear()
    only = resimulate([path], None, ["lru"], [tmp_path / "p2"], tmp_path / "only", progress=log.append)
    assert (only["gpu"] == 300.0).all() and any("run it again" in m for m in log)


def test_cli_refuses_a_threshold_every_run_would_exceed(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    r = subprocess.run(
        [sys.executable, "-c", "from sim.cli import main; main()", "validate", "--scenario", str(path),
         "--gpu-runs", str(tmp_path), "--degraded-above", "0.5", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=root,
    )
    assert r.returncode == 2 and "--degraded-above" in r.stderr and "Traceback" not in r.stderr
