#!/usr/bin/env bash
# Round 9, fourth device command: the light scenarios for `lookahead` again (`--repeats 3`),
# after its CPU cost per scheduling point was cut (its decode-step estimate is cached by batch
# shape: on the H200 its median host gap was 468 us, overlap's 366 us).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=400 bash results/validation/round9/run_device4.sh
source results/validation/device_env.sh
PROF=configs/hardware/h200-measured.yaml
LIGHT="--scenario configs/validate/light/uniform.yaml --scenario configs/validate/light/zipf.yaml --scenario configs/validate/light/bursty.yaml"
L=$(left)
timeout -s INT "$L" bash -c "lorasim validate $LIGHT --profile $PROF \
  --policies lookahead --repeats 3 --out $OUT/light-lookahead" > "$OUT/validate.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
tar -czf "$OUT/light-lookahead.tgz" -C "$OUT" light-lookahead && rm -rf "$OUT/light-lookahead"
