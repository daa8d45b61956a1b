"""Refit a profile from a calibration log, measuring nothing (`calibrate --refit-from`).

A calibration log holds the raw medians before any fitting; re-reading them with the current
rules (gpu.calibrate.fit) lets a fix to a rule reach an existing measurement, and lets a part
re-measured later (`--refit-only`) join a profile made by another calibration.

Logs of two harnesses are read. The paged-KV harness (issue #26: paged attention, SGMV LoRA,
one CUDA graph a decode step) says so on its decode path line ("..., paged KV"); its profile
prices decode at the batch's mean context, pads no adapter counts and counts prefill
attention cells causally. A log whose decode path line does not say it (or that has none) is
the padded harness's before it: decode at the longest context, adapter counts padded to the
graphs' buckets, attention cells padded, as the committed H200 profile was made."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import replace

from gpu.calibrate.fit import copy_gap_us, fit_lora_prefill, isotonic, monotone_grid
from gpu.decode_graphs import batch_buckets
from gpu.prefill_graphs import token_buckets
from sim.hw.profile import Grid, HardwareProfile, LoraPrefillTable, LoraTable, PcieProfile, Table

_LOG_PATTERNS = {
    # "..., paged KV" in the rest of the line: the paged harness (module docstring)
    "decode_path": re.compile(r"^  decode path: (gpu\.decode_graphs|eager)(.*)$"),
    "prefill_path": re.compile(
        r"^  prefill path: (?:gpu\.prefill_graphs up to (\d+) tokens(?:.*?padded past ([\d,]+))?|eager)"
    ),
    "prefill": re.compile(r"^  prefill\s+(\d+) tokens:\s+([\d.]+) ms$"),
    "decode": re.compile(r"^  decode batch\s+(\d+):((?:\s+[\d.]+)+) ms$"),
    "lora": re.compile(r"^  lora decode extra, rank\s+(\d+), vs adapters: (.*)$"),  # before round 7
    "lora_decode": re.compile(r"^  lora decode extra, rank\s+(\d+), batch\s+(\d+), vs adapters: (.*)$"),
    "lora_prefill": re.compile(
        r"^  lora prefill extra, rank\s+(\d+),\s+(\d+) tokens, vs adapters: (.*)$"
    ),
    "launch": re.compile(r"^  launch fraction ([\d.]+) "),
    # "per million causal query-key cells": counted causally; without the word: padded
    "attention": re.compile(r"^  prefill attention ([\d.]+) ms per million (causal )?"),
    "hbm_read": re.compile(r"^  HBM read ([\d.]+) GB/s"),
    "matmul": re.compile(r"^  matmul ([\d.]+) TFLOP/s"),
    "host_gap": re.compile(r"^  host gap ([\d.]+) us between forwards"),
    "issue": re.compile(r"^  copy issue ([\d.]+) us/copy on the host"),
    "unpin": re.compile(r"^  unpin ([\d.]+) us/tensor"),
    "wake": re.compile(r"^  wake-up ([\d.]+) us from an idle arrival"),
    "adapter_copy": re.compile(
        r"^  adapter copy .*: flat ([\d.]+) ms .* per module \((\d+) copies\) ([\d.]+) ms$"
    ),
}


def adapter_buckets(max_adapters: int) -> list[int]:
    """Adapter counts the piecewise graphs of the padded-LoRA harness (before issue #26)
    padded a batch to: 1, 2, 4, 8, ... max. Logs of that harness refit with them."""
    sizes, n = {max_adapters}, 1
    while n < max_adapters:
        sizes.add(n)
        n *= 2
    return sorted(s for s in sizes if s >= 1)


def _pairs(text: str) -> tuple[list[int], list[float]]:
    keys, vals = [], []
    for item in text.split():
        k, v = item.split(":")
        keys.append(int(k))
        vals.append(float(v.removesuffix("ms")) / 1e3)
    return keys, vals


def _plane_table(
    planes: dict[int, dict[int, tuple[list[int], list[float]]]],
    fit: Callable[[list[list[float]]], list[list[float]]] = lambda rows: rows,
) -> LoraPrefillTable:
    """A (rank, tokens or batch, adapters) table from log rows {rank: {x: (adapters, values)}},
    each rank's plane through `fit`."""
    ranks = sorted(planes)
    xs = sorted(planes[ranks[0]])
    return LoraPrefillTable(
        tuple(float(r) for r in ranks),
        tuple(float(x) for x in xs),
        tuple(float(a) for a in planes[ranks[0]][xs[0]][0]),
        tuple(tuple(tuple(row) for row in fit([planes[r][x][1] for x in xs])) for r in ranks),
    )


# what `refit_from_log(only=...)` can take from a log alone: compute fields, with the fields
# that are read with them (a LoRA plane's adapter buckets)
REFIT_PARTS: dict[str, tuple[str, ...]] = {
    "prefill": ("prefill", "prefill_buckets"),
    "decode": ("decode", "batch_buckets", "decode_context"),
    "lora_decode": ("lora", "lora_ranks", "lora_decode", "adapter_buckets"),
    "lora_prefill": ("lora_prefill",),
    "launch_fraction": ("launch_fraction",),
    "attention": ("attention_ms_per_mcell", "attention_cells"),
    "host_gap": ("forward_overhead_us",),
    "wake": ("wake_us",),
    "rates": ("hbm_read_gbps", "matmul_tflops"),
}
# ...and PCIe fields read from the adapter copy and copy issue lines (`python -m gpu.diag_copy`
# prints just those: a host's copy issuing re-measured without a whole calibration)
PCIE_REFIT_PARTS: dict[str, tuple[str, ...]] = {
    "copy_issue": ("issue_us",),
    "copy_gap": ("copy_gap_us",),
    "unpin": ("unpin_per_tensor_us",),
}


class UnknownRefitPart(ValueError):
    """`refit_from_log(only=...)` named a part that is not in REFIT_PARTS."""


def refit_from_log(
    profile: HardwareProfile, log_text: str, only: Collection[str] | None = None
) -> HardwareProfile:
    """The profile with its compute tables re-derived from the raw medians a calibration
    printed (its log), by the current fitting rules: lets a fix to the fitting reach an
    existing measurement without a GPU. The grids are the log's; PCIe is kept as it is but
    for the back-to-back copy gap, derived from the adapter copy line, and the copy issue
    time. The pricing rules are the harness's that wrote the log (module docstring): a paged
    harness's log gives `decode_context: mean` and no adapter buckets; the padded harness's
    `decode_context: max` and, when both paths are graphed, the LoRA grid's adapter counts as
    buckets. Figures a log does not state (attention, host gap, wake-up, rates: older logs,
    or no CUDA) keep the profile's.

    `only` (names of REFIT_PARTS) takes just those parts from the log and keeps the rest of
    the profile, PCIe included: a re-measured table (say the decode LoRA plane on a finer
    grid) joins a profile whose other tables came from another calibration."""
    if only is not None:
        parts = {**REFIT_PARTS, **PCIE_REFIT_PARTS}
        unknown = sorted(set(only) - set(parts))
        if unknown:
            raise UnknownRefitPart(f"unknown part(s) {', '.join(unknown)}; expected some of {', '.join(parts)}")
        comp_fields = {f for part in only if part in REFIT_PARTS for f in REFIT_PARTS[part]}
        pcie_fields = {f for part in only if part in PCIE_REFIT_PARTS for f in PCIE_REFIT_PARTS[part]}
        # a log of copy lines only (gpu.diag_copy) has no compute tables to refit
        full = refit_from_log(profile, log_text) if comp_fields else replace(
            profile, pcie=_pcie_from_log(profile.pcie, log_text))
        return replace(
            profile,
            compute=replace(profile.compute, **{f: getattr(full.compute, f) for f in comp_fields}),
            pcie=replace(profile.pcie, **{f: getattr(full.pcie, f) for f in pcie_fields}),
        )

    prefill: dict[int, float] = {}
    decode: dict[int, list[float]] = {}
    lora: dict[int, tuple[list[int], list[float]]] = {}
    planes: dict[int, dict[int, tuple[list[int], list[float]]]] = {}
    dplanes: dict[int, dict[int, tuple[list[int], list[float]]]] = {}
    launch: float | None = None
    attention: float | None = None  # logs before round 8 do not have it: keep the profile's
    host_gap: float | None = None  # likewise (us)
    buckets: tuple[int, ...] | None = None  # None: the log does not say; keep the profile's
    wake: float | None = None  # likewise (us)
    attention_cells = "padded"  # how the attention line counts its cells
    hbm: float | None = None  # GB/s; logs before issue #26 and CPU logs have no rates
    matmul: float | None = None  # TFLOP/s
    graphed_decode: bool | None = None
    paged = False  # the paged-KV harness (issue #26)
    for line in log_text.splitlines():
        if m := _LOG_PATTERNS["prefill"].match(line):
            prefill[int(m[1])] = float(m[2]) / 1e3
        elif m := _LOG_PATTERNS["decode"].match(line):
            decode[int(m[1])] = [float(x) / 1e3 for x in m[2].split()]
        elif m := _LOG_PATTERNS["lora"].match(line):
            lora[int(m[1])] = _pairs(m[2])
        elif m := _LOG_PATTERNS["lora_decode"].match(line):
            dplanes.setdefault(int(m[1]), {})[int(m[2])] = _pairs(m[3])
        elif m := _LOG_PATTERNS["lora_prefill"].match(line):
            planes.setdefault(int(m[1]), {})[int(m[2])] = _pairs(m[3])
        elif m := _LOG_PATTERNS["launch"].match(line):
            launch = float(m[1])
        elif m := _LOG_PATTERNS["attention"].match(line):
            attention = float(m[1])
            attention_cells = "causal" if m[2] else "padded"
        elif m := _LOG_PATTERNS["hbm_read"].match(line):
            hbm = float(m[1])
        elif m := _LOG_PATTERNS["matmul"].match(line):
            matmul = float(m[1])
        elif m := _LOG_PATTERNS["host_gap"].match(line):
            host_gap = float(m[1])
        elif m := _LOG_PATTERNS["wake"].match(line):
            wake = float(m[1])
        elif m := _LOG_PATTERNS["prefill_path"].match(line):
            skip = [int(t) for t in m[2].split(",")] if m[2] else []
            buckets = tuple(token_buckets(int(m[1]), skip)) if m[1] else ()
        elif m := _LOG_PATTERNS["decode_path"].match(line):
            graphed_decode = m[1] != "eager"
            paged = "paged KV" in m[2]
    if not prefill or not decode:
        raise ValueError("no prefill/decode rows found: is this the log of `lorasim calibrate`?")
    old = profile.compute
    toks = sorted(prefill)
    batch = sorted(decode)
    comp = replace(
        old,
        # paged attention reads each request's own context; the padded harness read every row
        # up to the longest (the grid has equal contexts, so the table is the same either way)
        decode_context="mean" if paged else "max",
        prefill=Table(tuple(float(t) for t in toks), tuple(isotonic([prefill[t] for t in toks]))),
        decode=Grid(
            tuple(float(b) for b in batch),
            old.decode.context,
            tuple(tuple(r) for r in monotone_grid([decode[b] for b in batch])),
        ),
    )
    if lora:
        ranks = sorted(lora)
        comp = replace(
            comp,
            lora=None,
            lora_ranks=LoraTable(
                tuple(float(r) for r in ranks),
                tuple(float(a) for a in lora[ranks[0]][0]),
                tuple(tuple(lora[r][1]) for r in ranks),
            ),
        )
    if dplanes:
        comp = replace(comp, lora=None, lora_ranks=None, lora_decode=_plane_table(dplanes))
    if planes:
        comp = replace(comp, lora_prefill=_plane_table(planes, fit_lora_prefill))
    if launch is not None:
        comp = replace(comp, launch_fraction=launch)
    if attention is not None:
        comp = replace(comp, attention_ms_per_mcell=attention, attention_cells=attention_cells)
    if hbm is not None:
        comp = replace(comp, hbm_read_gbps=hbm)
    if matmul is not None:
        comp = replace(comp, matmul_tflops=matmul)
    if host_gap is not None:
        comp = replace(comp, forward_overhead_us=host_gap)
    if wake is not None:
        comp = replace(comp, wake_us=wake)
    if buckets is not None:
        comp = replace(comp, prefill_buckets=buckets)
    if paged:  # SGMV LoRA pads no adapter counts
        comp = replace(comp, adapter_buckets=())
    elif graphed_decode is not None and buckets is not None and dplanes:
        # as the padded harness's calibration wrote it: graphed forwards pad adapters to the
        # measured counts
        most = int(max(comp.lora_decode.adapters))
        comp = replace(comp, adapter_buckets=tuple(adapter_buckets(most)) if graphed_decode and buckets else ())
    if graphed_decode is not None:
        comp = replace(comp, batch_buckets=tuple(batch_buckets(batch[-1])) if graphed_decode else ())
    return replace(profile, pcie=_pcie_from_log(profile.pcie, log_text), compute=comp)


def _pcie_from_log(pcie: PcieProfile, log_text: str) -> PcieProfile:
    """`pcie` with the back-to-back copy gap (from the adapter copy line) and the copy issue
    time a log states; what it does not state is kept (logs before round 9 have no issue
    line). The last line of each kind wins."""
    for line in log_text.splitlines():
        if m := _LOG_PATTERNS["adapter_copy"].match(line):
            pcie = replace(pcie, copy_gap_us=copy_gap_us(float(m[1]) / 1e3, float(m[3]) / 1e3, int(m[2])))
        elif m := _LOG_PATTERNS["issue"].match(line):
            pcie = replace(pcie, issue_us=float(m[1]))
        elif m := _LOG_PATTERNS["unpin"].match(line):
            pcie = replace(pcie, unpin_per_tensor_us=float(m[1]))
    return pcie
