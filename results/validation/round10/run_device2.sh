#!/usr/bin/env bash
# Round 10, second device command. (1) gpu.diag_lora at rank 64: calibration's paired decode
# LoRA extra against the driver's way of stepping (one prepare, steps waited for one by one),
# because the first command's calibration read 1-2 ms less than round 9's in the small-batch
# cells while the saturated runs paid the same per step on both machines. (2) Resumes the
# saturated passes of run_device.sh.
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=570 bash results/validation/round10/run_device2.sh
source results/validation/device_env.sh
timeout 150 python3 -m gpu.diag_lora > "$OUT/diag_lora.log" 2>&1
echo "rc=$? after $(since)" >> "$OUT/diag_lora.log"
source results/validation/round10/saturated_passes.sh
