"""benchmarks/bench_kernels.py times the Triton kernels on a GPU; without one it says so and
exits 0. On a GPU the prefill capacity table has a row per case and split rule and leaves out
capacities below a case's adapters (its timings are printed, not asserted). The SGMV tuner
saves each op's winner as soon as that op is tuned."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_kernels.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU path")
def test_without_a_gpu_it_says_so_and_measures_nothing(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench_kernels.py", "--sgmv-capacity"])
    runpy.run_path(str(BENCH), run_name="__main__")
    assert "needs a CUDA GPU" in capsys.readouterr().out


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_capacity_table_has_both_split_rules_for_every_case(capsys):
    from gpu.kernels.configs import device_configs

    before = dict(device_configs(torch.cuda.get_device_name())["shrink_prefill"])
    runpy.run_path(str(BENCH))["bench_sgmv_capacity"](reps=2, rank=16, layers=1)
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines() if " x " in ln and "adapter" in ln]
    # N adapter(s) x TOKENS RULE cap4 cap16 cap64 TFLOP/s
    assert len(rows) == 8 and {r[4] for r in rows} == {"bound", "tokens"}
    sixteen = [r for r in rows if r[0] == "16"]
    assert all(r[5] == "-" and r[6] != "-" for r in sixteen)  # capacity 4 < 16 adapters
    assert device_configs(torch.cuda.get_device_name())["shrink_prefill"] == before  # restored


def test_lora_flops_count_each_slices_shrink_and_expand():
    """A fused qkv of Llama-3.1-8B: three A [r, 4096] and B^T [r, 4096 | 1024 | 1024]."""
    from types import SimpleNamespace

    lora_flops = runpy.run_path(str(BENCH))["lora_flops"]
    qkv = SimpleNamespace(in_dim=4096, widths=[4096, 1024, 1024])
    assert lora_flops([(0, "qkv", qkv)], tokens=512, rank=64) == 2 * 512 * 64 * (3 * 4096 + 6144)


def test_tuner_saves_each_op_as_it_is_tuned(tmp_path, monkeypatch):
    """A tuning call killed during the expand sweep still leaves the shrink winner on disk."""
    import json

    from gpu.kernels.configs import OVERRIDE_ENV

    monkeypatch.delenv(OVERRIDE_ENV, raising=False)  # the tuner pops it; restored after the test
    ns = runpy.run_path(str(BENCH))
    fn = ns["tune_sgmv"]
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    monkeypatch.setitem(fn.__globals__, "_sgmv_setup", lambda *a, **k: (None, None, None, None))
    monkeypatch.setitem(fn.__globals__, "_sgmv_step", lambda *a, **k: None)
    shrinks = ns["PREFILL_SHRINK_GRID"]
    fastest = shrinks[5]
    calls = []

    def graph_time(step, reps):
        from gpu.kernels.configs import device_configs

        table = device_configs("NVIDIA H100")
        calls.append(1)
        if len(calls) > 3 * (len(shrinks) + 1):  # the expand sweep has begun: the call is killed
            raise KeyboardInterrupt
        return 1e-3 if table["shrink_prefill"] == fastest else 2e-3

    monkeypatch.setitem(fn.__globals__, "graph_time", graph_time)
    from gpu.kernels.configs import device_configs

    saved = dict(device_configs("NVIDIA H100"))
    out = tmp_path / "tuned.json"
    try:
        with pytest.raises(KeyboardInterrupt):
            fn(reps=1, rank=64, write=str(out), prefill=True)
    finally:
        device_configs("NVIDIA H100").update(saved)
    assert json.loads(out.read_text()) == {"shrink_prefill": fastest}
