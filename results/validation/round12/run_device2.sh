#!/usr/bin/env bash
# Round 12, second device command. (1) `python -m gpu.diag_copy`: this host's copy gap and
# issue time through the driver's own copy loop, five repeats (calibrate-format lines), and the
# committed profile refitted with them (`--refit-only copy_issue`) into $OUT/h200-measured.yaml.
# (2) One saturated pass of all five policies with that profile (lookahead predicts copies from
# it), to join the saturated table as a sixth pass.
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=470 bash results/validation/round12/run_device2.sh
source results/validation/device_env.sh
timeout 60 python3 -m gpu.diag_copy --repeats 5 > "$OUT/copy.log" 2> "$OUT/copy.err"
echo "diag_copy rc=$? after $(since)" >> "$OUT/copy.err"
cp configs/hardware/h200-measured.yaml "$OUT/h200-measured.yaml"
lorasim calibrate --out "$OUT/h200-measured.yaml" --refit-from "$OUT/copy.log" --refit-only copy_issue >> "$OUT/copy.err" 2>&1
SAT="--scenario configs/validate/uniform.yaml --scenario configs/validate/zipf.yaml --scenario configs/validate/bursty.yaml"
L=$(left)
timeout -s INT "$L" bash -c "lorasim validate $SAT --profile $OUT/h200-measured.yaml \
  --policies lru,overlap,slora,resident,lookahead --out $OUT/saturated" > "$OUT/validate.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
tar -czf "$OUT/saturated.tgz" -C "$OUT" saturated && rm -rf "$OUT/saturated"
