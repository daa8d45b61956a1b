#!/usr/bin/env bash
# Round 11, third device command: one more saturated pass of all five policies with this
# round's code (estimator caches; run health checked by `lorasim validate` itself), to join
# round 10's three passes in the saturated error table.
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=520 bash results/validation/round11/run_device3.sh
source results/validation/device_env.sh
SAT="--scenario configs/validate/uniform.yaml --scenario configs/validate/zipf.yaml --scenario configs/validate/bursty.yaml"
L=$(left)
timeout -s INT "$L" bash -c "lorasim validate $SAT --profile configs/hardware/h200-measured.yaml \
  --policies lru,overlap,slora,resident,lookahead --out $OUT/saturated" > "$OUT/validate.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
tar -czf "$OUT/saturated.tgz" -C "$OUT" saturated && rm -rf "$OUT/saturated"
