#!/usr/bin/env bash
# Round 8, fourth device command: where does the burst prefill's time go (gpu/diag_prefill.py)?
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   bash results/validation/round8/run_device4.sh
source results/validation/device_env.sh
timeout 150 python3 -m gpu.diag_prefill > "$OUT/diag_prefill.log" 2>&1
echo "rc=$? after $(since)" >> "$OUT/diag_prefill.log"
