"""Is calibration's decode LoRA extra what the driver's decode steps pay? (GPU only.)

python -m gpu.diag_lora [--rank 64] [--context 384] [--steps 8]: for decode batches of
1-16 requests and 1 or 4 adapters, times the step the calibrate way (prepare + one step,
synchronised, alternating with the base-model step: `paired`) and the driver's way (one
prepare, then `--steps` steps each waited for: `block`), twice in opposite orders. Round 10's
saturated runs paid the same per step on two machines (rank 64, 4 adapters: 18.7 ms at batch
4, 17.6-17.9 at 5-8, 20.0 at 9-16), while two calibrations' paired extras differed by up to
2.3 ms a cell.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from gpu.calibrate.timer import Timer
from gpu.decode_graphs import DecodeRunner
from gpu.lora import LoraSlots
from gpu.model import KVPool, LlamaModel
from sim.config import MODEL_PRESETS


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--context", type=int, default=384)
    ap.add_argument("--steps", type=int, default=8, help="steps a block (driver way)")
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args(argv)
    dev = torch.device("cuda")
    shape = MODEL_PRESETS["llama-3.1-8b"]
    slots = LoraSlots.random(shape, 16, args.rank, dev, torch.bfloat16)
    model = LlamaModel(shape, device=dev, dtype=torch.bfloat16, lora=slots)
    kv = KVPool(shape, 16, args.context + 4 * args.steps * args.reps, dev, torch.bfloat16)
    runner = DecodeRunner(model, kv, max_batch=16)
    timer = Timer(dev)
    c = args.context

    def one(b: int, n: int):
        ts = [i % n for i in range(b)] if n else [-1] * b

        def run():
            runner.prepare(list(range(b)), [c] * b, ts)
            runner.step()

        return run

    def block(b: int, n: int):
        ts = [i % n for i in range(b)] if n else [-1] * b

        def run():
            runner.prepare(list(range(b)), [c] * b, ts)
            for _ in range(args.steps):
                runner.step()
                timer.sync()

        return run

    cells = [(b, n) for n in (1, 4) for b in (1, 2, 4, 8, 16) if b >= n]
    for rnd, order in enumerate((cells, cells[::-1]), start=1):
        for b, n in order:
            paired = timer.paired_extra(one(b, 0), one(b, n), args.reps, warmup=2)
            base, lora = timer._alternate(block(b, 0), block(b, n), args.reps, 2, None)
            k = args.steps
            step_b, step_l = statistics.median(base) / k, statistics.median(lora) / k
            extra = statistics.median(y - x for x, y in zip(base, lora, strict=True)) / k
            print(
                f"round {rnd} rank {args.rank} batch {b:>2} adapters {n}: paired extra "
                f"{paired * 1e3:6.2f} ms | block step {step_b * 1e3:6.2f} -> {step_l * 1e3:6.2f} ms, "
                f"extra {extra * 1e3:6.2f} ms",
                flush=True,
            )


if __name__ == "__main__":
    main()
