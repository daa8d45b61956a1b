"""Why does one prefill take longer in a validation run than calibration says? (diagnostic)

python -m gpu.diag_prefill [--model M] [--lens 413,406,...] [--adapters 8] [--rank 64]
times one prefill batch of these request lengths, each request on one of `adapters` adapters,
through the driver's prefill path (gpu.prefill_graphs; eager above its graph limit), four ways:
as calibration does (medians after a decode step), the very first time (fresh allocator
blocks), after 300 ms of host idle, and calibration's own input of the same token count
(items of 512 tokens). Round 8: a 3095-token burst prefill of 9 requests and 8 adapters ran
148-181 ms in the runs, ~135 ms by the calibrated tables.

It also prints the attention coefficient (`compute.attention_ms_per_mcell`) the two no-LoRA
medians imply, per causal query-key cell (the paged varlen attention's work: its "cells:"
line says so, `compute.attention_cells: causal`); `--from-log LOG` prints it from an earlier
run's log without a GPU (a log without the line is the padded harness's, before issue #26).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from gpu.attention_fit import (
    BURST_LENS,
    attention_coefficient,
    cells_from_log,
    coefficient_from_log,
)
from gpu.calibrate.compute import _prefill_input
from gpu.calibrate.timer import Timer
from gpu.kv_cache import PagedKV
from gpu.lora import LoraSlots
from gpu.model import LlamaModel, StepInput, default_dtype
from gpu.prefill_graphs import PrefillRunner
from sim.config import MODEL_PRESETS

BURST = ",".join(map(str, BURST_LENS))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--lens", default=BURST, help="comma-separated new tokens per request")
    ap.add_argument("--adapters", type=int, default=8)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--device", default=None)
    ap.add_argument("--from-log", type=Path, default=None, help="no GPU: the coefficient from this log")
    a = ap.parse_args(argv)
    lens = [int(x) for x in a.lens.split(",")]
    if a.from_log is not None:
        text = a.from_log.read_text()
        coef = coefficient_from_log(text)
        print(f"attention: {coef:.2f} ms per million {cells_from_log(text)} query-key cells")
        return
    dev = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = default_dtype(dev)
    shape = MODEL_PRESETS[a.model]
    tokens = sum(lens)
    print("lens: " + ",".join(map(str, lens)), flush=True)
    print("cells: causal (paged varlen attention: each request's new tokens over its own keys)", flush=True)
    slots = LoraSlots.random(shape, 16, a.rank, dev, dtype)
    model = LlamaModel(shape, device=dev, dtype=dtype, lora=slots)
    kv = PagedKV(shape, max(32, len(lens)), max(512, max(lens)) + 8, dev, dtype)
    kv.take_all_rows()  # the inputs address rows 0.. directly
    runner = PrefillRunner(model, kv, max_tokens=2048 if dev.type == "cuda" else 0)
    timer = Timer(dev)
    ids = torch.randint(0, shape.vocab, (tokens,), device=dev)
    burst = StepInput(ids, list(range(len(lens))), [0] * len(lens), lens, None)
    burst_slots = [i % a.adapters for i, n in enumerate(lens) for _ in range(n)]
    calib = _prefill_input(tokens, shape.vocab, dev, item=512)
    n_items = len(calib.new)
    calib_slots = [i % a.adapters for i in range(n_items) for _ in range(calib.new[i])]
    dec = StepInput(torch.zeros(8, dtype=torch.long, device=dev), list(range(8)), [100] * 8, [1] * 8,
                    slots.meta([i % 4 for i in range(8)]))

    def between() -> None:
        model.forward(dec, kv)

    def run(inp: StepInput, ts: list[int] | None) -> None:
        runner.run(inp, ts or [-1] * sum(inp.new)).argmax(-1)

    timer.sync()
    t0 = time.perf_counter()
    run(burst, burst_slots)
    timer.sync()
    print(f"first burst prefill ({tokens} tokens, {len(lens)} requests, {a.adapters} adapters): "
          f"{(time.perf_counter() - t0) * 1e3:.1f} ms", flush=True)
    med = {}
    for name, inp, ts in [("burst", burst, burst_slots), ("burst, no LoRA", burst, None),
                          ("calibration input", calib, calib_slots),
                          ("calibration input, no LoRA", calib, None)]:
        med[name] = timer.median(lambda inp=inp, ts=ts: run(inp, ts), a.reps, warmup=1, between=between)
        print(f"{name}: median {med[name] * 1e3:.1f} ms", flush=True)
    coef = attention_coefficient(lens, med["burst, no LoRA"], med["calibration input, no LoRA"], "causal")
    print(f"attention: {coef:.2f} ms per million causal query-key cells", flush=True)
    idle = []
    for _ in range(3):
        between()
        timer.sync()
        time.sleep(0.3)
        t0 = time.perf_counter()
        run(burst, burst_slots)
        timer.sync()
        idle.append((time.perf_counter() - t0) * 1e3)
    print("burst after 300 ms host idle: " + " ".join(f"{x:.1f}" for x in idle) + " ms", flush=True)


if __name__ == "__main__":
    main()
