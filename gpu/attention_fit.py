"""The prefill attention coefficient (`compute.attention_ms_per_mcell`) from two timings of
the same token count in different layouts (gpu.diag_prefill's log). Torch-free, so
`lorasim calibrate --attention-from-diag` runs anywhere."""

from __future__ import annotations

import re

from sim.core.effects import Batch, BatchItem
from sim.hw.compute import attention_cells, reference_cells

# light-bursty's burst at t = 7.21 s (round 8): 9 requests, 3095 tokens
BURST_LENS = (413, 406, 494, 318, 318, 327, 406, 277, 136)


def attention_coefficient(lens: list[int], burst_s: float, calibration_s: float) -> float:
    """ms per million query-key cells: the difference of a prefill of requests `lens` and
    calibration's input of the same tokens (both without LoRA), over their cells'."""
    batch = Batch("prefill", tuple(BatchItem(i, None, -1, 0, n, 0) for i, n in enumerate(lens)))
    d_cells = attention_cells(batch) - reference_cells(sum(lens))
    if d_cells == 0:
        raise ValueError("these lengths have calibration's layout: no difference to measure")
    return (burst_s - calibration_s) * 1e3 / (d_cells * 1e-6)


def coefficient_from_log(text: str) -> float:
    """From a gpu.diag_prefill log: its "lens:" line (default BURST_LENS, the logs before the
    line existed) and its two no-LoRA medians."""
    m = re.search(r"^lens: ([\d,]+)$", text, re.M)
    lens = [int(x) for x in m[1].split(",")] if m else list(BURST_LENS)

    def median(name: str) -> float:
        m = re.search(rf"^{re.escape(name)}: median ([\d.]+) ms$", text, re.M)
        if m is None:
            raise ValueError(f"no '{name}: median ... ms' line: is this a gpu.diag_prefill log?")
        return float(m[1]) / 1e3

    return attention_coefficient(lens, median("burst, no LoRA"), median("calibration input, no LoRA"))
