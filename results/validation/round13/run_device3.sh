#!/usr/bin/env bash
# Round 13, third device command, after the release term (pcie.unpin_per_tensor_us; the CUDA
# driver's `release` rows). (1) tests/gpu on CUDA. (2) `python -m gpu.diag_copy`, whose unpin
# line is this host's time to free a per-module load's pinned copies; the committed profile
# refitted with it (`--refit-only unpin`) into $OUT/h200-measured.yaml. (3) One saturated pass
# of all five policies with that profile: its runs carry the `release` rows.
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=590 bash results/validation/round13/run_device3.sh
source results/validation/device_env.sh
timeout 170 python3 -m pytest -q -p no:cacheprovider tests/gpu > "$OUT/pytest.log" 2>&1
echo "pytest rc=$? after $(since)" >> "$OUT/pytest.log"
timeout 90 python3 -m gpu.diag_copy --repeats 1 > "$OUT/copy.log" 2> "$OUT/copy.err"
echo "diag_copy rc=$? after $(since)" >> "$OUT/copy.err"
cp configs/hardware/h200-measured.yaml "$OUT/h200-measured.yaml"
lorasim calibrate --out "$OUT/h200-measured.yaml" --refit-from "$OUT/copy.log" --refit-only unpin >> "$OUT/copy.err" 2>&1
SAT="--scenario configs/validate/uniform.yaml --scenario configs/validate/zipf.yaml --scenario configs/validate/bursty.yaml"
L=$(left)
timeout -s INT "$L" bash -c "lorasim validate $SAT --profile $OUT/h200-measured.yaml \
  --policies lru,overlap,slora,resident,lookahead --out $OUT/saturated" > "$OUT/validate.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
tar -czf "$OUT/saturated.tgz" -C "$OUT" saturated && rm -rf "$OUT/saturated"
