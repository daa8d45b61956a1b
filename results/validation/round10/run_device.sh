#!/usr/bin/env bash
# Round 10, first device command. (1) A calibration whose decode LoRA extra is measured at
# every graph batch bucket up to 64 (round 9 measured 1/4/16/64 and interpolated: on the
# saturated pass, steps of 5-8 requests with 4 adapters ran 17.6 ms where the profile said
# 18.6, steps of 9-16 ran 19.7 where it said 18.8). (2) Saturated passes (the issue's
# uniform/zipf/bursty at 6 req/s) of all five policies, as far as the budget goes; the
# second command resumes them (results/validation/round10/saturated travels with the tree).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=570 bash results/validation/round10/run_device.sh
source results/validation/device_env.sh
timeout 400 bash -c "lorasim calibrate --model llama-3.1-8b --out $OUT/h200-calibrated.yaml" > "$OUT/calibrate.log" 2>&1
echo "calibrate rc=$? after $(since)" >> "$OUT/calibrate.log"
source results/validation/round10/saturated_passes.sh
