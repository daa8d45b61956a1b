"""The grids calibration measures over: `full` on a GPU, `quick` for CPU tests.

Shared by the measuring modules and by `calibrate --measure-only` and gpu.diag_copy, which
re-measure one part at a whole calibration's sizes."""

from __future__ import annotations

from gpu.decode_graphs import batch_buckets

KB, MB, GB = 1 << 10, 1 << 20, 1 << 30

GRIDS: dict[str, dict] = {
    "full": {
        "sizes": [4 * KB * 4**i for i in range(10)],  # 4 KB .. 1 GB
        # prefill sizes are token buckets of gpu.prefill_graphs (every one up to 512: the
        # cost between two buckets is not linear), then eager sizes
        "prefill": [16, 32, 64, 96, 128, 192, 256, 320, 384, 448, 512, 640, 768, 896, 1024,
                    1280, 1536, 1792, 2048, 4096, 8192],
        "batch": [1, 2, 4, 8, 16, 32, 64, 128],
        "context": [128, 512, 1024, 2048],
        # up to 64 distinct adapters a batch: with unified memory (issue #28) no slot count
        # bounds them. Rank 256 stops at 32: 64 of its 1.34 GB slots do not fit beside the
        # model, so its 64 column is extrapolated from 16 and 32 (and the log says so)
        "adapters": [0, 1, 2, 4, 8, 16, 32, 64],
        "lora_max_adapters": {256: 32},
        "lora_ranks": [16, 64, 256],
        # decode LoRA extra at every graph batch bucket up to 64 (n > batch: at n): the extra
        # is not linear in batch between buckets (H200, rank 64, 4 adapters: 8.4 ms at 4, 6.5
        # at 8, 7.4 at 16; round 9's 1/4/16/64 grid priced batch 8 +1 ms per step)
        "lora_batch": batch_buckets(64),
        "prefill_lora_ranks": [64, 256],
        # every bucket a single light-load request pads to, then larger (4096: the eager path)
        "prefill_lora_tokens": [128, 256, 384, 512, 1024, 2048, 4096],
        "prefill_lora_adapters": [1, 2, 4, 8, 16],
        "pin_bytes": 256 * MB,
        "reps": 5,  # copies
        "compute_reps": 9,
        "lora_reps": 7,
        "lora_passes": 3,  # the decode LoRA plane, measured 3 times apart: median per cell
        "prefill_lora_reps": 11,
    },
    "quick": {
        "sizes": [4 * KB, 64 * KB, 1 * MB, 4 * MB],
        "prefill": [4, 8, 16],
        "batch": [1, 2, 4],
        "context": [4, 8, 16],
        "adapters": [0, 1, 2],
        "lora_ranks": [4, 8],
        "lora_batch": [1, 2],
        "prefill_lora_ranks": [4, 8],
        "prefill_lora_tokens": [8, 16],
        "prefill_lora_adapters": [1, 2],
        "pin_bytes": 4 * MB,
        "reps": 3,
        "compute_reps": 3,
        "lora_reps": 3,
        "prefill_lora_reps": 3,
    },
}
