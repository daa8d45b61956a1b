"""One scenario under one policy -> RunResult. The single entry point sweeps and the CLI use."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class RunResult:
    """Everything a run produces.

    records:  one row per request (metrics.RECORD_COLUMNS): arrival, first_token, finish,
              ttft, e2e, tpot, adapter, hit, adapter_wait, input_len, output_len, policy.
    summary:  flat dict of scalars (metrics.summarize): ttft_mean_ms, ttft_p50_ms, ...
    timeline: one row per interval on a lane: lane ("pcie"|"compute"), start, end, kind
              ("prefill"|"decode"|"blocking"|"prefetch"|"overlap"), label.
    itl:      all inter-token latencies in seconds (numpy array), for ITL summaries/plots.
    """

    policy: str
    records: pd.DataFrame
    summary: dict
    timeline: pd.DataFrame
    itl: object = None
    meta: dict = field(default_factory=dict)
