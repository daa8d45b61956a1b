#!/usr/bin/env bash
# Round 12, fourth device command. (1) `python -m gpu.diag_copy` after its serving-loop run was
# fixed (dev3's ran 2 slots with 4 adapters a batch, a configuration validation refuses, and
# loaded 4 times): 16 adapters in 2 slots. The committed profile refitted with it
# (`--refit-only copy_issue`) into $OUT/h200-measured.yaml. (2) One saturated pass of all five
# policies with that profile, as a seventh pass.
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=460 bash results/validation/round12/run_device4.sh
source results/validation/device_env.sh
timeout 90 python3 -m gpu.diag_copy --repeats 3 > "$OUT/copy.log" 2> "$OUT/copy.err"
echo "diag_copy rc=$? after $(since)" >> "$OUT/copy.err"
cp configs/hardware/h200-measured.yaml "$OUT/h200-measured.yaml"
lorasim calibrate --out "$OUT/h200-measured.yaml" --refit-from "$OUT/copy.log" --refit-only copy_issue >> "$OUT/copy.err" 2>&1
SAT="--scenario configs/validate/uniform.yaml --scenario configs/validate/zipf.yaml --scenario configs/validate/bursty.yaml"
L=$(left)
timeout -s INT "$L" bash -c "lorasim validate $SAT --profile $OUT/h200-measured.yaml \
  --policies lru,overlap,slora,resident,lookahead --out $OUT/saturated" > "$OUT/validate.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
tar -czf "$OUT/saturated.tgz" -C "$OUT" saturated && rm -rf "$OUT/saturated"
