#!/usr/bin/env bash
# Round 11, first device command. (1) All of tests/gpu on the H200 after gpu.run_health and
# the graphed-prefill attention term. (2) Up to three more saturated passes of `overlap` and
# `lookahead` (the pair #6 asks to rank on the H200), each run checked for a machine slowdown
# by `lorasim validate` itself (health.md in every pass).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=560 bash results/validation/round11/run_device1.sh
source results/validation/device_env.sh
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/gpu > "$OUT/pytest.log" 2>&1
echo "pytest rc=$? after $(since)" >> "$OUT/pytest.log"
SAT="--scenario configs/validate/uniform.yaml --scenario configs/validate/zipf.yaml --scenario configs/validate/bursty.yaml"
L=$(left)
timeout -s INT "$L" bash -c "lorasim validate $SAT --profile configs/hardware/h200-measured.yaml \
  --policies overlap,lookahead --repeats 3 --out $OUT/sat-ol" > "$OUT/validate.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
tar -czf "$OUT/sat-ol.tgz" -C "$OUT" sat-ol && rm -rf "$OUT/sat-ol"
