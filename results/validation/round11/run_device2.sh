#!/usr/bin/env bash
# Round 11, second device command. (1) tests/gpu again, after the estimator speed-up
# (ProfileCompute caches its tables). (2) Three saturated passes of `overlap` and `lookahead`:
# on device 1 lookahead's scheduler held the GPU ~1.3 ms longer than overlap's at every load
# (its estimator lookups); is that gone? Each run is checked for a machine slowdown by
# `lorasim validate` itself (health.md).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=560 bash results/validation/round11/run_device2.sh
source results/validation/device_env.sh
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/gpu > "$OUT/pytest.log" 2>&1
echo "pytest rc=$? after $(since)" >> "$OUT/pytest.log"
SAT="--scenario configs/validate/uniform.yaml --scenario configs/validate/zipf.yaml --scenario configs/validate/bursty.yaml"
L=$(left)
timeout -s INT "$L" bash -c "lorasim validate $SAT --profile configs/hardware/h200-measured.yaml \
  --policies overlap,lookahead --repeats 3 --out $OUT/sat-ol" > "$OUT/validate.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
tar -czf "$OUT/sat-ol.tgz" -C "$OUT" sat-ol && rm -rf "$OUT/sat-ol"
