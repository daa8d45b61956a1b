"""Sample the analytic models onto the measured-profile tables.

Produces a profile YAML in exactly the format `lorasim calibrate` writes, so users can see
(and diff against) what the analytic defaults assume. Not a measurement.

    python -m sim.hw.export --preset h200 --model llama-3.1-8b -o configs/hardware/h200-analytic.yaml
"""

from __future__ import annotations

import argparse

from sim.core.effects import Batch, BatchItem
from sim.core.model import ModelShape
from sim.hw.compute import RooflineCompute
from sim.hw.pcie import CopyModel
from sim.hw.presets import preset
from sim.hw.profile import ComputeProfile, Grid, HardwareProfile, PcieProfile, Table

COPY_SIZES = tuple(4096 * 4**k for k in range(10))  # 4 KiB .. 1 GiB
PREFILL_TOKENS = (1, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
DECODE_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)
DECODE_CONTEXT = (0, 128, 512, 1024, 2048, 4096, 8192, 16384, 32768)
LORA_ADAPTERS = (0, 1, 2, 4, 8, 16)
LORA_BATCH, LORA_CONTEXT = 64, 512  # decode batch the LoRA extra is sampled on


def _decode(n: int, context: int, adapters: int = 0, rank: int = 0) -> Batch:
    items = tuple(
        BatchItem(
            rid=k,
            adapter=f"a{k % adapters}" if adapters else None,
            slot=k % adapters if adapters else -1,
            rank=rank if adapters else 0,
            new_tokens=1,
            context=context,
        )
        for k in range(n)
    )
    return Batch("decode", items)


def analytic_profile(preset_name: str, shape: ModelShape, command: str = "", lora_rank: int = 64) -> HardwareProfile:
    spec = preset(preset_name)
    copy = CopyModel.from_spec(spec)
    comp = RooflineCompute(shape, spec)
    pinned = tuple(copy.dma_time(s, 1, "pinned") for s in COPY_SIZES)
    pageable = tuple(copy.dma_time(s, 1, "pageable") for s in COPY_SIZES)
    prefill = tuple(
        comp.forward_time(Batch("prefill", (BatchItem(0, None, -1, 0, t, 0),))) for t in PREFILL_TOKENS
    )
    decode = tuple(tuple(comp.forward_time(_decode(b, c)) for c in DECODE_CONTEXT) for b in DECODE_BATCH)
    base = comp.forward_time(_decode(LORA_BATCH, LORA_CONTEXT))
    lora = tuple(
        comp.forward_time(_decode(max(LORA_BATCH, a), LORA_CONTEXT, a, lora_rank)) - base if a else 0.0
        for a in LORA_ADAPTERS
    )
    return HardwareProfile(
        name=f"{spec.name}-analytic",
        device=f"{spec.name} (analytic preset)",
        model=shape.name,
        command=command,
        pcie=PcieProfile(
            pinned=Table(COPY_SIZES, pinned),
            pageable=Table(COPY_SIZES, pageable),
            copy_overhead_us=spec.copy_overhead_us,
            pin_warm_gbps=spec.pin_warm_gbps,
            pin_cold_gbps=spec.pin_cold_gbps,
            disk_gbps=spec.disk_gbps,
            contention=spec.contention,
        ),
        compute=ComputeProfile(
            prefill=Table(PREFILL_TOKENS, prefill),
            decode=Grid(DECODE_BATCH, DECODE_CONTEXT, decode),
            lora=Table(LORA_ADAPTERS, lora),
            lora_rank=lora_rank,
        ),
    )


def main(argv: list[str] | None = None) -> None:
    from sim.config import MODEL_PRESETS

    ap = argparse.ArgumentParser(prog="python -m sim.hw.export", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="h200")
    ap.add_argument("--model", default="llama-3.1-8b", choices=sorted(MODEL_PRESETS))
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args(argv)
    cmd = (
        f"python -m sim.hw.export --preset {a.preset} --model {a.model} -o {a.out}"
        " (analytic roofline/PCIe model sampled onto the profile tables; not a measurement)"
    )
    analytic_profile(a.preset, MODEL_PRESETS[a.model], cmd).to_yaml(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
