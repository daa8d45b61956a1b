"""Launch configurations of the Triton kernels, kept as data so they can be tuned per GPU.

Keys of `CONFIGS` are `torch.cuda.get_device_name()` prefixes ("NVIDIA H200", "NVIDIA H100");
"default" is used for any other device and under the Triton interpreter (where only
correctness matters, so it also wants small tiles: the interpreter runs every program in
Python). Each op has a "decode" entry (few tokens per segment/sequence) and a "prefill"
entry; the wrappers pick by a host-side quantity that is fixed for a CUDA-graph bucket
(the segment length bound, the batch size), never by device data.

Why these numbers (H100/H200, bf16, head_dim 128, rank <= 64):
- SGMV shrink reads A [r, in] once per (segment, rank tile); with few segments and tokens
  there are too few such units to fill 132 SMs, and split-K over `in` (4096/14336)
  supplies the parallelism (each split writes its own fp32 partial of h, which the expand
  sums as it reads it); SPLIT_K is a cap. The "*_decode" entries are the segment-loop
  schedule of decode-sized batches (segments of at most 64 tokens): PROGRAMS_PER_SM sizes
  its fixed grid, and the shrink's split is chosen on the device from the real segment
  count. `benchmarks/bench_kernels.py --tune-sgmv --reps 20` sweeps them over a whole
  decode step; on an H100 (2026-12-06) it took shrink_decode from BLOCK_K 256 / 1 program
  an SM to 128 / 2 (8482 -> 8162 us, the sum over its three cases of 32 layers' launches).
- SGMV expand reads B^T [r, out]: r is at most 64 so one K step suffices; wide N tiles
  keep B^T reads coalesced. For prefill a shrink SPLIT_K cap above 4 only slowed it down
  on an H100. `N_PER_UNIT` (segment loop, default 1) gives a unit that many output tiles,
  summing h's split-K partials once instead of once a tile: 2 with 3 stages took the
  expand's sum from 8162 to 5782 us (-29 %) in the same H100 sweep. The H200 shares this
  Hopper table untuned.
- Paged decode attention is a pure KV stream: one program per (sequence, KV head, split)
  reads each K/V row once for the group's query heads. Measured on an H100 at batch 64 x
  context 2048 (bench_kernels.py --tune): BLOCK_N=64 with 8 warps and 2 splits reads KV at
  93% of the measured HBM read rate (BLOCK_N=32/4 warps, SGLang's choice: 84-89%).
  `decode_splits` maps a batch-size bound to the number of splits so that
  batch x kv_heads x splits covers the SMs a few times over.
- Paged prefill attention is FlashAttention-2 shaped: 128 query rows (GQA heads packed
  into rows) x 32 keys per tile, 8 warps (64 keys spill registers with paged gathers).
- The fused elementwise ops (norm.py, rope_kv.py, activation.py) are memory/latency bound
  and not yet measured: RMSNorm takes one row per program with the whole hidden dim in one
  block (4096 bf16 = 16 elements, 32 bytes, a thread at 8 warps);
  RoPE + KV write one (token, KV head) per program (Llama-8B: 4 q heads + k + v, 768
  elements); SiLU*mul BLOCK 1024 columns per program (14 programs for one 14336-wide row).
- `prefill_pad_past`: prefill token buckets the graphed prefill skips, padding to the next
  one, because cuBLAS's bf16 weight GEMMs run slower at that row count than at a larger one.
  On an H100 (torch 2.11+cu130, `bench_prefill_graphs.py --gemms`, 2026-12-06) one prefill's
  weight matmuls took 14.86 ms at 448 rows and 9.94 ms at 512 (421 against 719 TFLOP/s), and
  all four Hopper calibrations logged the 448-token prefill 23-33 % slower than the 512-token
  one. (832 rows was 6 % slower than 896 in the same sweep; one sample, within what a
  re-run could move, so it is kept.)
- `lora_side`: which part of each projection's LoRA runs on the side stream, beside the base
  matmul (gpu.lora). On an H100 (`bench_harness.py`, 2026-12-06, one host, one run) the whole
  LoRA there, its delta added by the projection's consumer ("lora"), took the rank-64 LoRA
  extra of a decode step from 0.96 to 0.43 ms (1 adapter, batch 1) and from 2.58 to 2.09 ms
  (8 adapters, batch 64; all in line: 1.39 and 2.96 ms). The H200 keeps "shrink" until it is
  measured there: its committed profile was calibrated with it.
- The H100's prefill SGMV configs come from `bench_kernels.py --tune-sgmv-prefill --reps 10`
  (2026-12-07): 32-token tiles instead of 64, the shrink with 128-wide K steps and a split of
  up to 8, both with 4 warps. Over its three sweep cases (32 layers' launches) the shrink went
  from 34355 to 31859 us and the expand from 31726 to 29880 us; its `--sgmv-capacity` table,
  same run, took 4 adapters x 512 tokens from 14426 to 11853 us, 1 x 2048 from 14232 to
  11643 and 16 x 128 from 15096 to 12332 (graph capacity 16), but one adapter x 512 from 5347
  to 5804 (capacity 4: 5141 to 5905). The calibration that followed logs the rank-64 prefill
  LoRA plane 11 % lower in sum than the seventh session's, one adapter at 256-512 tokens
  13 % higher. The H200 keeps the first configs until it is tuned.
- ptxas -v on Triton's sm_90a PTX: no register spills except expand_prefill (156 B), which
  still measured fastest. Re-tune from benchmarks/bench_kernels.py (--tune, --tune-sgmv,
  --tune-sgmv-prefill) on a new GPU.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

Config = dict[str, Any]

_HOPPER: dict[str, Config] = {
    # *_decode: the segment-loop schedule (lora_shrink_op); SPLIT_K caps the split the
    # device picks for PROGRAMS_PER_SM programs per SM
    "shrink_decode": {"BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": 128, "SPLIT_K": 8,
                      "PROGRAMS_PER_SM": 2, "num_warps": 4, "num_stages": 3},
    "shrink_prefill": {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 64, "SPLIT_K": 4,
                       "num_warps": 8, "num_stages": 3},
    "expand_decode": {"BLOCK_M": 16, "BLOCK_N": 256, "BLOCK_K": 64, "N_PER_UNIT": 2,
                      "PROGRAMS_PER_SM": 4, "num_warps": 4, "num_stages": 3},
    "expand_prefill": {"BLOCK_M": 64, "BLOCK_N": 256, "BLOCK_K": 64,
                       "num_warps": 8, "num_stages": 2},
    "decode_attn": {"BLOCK_N": 64, "num_warps": 8, "num_stages": 2},
    "decode_reduce": {"num_warps": 4},
    # (largest batch, splits): the first row whose batch bound is >= B is used
    "decode_splits": [(1, 32), (4, 16), (16, 8), (32, 4), (1 << 30, 2)],
    "prefill_attn": {"BLOCK_M": 128, "BLOCK_N": 32, "num_warps": 8, "num_stages": 2},
    # elementwise ops (rows of hidden 4096 / intermediate 14336, bf16): see docstring
    "rms_norm": {"num_warps": 8},
    "rope_kv": {"num_warps": 4},
    "silu_mul": {"BLOCK": 1024, "num_warps": 4},
    "prefill_pad_past": [448],
    "lora_side": {"part": "shrink", "max_rows": 256},
}

CONFIGS: dict[str, dict[str, Config]] = {
    # the H200 keeps the shrink-only side part and the first prefill SGMV configs until they
    # are measured there (its profile prices those)
    "NVIDIA H200": _HOPPER,
    "NVIDIA H100": {
        **_HOPPER,
        "lora_side": {"part": "lora", "max_rows": 256},
        # bench_kernels.py --tune-sgmv-prefill --reps 10 (2026-12-07, see the docstring)
        "shrink_prefill": {"BLOCK_M": 32, "BLOCK_N": 64, "BLOCK_K": 128, "SPLIT_K": 8,
                           "PROGRAMS_PER_SM": 2, "num_warps": 4, "num_stages": 3},
        "expand_prefill": {"BLOCK_M": 32, "BLOCK_N": 256, "BLOCK_K": 64,
                           "num_warps": 4, "num_stages": 2},
    },
    "default": {
        "shrink_decode": {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32, "SPLIT_K": 2,
                          "PROGRAMS_PER_SM": 2, "num_warps": 4, "num_stages": 1},
        "shrink_prefill": {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 32, "SPLIT_K": 1,
                           "num_warps": 4, "num_stages": 1},
        "expand_decode": {"BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": 16, "PROGRAMS_PER_SM": 2,
                          "num_warps": 4, "num_stages": 1},
        "expand_prefill": {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 16,
                           "num_warps": 4, "num_stages": 1},
        "decode_attn": {"BLOCK_N": 32, "num_warps": 4, "num_stages": 1},
        "decode_reduce": {"num_warps": 4},
        "decode_splits": [(1, 8), (16, 4), (1 << 30, 2)],
        "prefill_attn": {"BLOCK_M": 16, "BLOCK_N": 16, "num_warps": 4, "num_stages": 1},
        "rms_norm": {"num_warps": 4},
        "rope_kv": {"num_warps": 4},
        "silu_mul": {"BLOCK": 256, "num_warps": 4},
        "prefill_pad_past": [],
        "lora_side": {"part": "shrink"},
    },
}

# a JSON file {op: {param: value}} whose entries replace the table's for every device: how
# `benchmarks/bench_kernels.py --tune-sgmv --write F` hands a tuned config to other runs
# (bench_harness, calibrate) without editing this file
OVERRIDE_ENV = "LORASIM_KERNEL_CONFIGS"


@functools.lru_cache(maxsize=4)
def _overrides(path: str) -> dict[str, Config]:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit(f"{path}: {OVERRIDE_ENV} must name a JSON file of op configs ({e})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise SystemExit(f"{path}: expected a JSON object {{op: {{param: value}}}}")
    return data


def device_configs(device_name: str | None) -> dict[str, Config]:
    """The config table of a device (by name prefix), else the default table; entries of the
    JSON file named by $LORASIM_KERNEL_CONFIGS, if set, replace the table's."""
    table = CONFIGS["default"]
    if device_name:
        for prefix, t in CONFIGS.items():
            if prefix != "default" and device_name.startswith(prefix):
                table = t
                break
    if path := os.environ.get(OVERRIDE_ENV):
        table = {**table, **_overrides(path)}
    return table


def get_config(op: str, device_name: str | None) -> Config:
    return dict(device_configs(device_name)[op])


def decode_splits(batch: int, device_name: str | None) -> int:
    """Fixed split count of paged decode attention for a batch (bucket) size."""
    for bound, splits in device_configs(device_name)["decode_splits"]:
        if batch <= bound:
            return splits
    return 1
