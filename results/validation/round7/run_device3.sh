#!/usr/bin/env bash
# Round 7, third device command: one pass of the saturated validation scenarios (64 requests
# each; configs/validate/{uniform,zipf,bursty}.yaml) on the round-7 harness, with the
# round-7 profile. Cut off by the budget, it keeps every finished run (resumable).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=500 bash results/validation/round7/run_device3.sh
source results/validation/device_env.sh
PROF=configs/hardware/h200-measured.yaml
SAT="--scenario configs/validate/uniform.yaml --scenario configs/validate/zipf.yaml --scenario configs/validate/bursty.yaml"
L=$(left)
timeout -s INT "$L" bash -c "lorasim validate $SAT --profile $PROF \
  --policies lru,overlap,slora,resident,lookahead --out $OUT/saturated" > "$OUT/validate-saturated.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate-saturated.log"
tar -czf "$OUT/saturated.tgz" -C "$OUT" saturated && rm -rf "$OUT/saturated"
