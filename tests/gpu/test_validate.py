"""The engine's real policies through the CudaDriver (CPU, tiny model), and the CLI."""

import pytest

torch = pytest.importorskip("torch")

import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from gpu.validate import GpuOptions, run_gpu, run_validation  # noqa: E402
from sim.config import parse_scenario  # noqa: E402
from tests.gpu.tiny_scenario import SCENARIO  # noqa: E402


@pytest.mark.parametrize("policy", ["lru", "slora", "overlap", "resident"])
def test_policy_runs_to_completion_on_the_driver(tmp_path, policy):
    from sim.workload import generate_trace

    sc = parse_scenario(SCENARIO)
    trace = generate_trace(sc)
    res = run_gpu(sc, policy, trace, GpuOptions(device="cpu", adapter_dir=str(tmp_path)))
    assert res.summary["completed"] == len(trace.requests)
    assert (res.records["ttft"] > 0).all()
    if policy != "resident":
        assert res.summary["loads"] > 0


@pytest.mark.parametrize("policy", ["lru", "overlap"])
def test_a_pinned_adapter_and_host_tier_reloads_run_on_the_driver(tmp_path, policy):
    """The CUDA driver runs SGLang's pinned adapter (copied at start-up, never evicted) and the
    reloads at arrival (`ReadHost` on the scheduler's thread) as the core decides them."""
    from sim.workload import generate_trace

    sc = parse_scenario({**SCENARIO, "serving": {**SCENARIO["serving"], "pinned_loras": 1}})
    trace = generate_trace(sc)
    res = run_gpu(sc, policy, trace, GpuOptions(device="cpu", adapter_dir=str(tmp_path)))
    assert res.summary["completed"] == len(trace.requests) and res.summary["disk_reads"] > 0
    tl = res.timeline
    assert (tl[(tl.lane == "disk") & (tl.kind == "reload")].end > 0).any()
    first = tl[tl.lane == "pcie"].sort_values("start").iloc[0]
    assert first.label == trace.adapters[0].name  # the pinned adapter's start-up copy comes first


def test_validation_table_and_cli(tmp_path):
    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    df = run_validation(
        [path],
        None,
        ["lru"],
        tmp_path / "out",
        GpuOptions(device="cpu", adapter_dir=str(tmp_path / "ad")),
        progress=lambda s: None,
    )
    assert set(df["metric"]) == {"ttft_median_ms", "ttft_p99_ms", "e2e_mean_ms", "tpot_median_ms"}
    assert (tmp_path / "out" / "errors.md").exists()
    # the GPU run's records against the simulator's: a distance per cell and the CDF plot
    dist = pd.read_csv(tmp_path / "out" / "distribution.csv")
    assert list(dist["policy"]) == ["lru"] and dist["gpu_runs"].tolist() == [1]
    assert 0 <= dist["e2e_w1_rel"].iloc[0] < 10
    assert (tmp_path / "out" / "plots" / "cdf_tiny-val.png").exists()


