"""`lorasim validate --gpu-runs`: the simulator against recorded GPU runs (no torch needed)."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from gpu.validate import METRICS, resimulate
from sim.runner import simulate
from tests.gpu.tiny_scenario import SCENARIO

ROOT = Path(__file__).resolve().parents[2]


def _record(folder, sc_name, policy, values):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{sc_name}.{policy}.summary.json").write_text(json.dumps({"gpu": values, "sim": {}}))


def test_error_is_against_the_mean_of_gpu_runs_with_their_spread(tmp_path):
    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    _record(tmp_path / "run1", "tiny-val", "lru", {m: 100.0 for m in METRICS})
    _record(tmp_path / "run2", "tiny-val", "lru", {m: 300.0 for m in METRICS})
    df = resimulate([path], None, ["lru", "overlap"], [tmp_path / "run1", tmp_path / "run2"],
                    tmp_path / "out", progress=lambda s: None)
    assert set(df["policy"]) == {"lru"}  # overlap has no GPU record: skipped, not invented
    from sim.config import load_scenario

    sim = simulate(load_scenario(path), "lru").summary
    for m in METRICS:
        row = df[df["metric"] == m].iloc[0]
        assert row.gpu == 200.0 and row.gpu_runs == 2 and row.gpu_spread == pytest.approx(0.5)
        assert row.sim == pytest.approx(sim[m])
        assert row.rel_err == pytest.approx((sim[m] - 200.0) / 200.0)
    md = (tmp_path / "out" / "errors.md").read_text()
    assert "200.0 ±50%" in md and "within 10 %" in md


def test_cli_gpu_runs_needs_no_gpu_and_names_a_missing_folder(tmp_path):
    from sim.cli import app

    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    _record(tmp_path / "run1", "tiny-val", "lru", {m: 50.0 for m in METRICS})
    r = CliRunner().invoke(app, ["validate", "--scenario", str(path), "--policies", "lru",
                                 "--gpu-runs", str(tmp_path / "run1"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "tiny-val | lru" in r.output
    # through the console script's entry point, which turns LorasimError into exit code 2
    r = subprocess.run(
        [sys.executable, "-c", "from sim.cli import main; main()", "validate", "--scenario", str(path),
         "--gpu-runs", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert r.returncode == 2 and "nope" in r.stderr and "Traceback" not in r.stderr


def test_summary_counts_an_error_inside_the_gpus_own_spread_as_unresolved():
    """A cell 30 % off a GPU mean whose runs span ±40 % cannot be called wrong; one 30 % off
    a ±5 % mean can."""
    import pandas as pd

    from gpu.validate import error_table_markdown

    rows = [
        {"scenario": "s", "policy": p, "metric": m, "gpu": 100.0, "sim": 130.0, "rel_err": 0.3,
         "gpu_runs": 2, "gpu_spread": spread}
        for p, spread in (("noisy", 0.4), ("steady", 0.05))
        for m in METRICS
    ]
    md = error_table_markdown(pd.DataFrame(rows))
    assert "within 10 %: 0/2" in md
    assert "within 10 % or the GPU's half-spread: 1/2" in md


def test_cli_host_gap_from_sets_the_profiles_forward_overhead(tmp_path):
    """`lorasim calibrate --host-gap-from DIR`: the median host gap between back-to-back
    forwards in a validation pass's GPU timelines becomes compute.forward_overhead_us."""
    import shutil

    import pandas as pd

    from sim.cli import app
    from sim.hw.profile import HardwareProfile

    prof = tmp_path / "p.yaml"
    shutil.copy(ROOT / "configs/hardware/h200-measured.yaml", prof)
    runs = tmp_path / "pass-1"
    runs.mkdir()
    rows = [("compute", 0.0, 0.01, "prefill", "p"), ("compute", 0.0103, 0.02, "decode", "d"),
            ("compute", 0.0205, 0.03, "decode", "d"), ("compute", 0.9, 1.0, "prefill", "p")]
    pd.DataFrame(rows, columns=["lane", "start", "end", "kind", "label"]).to_csv(
        runs / "s.lru.gpu.timeline.csv", index=False)
    r = CliRunner().invoke(app, ["calibrate", "--out", str(prof), "--host-gap-from", str(runs)])
    assert r.exit_code == 0, r.output
    p = HardwareProfile.from_yaml(prof)
    assert p.compute.forward_overhead_us == pytest.approx(400.0)  # median of 0.3 and 0.5 ms
    assert p.command.endswith(f"; then lorasim calibrate --out {prof} --host-gap-from {runs}")
    r = subprocess.run(
        [sys.executable, "-c", "from sim.cli import main; main()", "calibrate", "--out", str(prof),
         "--host-gap-from", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert r.returncode == 2 and "--host-gap-from" in r.stderr and "Traceback" not in r.stderr


def test_cli_unpin_from_sets_the_profiles_time_to_free_pinned_copies(tmp_path):
    """`lorasim calibrate --unpin-from DIR...`: per folder, the gap after an `lru` prefill that
    follows a blocking load minus the gap after other prefills, median over folders, per
    tensor of an all-module adapter of the profile's model (Llama-3.1-8B: 448)."""
    import shutil

    import pandas as pd

    from sim.cli import app
    from sim.hw.profile import HardwareProfile

    prof = tmp_path / "p.yaml"
    shutil.copy(ROOT / "configs/hardware/h200-measured.yaml", prof)
    dirs = []
    for i, extra in enumerate((0.0010, 0.0016, 0.0030)):
        d = tmp_path / f"pass-{i}"
        d.mkdir()
        rows = [("compute", 0.0, 0.01, "blocking", "a"), ("compute", 0.01, 0.03, "prefill", "p"),
                ("compute", 0.0305 + extra, 0.04, "decode", "d"), ("compute", 0.0405, 0.06, "prefill", "p"),
                ("compute", 0.0605, 0.07, "decode", "d")]
        pd.DataFrame(rows, columns=["lane", "start", "end", "kind", "label"]).to_csv(
            d / "s.lru.gpu.timeline.csv", index=False)
        dirs.append(d)
    r = CliRunner().invoke(app, ["calibrate", "--out", str(prof), *[a for d in dirs for a in ("--unpin-from", str(d))]])
    assert r.exit_code == 0, r.output
    p = HardwareProfile.from_yaml(prof)
    assert p.pcie.unpin_per_tensor_us == pytest.approx(1600 / 448, rel=1e-3)  # the median folder
    assert p.command.endswith(f"--unpin-from {dirs[1]} --unpin-from {dirs[2]}")
    empty = tmp_path / "none"
    empty.mkdir()
    r = subprocess.run(
        [sys.executable, "-c", "from sim.cli import main; main()", "calibrate", "--out", str(prof),
         "--unpin-from", str(empty)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert r.returncode == 2 and "--unpin-from" in r.stderr and "lru" in r.stderr and "Traceback" not in r.stderr


def test_cli_wake_from_sets_the_profiles_wake_up_latency(tmp_path):
    """`lorasim calibrate --wake-from DIR`: the median time from an arrival that found the GPU
    idle to its admission, over a validation pass's runs, becomes compute.wake_us, which a
    scenario without hardware.wake_us then uses."""
    import shutil

    import pandas as pd

    from sim.cli import app
    from sim.config import load_scenario
    from sim.hw import load_hardware
    from sim.hw.profile import HardwareProfile

    prof = tmp_path / "p.yaml"
    shutil.copy(ROOT / "configs/hardware/h200-measured.yaml", prof)
    runs = tmp_path / "pass-1"
    runs.mkdir()
    pd.DataFrame([("compute", 0.1, 0.2, "prefill", "p")], columns=["lane", "start", "end", "kind", "label"]).to_csv(
        runs / "s.lru.gpu.timeline.csv", index=False)
    pd.DataFrame({"arrival": [0.0, 0.15, 0.3, 0.4], "admitted": [0.00005, 0.2, 0.30007, 0.40009]}).to_csv(
        runs / "s.lru.gpu.csv", index=False)
    r = CliRunner().invoke(app, ["calibrate", "--out", str(prof), "--wake-from", str(runs)])
    assert r.exit_code == 0, r.output
    p = HardwareProfile.from_yaml(prof)
    assert p.compute.wake_us == pytest.approx(70.0)  # of 50, 70, 90 us; the busy arrival is out
    assert p.command.endswith(f"; then lorasim calibrate --out {prof} --wake-from {runs}")
    sc = load_scenario(ROOT / "configs/validate/light/uniform.yaml")
    hw_cfg = sc.hardware.model_copy(update={"profile": str(prof)})
    assert load_hardware(hw_cfg, sc.model.shape()).wake_s == pytest.approx(70e-6)
    set_cfg = hw_cfg.model_copy(update={"wake_us": 250.0})  # the scenario's own value wins
    assert load_hardware(set_cfg, sc.model.shape()).wake_s == pytest.approx(250e-6)
    no_prof = sc.hardware  # a preset: the default
    assert load_hardware(no_prof, sc.model.shape()).wake_s == pytest.approx(250e-6)


def test_cli_pin_tail_from_sets_the_profiles_slow_pin_share(tmp_path):
    """`lorasim calibrate --pin-tail-from DIR`: the share of pins slower than 1.5 x the median
    and their mean excess become pcie.pin_tail_fraction / pin_tail_ms."""
    import shutil

    import pandas as pd

    from sim.cli import app
    from sim.hw.profile import HardwareProfile

    prof = tmp_path / "p.yaml"
    shutil.copy(ROOT / "configs/hardware/h200-measured.yaml", prof)
    runs = tmp_path / "pass-1"
    runs.mkdir()
    rows = [("host", i, i + 0.015, "pin", "a") for i in range(9)] + [("host", 20, 20.075, "pin", "a")]
    rows.append(("compute", 0.0, 0.01, "prefill", "p"))
    pd.DataFrame(rows, columns=["lane", "start", "end", "kind", "label"]).to_csv(
        runs / "s.lru.gpu.timeline.csv", index=False)
    r = CliRunner().invoke(app, ["calibrate", "--out", str(prof), "--pin-tail-from", str(runs)])
    assert r.exit_code == 0, r.output
    p = HardwareProfile.from_yaml(prof)
    assert p.pcie.pin_tail_fraction == pytest.approx(0.1)
    assert p.pcie.pin_tail_ms == pytest.approx(60.0)
    assert p.command.endswith(f"; then lorasim calibrate --out {prof} --pin-tail-from {runs}")
    nopin = tmp_path / "resident"
    nopin.mkdir()
    pd.DataFrame(rows[-1:], columns=["lane", "start", "end", "kind", "label"]).to_csv(
        nopin / "s.resident.gpu.timeline.csv", index=False)
    r = subprocess.run(
        [sys.executable, "-c", "from sim.cli import main; main()", "calibrate", "--out", str(prof),
         "--pin-tail-from", str(nopin)],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert r.returncode == 2 and "--pin-tail-from" in r.stderr and "Traceback" not in r.stderr


def _noisy_profile(tmp_path, speed_sd=0.02, issue_sd=0.2):
    from dataclasses import replace

    from sim.config import MODEL_PRESETS
    from sim.hw.export import analytic_profile

    prof = analytic_profile("h200", MODEL_PRESETS["tiny"], "tiny-noisy")
    prof = replace(prof, compute=replace(prof.compute, run_speed_sd=speed_sd),
                   pcie=replace(prof.pcie, issue_sd=issue_sd, issue_us=50.0))
    path = tmp_path / "noisy.yaml"
    prof.to_yaml(path)
    return path


def test_sim_repeats_compares_the_gpu_mean_with_the_mean_of_noisy_simulator_runs(tmp_path):
    from gpu.validate import _scenario_with_profile
    from sim.errors import LorasimError
    from sim.workload import generate_trace

    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    _record(tmp_path / "run1", "tiny-val", "overlap", {m: 100.0 for m in METRICS})
    run = lambda prof, out, k: resimulate([path], prof, ["overlap"], [tmp_path / "run1"], tmp_path / out,  # noqa: E731
                                          progress=lambda s: None, sim_repeats=k)
    quiet = _noisy_profile(tmp_path, 0.0, 0.0)
    with pytest.raises(LorasimError, match="--noise-from"):
        run(quiet, "q", 3)  # no measured noise: three identical runs would pose as an ensemble
    plain = run(quiet, "one", 1)
    assert "sim_runs" not in plain.columns
    noisy = _noisy_profile(tmp_path)
    df = run(noisy, "ens", 4)
    sc = _scenario_with_profile(path, noisy)
    trace = generate_trace(sc)
    members = [simulate(sc, "overlap", trace=trace, noise_seed=k).summary for k in range(4)]
    for m in METRICS:
        row = df[df["metric"] == m].iloc[0]
        vals = [s[m] for s in members]
        assert row.sim_runs == 4 and row.sim == pytest.approx(sum(vals) / 4)
        assert row.sim_spread == pytest.approx((max(vals) - min(vals)) / 2 / row.sim)
    assert (df["sim_spread"] > 0).any()  # the members differ
    md = (tmp_path / "ens" / "errors.md").read_text()
    assert "mean of 4 simulator runs" in md


def test_an_ensembles_distribution_pools_every_members_requests(tmp_path):
    """The distance between distributions compares the GPU runs' pooled requests with every
    simulator member's, not with the first member alone (one noisy draw)."""
    import numpy as np
    import pandas as pd

    from gpu.validate import _scenario_with_profile
    from sim.metrics import relative_w1
    from sim.workload import generate_trace

    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    _record(tmp_path / "run1", "tiny-val", "overlap", {m: 100.0 for m in METRICS})
    noisy = _noisy_profile(tmp_path)
    sc = _scenario_with_profile(path, noisy)
    trace = generate_trace(sc)
    members = [simulate(sc, "overlap", trace=trace, noise_seed=k).records for k in range(4)]
    gpu = members[0].assign(ttft=members[0].ttft * 1.2, e2e=members[0].e2e * 1.1)
    gpu.to_csv(tmp_path / "run1" / "tiny-val.overlap.gpu.csv", index=False)
    resimulate([path], noisy, ["overlap"], [tmp_path / "run1"], tmp_path / "ens", progress=lambda s: None,
               sim_repeats=4, plots=False)
    dist = pd.read_csv(tmp_path / "ens" / "distribution.csv").iloc[0]
    pooled = pd.concat(members, ignore_index=True)
    for col in ("ttft", "e2e"):
        want = relative_w1([gpu[col].to_numpy(float)], pooled[col].to_numpy(float))
        first = relative_w1([gpu[col].to_numpy(float)], members[0][col].to_numpy(float))
        assert dist[f"{col}_w1_rel"] == pytest.approx(want)
        assert not np.isclose(want, first)  # the pooled members are not the first alone


def test_cli_noise_from_measures_the_run_to_run_spread(tmp_path):
    import numpy as np
    import pandas as pd

    from gpu.run_health import measure_noise
    from sim.cli import app
    from sim.hw.profile import HardwareProfile

    rows = []
    for k, (ratio, degraded) in enumerate([(0.99, False), (1.01, False), (1.03, False), (1.6, True)]):
        run = tmp_path / f"pass-{k}"
        run.mkdir()
        issue = [0.004, 0.005, 0.006] if k < 2 else []
        pd.DataFrame({"lane": "host", "start": [0.0] * len(issue), "end": issue, "kind": "issue",
                      "label": "a"}).to_csv(run / "s.overlap.gpu.timeline.csv", index=False)
        rows.append({"scenario": "s", "policy": "overlap", "run": str(run), "ratio": ratio, "degraded": degraded})
    rows.append({"scenario": "s", "policy": "overlap", "run": "simulator", "ratio": float("nan"), "degraded": float("nan")})
    errs = tmp_path / "errors"
    errs.mkdir()
    pd.DataFrame(rows).to_csv(errs / "health.csv", index=False)
    ns = measure_noise(pd.read_csv(errs / "health.csv"))
    assert ns.runs == 3 and ns.speed_sd == pytest.approx(np.log([0.99, 1.01, 1.03]).std(ddof=1))
    logs = np.log(np.array([4, 5, 6] * 2) / 5.0)
    assert ns.loads == 6 and ns.issue_sd == pytest.approx(logs.std(ddof=1))
    with pytest.raises(ValueError, match="at least two"):
        measure_noise(pd.DataFrame(rows[:1] + rows[3:]))

    prof = _noisy_profile(tmp_path, 0.0, 0.0)
    r = CliRunner().invoke(app, ["calibrate", "--out", str(prof), "--noise-from", str(errs)])
    assert r.exit_code == 0, r.output
    back = HardwareProfile.from_yaml(prof)
    assert back.compute.run_speed_sd == pytest.approx(ns.speed_sd, rel=1e-3)
    assert back.pcie.issue_sd == pytest.approx(ns.issue_sd, rel=1e-3)
    assert back.command.endswith(f"--noise-from {errs}")
    r = CliRunner().invoke(app, ["calibrate", "--out", str(prof), "--noise-from", str(tmp_path)])
    assert r.exit_code != 0 and "health.csv" in str(r.exception)


def test_traces_replay_each_scenario_per_seed_and_pool_the_traces(tmp_path):
    """`--traces N`: one cell per trace, seeds from the file's own (which keeps its name, so
    earlier runs of it pair with new ones; runs of one trace may sit in different folders); the
    pooled table compares the mean over traces of the GPU's values with the simulator's."""
    from sim.config import load_scenario
    from sim.workload import generate_trace

    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))  # seed 1
    _record(tmp_path / "old", "tiny-val", "lru", {m: 100.0 for m in METRICS})
    _record(tmp_path / "new", "tiny-val-s2", "lru", {m: 300.0 for m in METRICS})
    log: list[str] = []
    df = resimulate([path], None, ["lru"], [tmp_path / "old", tmp_path / "new"], tmp_path / "out",
                    progress=log.append, traces=3)
    assert sorted(set(df["scenario"])) == ["tiny-val", "tiny-val-s2"]  # -s3 has no GPU run
    assert any(m.startswith("tiny-val-s3 / lru: no GPU run") for m in log)
    assert set(df["workload"]) == {"tiny-val"} and set(df["gpu_runs"]) == {1}
    base = load_scenario(path)
    sims = [simulate(base.model_copy(update={"seed": s}), "lru").summary for s in (1, 2)]
    # the next seed's trace really is another trace
    assert generate_trace(base.model_copy(update={"seed": 2})).requests != generate_trace(base).requests
    pooled = pd.read_csv(tmp_path / "out" / "errors-pooled.csv")
    for m in METRICS:
        row = pooled[pooled["metric"] == m].iloc[0]
        assert row.traces == 2 and row.gpu == 200.0
        want = (sims[0][m] + sims[1][m]) / 2
        assert row.sim == pytest.approx(want)
        assert row.rel_err == pytest.approx((want - 200.0) / 200.0)
    md = (tmp_path / "out" / "errors.md").read_text()
    assert "Over several traces" in md and "| tiny-val | lru | 2 |" in md


def test_one_trace_per_workload_writes_no_pooled_table(tmp_path):
    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    _record(tmp_path / "run1", "tiny-val", "lru", {m: 100.0 for m in METRICS})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "errors-pooled.csv").write_text("an earlier validation's\n")
    resimulate([path], None, ["lru"], [tmp_path / "run1"], tmp_path / "out", progress=lambda s: None)
    assert not (tmp_path / "out" / "errors-pooled.csv").exists()
    assert "Over several traces" not in (tmp_path / "out" / "errors.md").read_text()


def test_cli_traces(tmp_path):
    from sim.cli import app

    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    _record(tmp_path / "run1", "tiny-val", "lru", {m: 50.0 for m in METRICS})
    _record(tmp_path / "run1", "tiny-val-s2", "lru", {m: 70.0 for m in METRICS})
    r = CliRunner().invoke(app, ["validate", "--scenario", str(path), "--gpu-runs", str(tmp_path / "run1"),
                                 "--policies", "lru", "--traces", "2", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "| tiny-val-s2 | lru |" in r.output and "| tiny-val | lru | 2 | 60.0 / " in r.output
    # only the new traces, as a device run would
    r = CliRunner().invoke(app, ["validate", "--scenario", str(path), "--gpu-runs", str(tmp_path / "run1"),
                                 "--policies", "lru", "--traces", "1..2", "--out", str(tmp_path / "o2")])
    assert r.exit_code == 0, r.output
    assert "| tiny-val-s2 | lru |" in r.output and "| tiny-val | lru |" not in r.output


@pytest.mark.parametrize("bad", ["0", "x", "3..1", "-1..2", "1..x"])
def test_cli_traces_names_what_it_expects(tmp_path, bad):
    from sim.cli import app
    from sim.errors import ConfigError

    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    _record(tmp_path / "run1", "tiny-val", "lru", {m: 50.0 for m in METRICS})
    r = CliRunner().invoke(app, ["validate", "--scenario", str(path), "--gpu-runs", str(tmp_path / "run1"),
                                 "--traces", bad, "--out", str(tmp_path / "o")])
    assert isinstance(r.exception, ConfigError) and "--traces" in str(r.exception)
    assert "e.g. 4 or 1..3" in str(r.exception)


def test_cli_pin_speed_from_scales_the_profiles_pin_cost_to_the_hosts(tmp_path):
    """`lorasim calibrate --pin-speed-from DIR`: each GPU run's median pin over the simulator's for
    the same cell (health.csv), median over runs, scales the pin cost per byte and per tensor."""
    import shutil

    import pandas as pd

    from sim.cli import app
    from sim.hw.profile import HardwareProfile

    prof = tmp_path / "p.yaml"
    shutil.copy(ROOT / "configs/hardware/h200-measured.yaml", prof)
    before = HardwareProfile.from_yaml(prof).pcie
    runs = tmp_path / "pass-1"
    runs.mkdir()
    cols = ["scenario", "policy", "run", "pins", "pin_median_ms"]
    pd.DataFrame([
        ("a", "lru", "gpu", 30, 15.0), ("a", "lru", "simulator", 30, 20.0),
        ("b", "slora", "gpu", 20, 16.0), ("b", "slora", "simulator", 20, 20.0),
        ("b", "slora", "gpu2", 20, 18.0),
        ("c", "resident", "gpu", 0, None), ("c", "resident", "simulator", 0, None),
    ], columns=cols).to_csv(runs / "health.csv", index=False)
    r = CliRunner().invoke(app, ["calibrate", "--out", str(prof), "--pin-speed-from", str(runs)])
    assert r.exit_code == 0, r.output
    after = HardwareProfile.from_yaml(prof).pcie
    scale = 0.8  # median of 0.75, 0.8 and 0.9
    assert after.pin_warm_gbps == pytest.approx(before.pin_warm_gbps / scale)
    assert after.pin_per_tensor_us == pytest.approx(before.pin_per_tensor_us * scale)
    assert after.pin_cold_gbps == pytest.approx(before.pin_cold_gbps / scale)
    assert after.pin_tail_fraction == before.pin_tail_fraction  # --pin-tail-from's
    assert HardwareProfile.from_yaml(prof).command.endswith(f"--pin-speed-from {runs}")
    for bad, why in ((tmp_path / "empty", "no health.csv"), (tmp_path / "nopins", "no GPU run with pins")):
        bad.mkdir()
        if bad.name == "nopins":
            pd.DataFrame([("c", "resident", "gpu", 0, None)], columns=cols).to_csv(bad / "health.csv", index=False)
        r = subprocess.run(
            [sys.executable, "-c", "from sim.cli import main; main()", "calibrate", "--out", str(prof),
             "--pin-speed-from", str(bad)],
            capture_output=True, text=True, cwd=ROOT,
        )
        assert r.returncode == 2 and why in r.stderr and "Traceback" not in r.stderr


def test_cli_measure_only_pins_replaces_the_pin_cost_and_keeps_the_rest(tmp_path, monkeypatch):
    """`lorasim calibrate --measure-only pins`: the host's pin cost (as measured here) goes into
    the profile; every other figure stays; the command says what was run; bad input is named."""
    import dataclasses
    import shutil

    import gpu.calibrate.copies
    from sim.cli import app
    from sim.hw.profile import HardwareProfile

    prof = tmp_path / "p.yaml"
    shutil.copy(ROOT / "configs/hardware/h200-measured.yaml", prof)
    before = HardwareProfile.from_yaml(prof)
    seen = {}

    def fake(shape, device, rank, nbytes):
        seen.update(model=shape.name, rank=rank)
        return gpu.calibrate.copies.PinCost(20.0, 2.0, 10.0)

    monkeypatch.setattr(gpu.calibrate.copies, "measure_pin_cost", fake)
    r = CliRunner().invoke(app, ["calibrate", "--out", str(prof), "--measure-only", "pins", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert seen == {"model": before.model, "rank": 64}
    after = HardwareProfile.from_yaml(prof)
    assert (after.pcie.pin_warm_gbps, after.pcie.pin_cold_gbps, after.pcie.pin_per_tensor_us) == (20.0, 2.0, 10.0)
    pins = {"pin_warm_gbps", "pin_cold_gbps", "pin_per_tensor_us"}
    assert {k: v for k, v in dataclasses.asdict(after.pcie).items() if k not in pins} == {
        k: v for k, v in dataclasses.asdict(before.pcie).items() if k not in pins}
    assert after.compute == before.compute
    assert after.command.startswith(before.command)
    assert "--measure-only pins --device cpu (on CPU" in after.command
    # 335.5 MB / 20 GB/s + 448 tensors x 10 us = 21.3 ms; the profile's at its own figures
    had = 335.5e6 / (before.pcie.pin_warm_gbps * 1e9) + 448 * before.pcie.pin_per_tensor_us * 1e-6
    assert f"adapter 21.3 ms (the profile had {had * 1e3:.1f} ms)" in r.output
    for args, why in (
        (["--measure-only", "pin"], "unknown part pin; expected one of pins"),
        (["--measure-only", "pins", "--out", str(tmp_path / "none.yaml")], "file not found"),
        (["--measure-only", "pins", "--pin-tail-from", str(tmp_path)], "run them as two commands"),
    ):
        r = subprocess.run(
            [sys.executable, "-c", "from sim.cli import main; main()", "calibrate", "--out", str(prof), *args],
            capture_output=True, text=True, cwd=ROOT,
        )
        assert r.returncode == 2 and why in r.stderr and "Traceback" not in r.stderr


def test_measure_pin_cost_on_cpu_prices_no_per_tensor_pinning():
    """On CPU nothing is pinned: the host copy stands in for the bytes, and tensors cost nothing."""
    import torch

    from gpu.calibrate import measure_pin_cost
    from sim.config import MODEL_PRESETS

    cost = measure_pin_cost(MODEL_PRESETS["tiny"], torch.device("cpu"), 8, 4 * 2**20)
    assert cost.warm_gbps > 0 and cost.cold_gbps == cost.warm_gbps and cost.per_tensor_us == 0.0


def test_pooled_summary_counts_an_error_within_its_traces_standard_error_as_unresolved():
    """+30 % over four traces whose own errors scatter by +-40 % (standard error 20 %) cannot be
    told from chance; +30 % at +-4 % can."""
    from gpu.validate import pooled_markdown, pooled_table

    rows = [
        {"scenario": f"w-{p}-s{k}", "workload": f"w-{p}", "policy": p, "metric": m, "gpu": 100.0,
         "sim": 100.0 * (1 + e), "rel_err": e}
        for p, errs in (("noisy", (-0.1, 0.7, -0.1, 0.7)), ("steady", (0.26, 0.34, 0.26, 0.34)))
        for k, e in enumerate(errs)
        for m in METRICS
    ]
    pooled = pooled_table(pd.DataFrame(rows))
    assert pooled["rel_err"].to_numpy() == pytest.approx([0.3] * len(pooled))
    md = pooled_markdown(pooled)
    assert "within 10 %: 0/2; within 10 % or two standard errors over the traces: 1/2" in md
