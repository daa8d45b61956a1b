#!/usr/bin/env bash
# Round 9, sixth device command (as the fifth, after its trace went from 8 to 2 req/s: at 8 only one arrival of 24 found the GPU idle): calibration's host-timing step alone (gpu.calibrate.
# measure_host_gap: a 24-request `resident` run through the CUDA driver), twice, for the
# wake-up latency it now also measures (compute.wake_us: arrival to admission when the GPU is
# idle) and a second look at the host gap (296 vs 497 us in this session's two calibrations).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   bash results/validation/round9/run_device6.sh
source results/validation/device_env.sh
timeout 240 python3 - > "$OUT/host_timing.log" 2>&1 <<'PY'
import torch
from gpu.calibrate import measure_host_gap
from sim.config import MODEL_PRESETS
for i in range(2):
    ht = measure_host_gap(MODEL_PRESETS["llama-3.1-8b"], torch.device("cuda"), 64, quick=False)
    print(f"  host gap {ht.gap_s * 1e6:.1f} us between forwards (median of {ht.gaps}; a resident run"
          f" of {ht.requests} requests through the CUDA driver)", flush=True)
    print(f"  wake-up {ht.wake_s * 1e6:.1f} us from an idle arrival to its admission (median of {ht.wakes})", flush=True)
PY
echo "rc=$? after $(since)" >> "$OUT/host_timing.log"
