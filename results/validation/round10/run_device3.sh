#!/usr/bin/env bash
# Round 10, third device command. (1) A calibration that measures the decode LoRA plane three
# times, batches ascending and descending by turns, and keeps each cell's median
# (gpu.calibrate.lora_passes): the first command's calibration read rank 64's small-batch
# cells 1-2 ms low against round 9's, gpu.diag_lora (run_device2.sh) and the runs. (2) A third
# saturated pass, as far as the budget goes.
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=570 bash results/validation/round10/run_device3.sh
source results/validation/device_env.sh
timeout 480 bash -c "lorasim calibrate --model llama-3.1-8b --out $OUT/h200-calibrated.yaml" > "$OUT/calibrate.log" 2>&1
echo "calibrate rc=$? after $(since)" >> "$OUT/calibrate.log"
SAT_REPEATS=3
source results/validation/round10/saturated_passes.sh