def test_calibrate_cli_quick(tmp_path):
    from sim.cli import app

    out = tmp_path / "cpu.yaml"
    r = CliRunner().invoke(
        app, ["calibrate", "--model", "tiny", "--quick", "--device", "cpu", "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert yaml.safe_load(out.read_text())["model"] == "tiny"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_an_8b_model_is_not_built_on_the_cpu_unless_asked(tmp_path, monkeypatch):
    """Without CUDA, validate/calibrate of llama-3.1-8b would build 16 GB of weights on the CPU
    and die by the OOM killer with no message (it happened here); they refuse, naming the file
    and the way out, before loading anything."""
    import gpu.core
    from sim.cli import app
    from sim.errors import ConfigError

    def boom(*a, **k):
        raise AssertionError("a GPU core was built")

    monkeypatch.setattr(gpu.core.GpuCore, "__init__", boom)
    big = dict(SCENARIO, model={"preset": "llama-3.1-8b"})
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(big))
    r = CliRunner().invoke(app, ["validate", "--scenario", str(path), "--out", str(tmp_path / "o")])
    assert isinstance(r.exception, ConfigError)
    assert r.exception.source == str(path) and "--gpu-runs" in str(r.exception)
    assert "no CUDA device" in str(r.exception)
    r = CliRunner().invoke(app, ["calibrate", "--out", str(tmp_path / "p.yaml")])  # default 8B
    assert isinstance(r.exception, ConfigError) and "llama-3.1-8b" in str(r.exception)
    assert not (tmp_path / "p.yaml").exists()
    # the tiny model is not refused (test_calibrate_cli_quick runs it with --device cpu)
    from gpu.cli.common import refuse_big_model_on_cpu
    from sim.config import MODEL_PRESETS

    refuse_big_model_on_cpu(MODEL_PRESETS["tiny"], None, "x", "model")
    refuse_big_model_on_cpu(MODEL_PRESETS["llama-3.1-8b"], "cpu", "x", "model")  # asked for


def test_repeated_validation_alternates_policy_order_and_compares_with_the_mean(tmp_path):
    from gpu.validate import run_validation_repeated

    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    opts = GpuOptions(device="cpu", adapter_dir=str(tmp_path / "ad"))
    log: list[str] = []
    df = run_validation_repeated([path], None, ["lru", "overlap"], tmp_path / "out", 2, opts, log.append)
    gpu_order = [m.split(" / ")[1].split(":")[0] for m in log if m.endswith(": GPU ...")]
    assert gpu_order == ["lru", "overlap", "overlap", "lru"]
    for k in (1, 2):
        assert (tmp_path / "out" / f"pass-{k}" / "tiny-val.lru.summary.json").is_file()
    assert set(df["gpu_runs"]) == {2} and set(df["policy"]) == {"lru", "overlap"}
    assert "GPU half-spread" in (tmp_path / "out" / "errors.md").read_text()
    # run again: both passes are complete, no GPU work is redone
    log.clear()
    run_validation_repeated([path], None, ["lru", "overlap"], tmp_path / "out", 2, opts, log.append)
    assert not [m for m in log if m.endswith(": GPU ...")]
    assert sum("already complete" in m for m in log) == 2
    # a pass cut off after its first run goes on from there: only the missing run is redone
    p2 = tmp_path / "out" / "pass-2"
    (p2 / "errors.csv").unlink()
    (p2 / "tiny-val.lru.summary.json").unlink()  # pass 2 ran overlap first, then lru
    log.clear()
    again = run_validation_repeated([path], None, ["lru", "overlap"], tmp_path / "out", 2, opts, log.append)
    assert [m for m in log if m.endswith(": GPU ...")] == ["tiny-val / lru: GPU ..."]
    assert "tiny-val / overlap: GPU run already recorded in " + str(p2) in log
    assert set(zip(again["scenario"], again["policy"], strict=True)) == set(zip(df["scenario"], df["policy"], strict=True))


def test_validation_over_several_traces_runs_each_on_the_gpu_side(tmp_path):
    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    log: list[str] = []
    df = run_validation([path], None, ["lru"], tmp_path / "out",
                        GpuOptions(device="cpu", adapter_dir=str(tmp_path / "ad")), progress=log.append, traces=2)
    assert [m for m in log if m.endswith(": GPU ...")] == ["tiny-val / lru: GPU ...", "tiny-val-s2 / lru: GPU ..."]
    assert (tmp_path / "out" / "tiny-val-s2.lru.summary.json").is_file()
    pooled = pd.read_csv(tmp_path / "out" / "errors-pooled.csv")
    for m, row in pooled.set_index("metric").iterrows():
        cells = df[df["metric"] == m]
        assert row.traces == 2 and row.gpu == pytest.approx(cells["gpu"].mean())
        assert row.sim == pytest.approx(cells["sim"].mean())


def test_cli_resume_runs_only_the_gpu_runs_a_cut_off_validation_lacks(tmp_path):
    """`lorasim validate --resume`: a finished GPU run (its summary.json) is kept byte for byte;
    a run cut off before its summary, and a policy not run yet, are run; without --resume
    every run is run again."""
    from sim.cli import app

    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    out = tmp_path / "out"
    base = ["validate", "--scenario", str(path), "--device", "cpu", "--adapter-dir", str(tmp_path / "ad"),
            "--out", str(out)]
    r = CliRunner().invoke(app, [*base, "--policies", "lru,overlap"])
    assert r.exit_code == 0, r.output
    kept = (out / "tiny-val.lru.gpu.csv").read_bytes()
    (out / "tiny-val.overlap.summary.json").unlink()  # as if the time limit hit before it was written
    r = CliRunner().invoke(app, [*base, "--policies", "lru,overlap,resident", "--resume"])
    assert r.exit_code == 0, r.output
    assert "tiny-val / lru: GPU run already recorded" in r.output
    assert "tiny-val / lru: GPU ..." not in r.output
    assert "tiny-val / overlap: GPU ..." in r.output and "tiny-val / resident: GPU ..." in r.output
    assert (out / "tiny-val.lru.gpu.csv").read_bytes() == kept
    assert set(pd.read_csv(out / "errors.csv")["policy"]) == {"lru", "overlap", "resident"}
    r = CliRunner().invoke(app, [*base, "--policies", "lru"])
    assert r.exit_code == 0 and "tiny-val / lru: GPU ..." in r.output


@pytest.fixture
def ten_second_runs(monkeypatch) -> list[float]:
    """A fake clock (`now[0]`) that every GPU run advances by 10 s."""
    import gpu.validate as gv

    now = [0.0]
    real = gv.run_gpu

    def ten_seconds(*a, **k):
        now[0] += 10.0
        return real(*a, **k)

    monkeypatch.setattr(gv, "run_gpu", ten_seconds)
    return now


def test_a_budget_stops_before_a_run_that_would_overrun_and_resume_goes_on(tmp_path, ten_second_runs):
    """With a 15 s budget and GPU runs of 10 s (a fake clock), the second run is not started: the
    tables hold the first, the log says how many are left, and --resume runs only those."""
    from gpu.run_budget import RunBudget

    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    opts, out, log = GpuOptions(device="cpu", adapter_dir=str(tmp_path / "ad")), tmp_path / "out", []
    df = run_validation([path], None, ["lru", "overlap", "resident"], out, opts, progress=log.append,
                        budget=RunBudget(15.0, clock=lambda: ten_second_runs[0]))
    assert set(df["policy"]) == {"lru"}
    assert any(m.startswith("stopping after 10 s of the 15 s allowed: 2 GPU runs left") for m in log)
    assert not (out / "tiny-val.overlap.summary.json").exists()
    log.clear()
    df = run_validation([path], None, ["lru", "overlap", "resident"], out, opts, progress=log.append,
                        resume=True, budget=RunBudget(None))
    assert set(df["policy"]) == {"lru", "overlap", "resident"}
    assert [m for m in log if m.endswith(": GPU ...")] == ["tiny-val / overlap: GPU ...", "tiny-val / resident: GPU ..."]


def test_cli_stop_after_zero_runs_nothing_and_says_how_to_go_on(tmp_path):
    from sim.cli import app

    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    r = CliRunner().invoke(app, ["validate", "--scenario", str(path), "--device", "cpu", "--adapter-dir",
                                 str(tmp_path / "ad"), "--out", str(tmp_path / "out"), "--stop-after", "0"])
    assert r.exit_code == 0, r.output
    assert "2 GPU runs left" in r.output and "--resume" in r.output and ": GPU ..." not in r.output


def test_a_budget_stops_repeated_passes_and_the_same_command_goes_on(tmp_path, ten_second_runs):
    """Budget for three 10 s runs of four: pass 2 stops after its first run, nothing is compared
    yet; the same command without a budget runs only pass 2's last run and compares both."""
    from gpu.run_budget import RunBudget
    from gpu.validate import run_validation_repeated

    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    opts, log = GpuOptions(device="cpu", adapter_dir=str(tmp_path / "ad")), []
    df = run_validation_repeated([path], None, ["lru", "overlap"], tmp_path / "out", 2, opts, log.append,
                                 budget=RunBudget(35.0, clock=lambda: ten_second_runs[0]))
    assert df.empty and "pass 2/2 is not complete: run the same command again to go on" in log
    assert len([m for m in log if m.endswith(": GPU ...")]) == 3
    log.clear()
    df = run_validation_repeated([path], None, ["lru", "overlap"], tmp_path / "out", 2, opts, log.append)
    assert [m for m in log if m.endswith(": GPU ...")] == ["tiny-val / lru: GPU ..."]
    assert set(df["gpu_runs"]) == {2}
