"""The prefill attention coefficient (`compute.attention_ms_per_mcell`) from two timings of
the same token count in different layouts (gpu.diag_prefill's log). Torch-free, so
`lorasim calibrate --attention-from-diag` runs anywhere.

The cells are counted the way the harness that wrote the log does its attention
(`compute.attention_cells`): a log with a "cells: causal" line is the paged harness's
(issue #26: each request's new tokens over its own keys); one without is the padded
harness's before it (every request padded to the longest)."""

from __future__ import annotations

import re

from sim.core.effects import Batch, BatchItem
from sim.hw.compute import attention_cells, reference_cells

# light-bursty's burst at t = 7.21 s (round 8): 9 requests, 3095 tokens
BURST_LENS = (413, 406, 494, 318, 318, 327, 406, 277, 136)


def attention_coefficient(
    lens: list[int], burst_s: float, calibration_s: float, layout: str = "padded"
) -> float:
    """ms per million query-key cells (counted as `layout` says): the difference of a prefill
    of requests `lens` and calibration's input of the same tokens (both without LoRA), over
    their cells'."""
    batch = Batch("prefill", tuple(BatchItem(i, None, -1, 0, n, 0) for i, n in enumerate(lens)))
    d_cells = attention_cells(batch, layout) - reference_cells(sum(lens), layout=layout)
    if d_cells == 0:
        raise ValueError("these lengths have calibration's layout: no difference to measure")
    return (burst_s - calibration_s) * 1e3 / (d_cells * 1e-6)


def cells_from_log(text: str) -> str:
    """How a gpu.diag_prefill log counts cells: its "cells:" line, "padded" without one (the
    logs of the harness before issue #26)."""
    m = re.search(r"^cells: (padded|causal)\b", text, re.M)
    return m[1] if m else "padded"


def coefficient_from_log(text: str) -> float:
    """From a gpu.diag_prefill log: its "lens:" line (default BURST_LENS, the logs before the
    line existed), its "cells:" line (cells_from_log) and its two no-LoRA medians."""
    m = re.search(r"^lens: ([\d,]+)$", text, re.M)
    lens = [int(x) for x in m[1].split(",")] if m else list(BURST_LENS)

    def median(name: str) -> float:
        m = re.search(rf"^{re.escape(name)}: median ([\d.]+) ms$", text, re.M)
        if m is None:
            raise ValueError(f"no '{name}: median ... ms' line: is this a gpu.diag_prefill log?")
        return float(m[1]) / 1e3

    return attention_coefficient(
        lens, median("burst, no LoRA"), median("calibration input, no LoRA"), cells_from_log(text)
    )
