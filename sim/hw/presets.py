"""Analytic GPU/PCIe presets: the default hardware when no measured profile is given.

Units: bandwidths in GB/s (10^9 bytes), peaks in TFLOP/s (dense bf16), times in µs.
H200 numbers come from DESIGN §6/§8 (PCIe Gen5 x16, torch 2.11); the efficiency factors are
fitted so an H200 Llama-3.1-8B layer stack takes ~6.6 ms for 1–128 tokens, ~20 ms at 1024
and ~40 ms at 2048 tokens, as measured. Other presets reuse those efficiencies with their
datasheet peaks, which is the best guess short of running `lorasim calibrate`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class GpuSpec:
    name: str
    # compute (roofline)
    peak_tflops: float  # dense bf16 datasheet peak
    hbm_gbps: float  # datasheet HBM bandwidth
    flops_eff: float  # attained fraction of peak_tflops in large GEMMs
    hbm_eff: float  # attained fraction of hbm_gbps when weight-read bound
    forward_overhead_us: float  # per forward: launch gaps, sampling, scheduler sync
    lora_kernel_us: float  # per LoRA kernel launch (shrink + expand per target per layer)
    # host -> device copies
    pinned_gbps: float  # peak H2D from pinned memory
    pageable_gbps: float  # peak H2D from pageable memory (staged by the driver)
    copy_overhead_us: float  # fixed cost of each cudaMemcpyAsync
    pin_warm_gbps: float  # pinning when torch's caching host allocator has free blocks
    pin_cold_gbps: float  # fresh pinned allocations (cudaHostAlloc/page locking)
    disk_gbps: float  # adapter files from local NVMe into host memory
    contention: float = 0.0  # fractional compute slowdown while a side-stream copy runs

    @property
    def eff_flops(self) -> float:
        """Attained FLOP/s."""
        return self.peak_tflops * 1e12 * self.flops_eff

    @property
    def eff_hbm(self) -> float:
        """Attained HBM bytes/s."""
        return self.hbm_gbps * 1e9 * self.hbm_eff


# Fitted on the H200 anchors above (see tests/sim/hw/test_compute.py).
_FLOPS_EFF = 0.75
_HBM_EFF = 0.45

# Pageable: DESIGN measured 9–13 GB/s for large copies but 41.5 ms for a 320 MiB adapter
# as 448 module copies; 9 GB/s reproduces the latter within ~6% and stays in the range.
PRESETS: dict[str, GpuSpec] = {
    "h200": GpuSpec(
        name="h200",
        peak_tflops=989.0,
        hbm_gbps=4800.0,
        flops_eff=_FLOPS_EFF,
        hbm_eff=_HBM_EFF,
        forward_overhead_us=200.0,
        lora_kernel_us=1.0,
        pinned_gbps=55.5,
        pageable_gbps=9.0,
        copy_overhead_us=4.0,
        pin_warm_gbps=23.0,  # 320 MiB re-pinned in 14.5 ms
        pin_cold_gbps=1.0,  # 1.28 GB fresh pin took 1.24 s
        disk_gbps=2.0,
    ),
    "h100": GpuSpec(
        name="h100",
        peak_tflops=989.0,
        hbm_gbps=3350.0,
        flops_eff=_FLOPS_EFF,
        hbm_eff=_HBM_EFF,
        forward_overhead_us=200.0,
        lora_kernel_us=1.0,
        pinned_gbps=53.0,  # also PCIe Gen5 x16
        pageable_gbps=9.0,
        copy_overhead_us=4.0,
        pin_warm_gbps=23.0,
        pin_cold_gbps=1.0,
        disk_gbps=2.0,
    ),
    "a100": GpuSpec(
        name="a100",
        peak_tflops=312.0,
        hbm_gbps=2039.0,
        flops_eff=_FLOPS_EFF,
        hbm_eff=_HBM_EFF,
        forward_overhead_us=250.0,
        lora_kernel_us=1.5,
        pinned_gbps=25.0,  # PCIe Gen4 x16
        pageable_gbps=7.0,
        copy_overhead_us=5.0,
        pin_warm_gbps=20.0,
        pin_cold_gbps=1.0,
        disk_gbps=2.0,
    ),
    # The GPU harness running on a CPU (tests): "device" memory is host memory.
    "cpu": GpuSpec(
        name="cpu",
        peak_tflops=0.2,
        hbm_gbps=20.0,
        flops_eff=0.5,
        hbm_eff=0.5,
        forward_overhead_us=50.0,
        lora_kernel_us=5.0,
        pinned_gbps=8.0,
        pageable_gbps=8.0,
        copy_overhead_us=1.0,
        pin_warm_gbps=8.0,
        pin_cold_gbps=2.0,
        disk_gbps=1.0,
    ),
}


def preset(name: str, **overrides: float | None) -> GpuSpec:
    """A preset with the non-None overrides applied (HardwareCfg keys use the same names)."""
    try:
        spec = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown GPU preset {name!r}; expected one of {sorted(PRESETS)}") from None
    return replace(spec, **{k: v for k, v in overrides.items() if v is not None})
