#!/usr/bin/env bash
# Round 8, third device command: one saturated pass (64-request scenarios) on the round-8
# harness (pinned staging) with the round-8 calibration.
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=440 bash results/validation/round8/run_device3.sh
source results/validation/device_env.sh
PROF=configs/hardware/h200-measured.yaml
SAT="--scenario configs/validate/uniform.yaml --scenario configs/validate/zipf.yaml --scenario configs/validate/bursty.yaml"
L=$(left)
timeout -s INT "$L" bash -c "lorasim validate $SAT --profile $PROF \
  --policies lru,overlap,slora,resident,lookahead --out $OUT/saturated" > "$OUT/validate-saturated.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate-saturated.log"
tar -czf "$OUT/saturated.tgz" -C "$OUT" saturated && rm -rf "$OUT/saturated"
