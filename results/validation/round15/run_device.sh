#!/usr/bin/env bash
# Round 15: new traces of the saturated scenarios (`validate --traces`), every policy, so the
# error table and the H200 ranking rest on several traces of each workload, not on one trace
# whose cells a single race can decide (round 14's bursty trace: whether request 28 arrived
# before request 14 finished, a few ms either way, swapped P50 and P99 between policies).
# Trace 0 of each scenario is the one rounds 10-14 ran; this runs traces 1..3.
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=560 PYTEST=1 SCENARIO=bursty bash results/validation/round15/run_device.sh
# PYTEST=1 first runs tests/gpu on CUDA (the CudaDriver's `_ran` helper of round 14's review).
source results/validation/device_env.sh
if [ "${PYTEST:-0}" = 1 ]; then
  timeout 170 python3 -m pytest -q -p no:cacheprovider tests/gpu > "$OUT/pytest.log" 2>&1
  echo "pytest rc=$? after $(since)" >> "$OUT/pytest.log"
fi
timeout -s INT $(( $(left) - 15 )) bash -c "lorasim validate --scenario configs/validate/$SCENARIO.yaml \
  --profile configs/hardware/h200-measured.yaml --policies lru,overlap,slora,resident,lookahead \
  --traces 1..3 --out $OUT/$SCENARIO" > "$OUT/validate-$SCENARIO.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate-$SCENARIO.log"
rm -f "$OUT/$SCENARIO"/plots/*.svg
tar -czf "$OUT/$SCENARIO.tgz" -C "$OUT" "$SCENARIO" && rm -rf "$OUT/$SCENARIO"
