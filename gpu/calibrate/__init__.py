"""Measure this machine and write a HardwareProfile (docs/hardware_profile.md), or refit one
from a calibration's log.

The package is split by what is measured:
- `copies`: H2D copy curves, per-copy overhead, pinning and unpinning, disk, contention and
  one adapter's copy (the `pcie` section);
- `compute`: prefill, decode and LoRA forward times, launch fraction and attention (the
  `compute` tables);
- `rates`: the device's HBM read bandwidth and dense bf16 matmul rate (CUDA only;
  `compute.hbm_read_gbps`, `compute.matmul_tflops`);
- `serving_loop`: the host gap between forwards, the wake-up and the copy issue time, from
  short runs through the CUDA driver;
- `fit`: the rules that turn raw medians into tables; `refit`: the same rules over a
  calibration log (`lorasim calibrate --refit-from`);
- `run`: a whole calibration (`calibrate`); `timer` and `grids`: what the others share.

This module re-exports the public names, so `from gpu.calibrate import calibrate` works.
"""

from gpu.calibrate.compute import (
    ComputeTables,
    lora_passes,
    measure_attention,
    measure_compute,
    measure_launch_fraction,
    with_eager_edge,
)
from gpu.calibrate.copies import (
    PinCost,
    measure_adapter_copy,
    measure_contention,
    measure_copies,
    measure_copy_overhead,
    measure_disk,
    measure_pin,
    measure_pin_cost,
    measure_pin_per_tensor,
    measure_reload,
    measure_unpin_per_tensor,
    report_adapter_copy,
    report_unpin,
)
from gpu.calibrate.fit import (
    copy_gap_us,
    despike,
    fit_lora_prefill,
    isotonic,
    isotonic_columns,
    lower_envelope,
    monotone_grid,
)
from gpu.calibrate.grids import GB, GRIDS, KB, MB
from gpu.calibrate.rates import measure_hbm_read, measure_matmul_rate, report_rates
from gpu.calibrate.refit import PCIE_REFIT_PARTS, REFIT_PARTS, UnknownRefitPart, refit_from_log
from gpu.calibrate.run import calibrate, device_name
from gpu.calibrate.serving_loop import HostTiming, measure_host_gap
from gpu.calibrate.timer import Timer

__all__ = [
    "GB",
    "GRIDS",
    "KB",
    "MB",
    "PCIE_REFIT_PARTS",
    "REFIT_PARTS",
    "ComputeTables",
    "HostTiming",
    "PinCost",
    "Timer",
    "UnknownRefitPart",
    "calibrate",
    "copy_gap_us",
    "despike",
    "device_name",
    "fit_lora_prefill",
    "isotonic",
    "isotonic_columns",
    "lora_passes",
    "lower_envelope",
    "measure_adapter_copy",
    "measure_attention",
    "measure_compute",
    "measure_contention",
    "measure_copies",
    "measure_copy_overhead",
    "measure_disk",
    "measure_reload",
    "measure_hbm_read",
    "measure_host_gap",
    "measure_launch_fraction",
    "measure_matmul_rate",
    "measure_pin",
    "measure_pin_cost",
    "measure_pin_per_tensor",
    "measure_unpin_per_tensor",
    "monotone_grid",
    "refit_from_log",
    "report_adapter_copy",
    "report_rates",
    "report_unpin",
    "with_eager_edge",
]
