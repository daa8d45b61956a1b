#!/usr/bin/env bash
# Round 9, third device command. (1) A calibration that also measures the host time issuing a
# per-module load's copies (pcie.issue_us; round 9 found the scheduler held ~3.2 ms by it),
# and is a second sample of the new attention and host-gap steps. (2) The prefill diagnostic
# twice at 3095 tokens: the burst's ragged lengths (round 8: 30.4 ms per M cells) and items of
# 256 tokens, calibration's contrast (round 9's calibration: 11.35): is the burst's extra time
# all padded attention cells? (3) One saturated pass of lookahead with its new default.
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=560 bash results/validation/round9/run_device3.sh
source results/validation/device_env.sh
timeout 300 bash -c "lorasim calibrate --model llama-3.1-8b --out $OUT/h200-calibrated.yaml" > "$OUT/calibrate.log" 2>&1
echo "calibrate rc=$? after $(since)" >> "$OUT/calibrate.log"
timeout 90 python3 -m gpu.diag_prefill > "$OUT/diag_burst.log" 2>&1
echo "rc=$? after $(since)" >> "$OUT/diag_burst.log"
timeout 90 python3 -m gpu.diag_prefill --lens 256,256,256,256,256,256,256,256,256,256,256,256,23 > "$OUT/diag_256.log" 2>&1
echo "rc=$? after $(since)" >> "$OUT/diag_256.log"
PROF=configs/hardware/h200-measured.yaml
SAT="--scenario configs/validate/uniform.yaml --scenario configs/validate/zipf.yaml --scenario configs/validate/bursty.yaml"
L=$(left)
if [ "$L" -gt 60 ]; then
  timeout -s INT "$L" bash -c "lorasim validate $SAT --profile $PROF --policies lookahead --out $OUT/saturated-lookahead" > "$OUT/validate-saturated.log" 2>&1
  echo "validate rc=$? after $(since)" >> "$OUT/validate-saturated.log"
fi
tar -czf "$OUT/saturated-lookahead.tgz" -C "$OUT" saturated-lookahead && rm -rf "$OUT/saturated-lookahead"
