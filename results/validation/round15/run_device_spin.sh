#!/usr/bin/env bash
# Round 15, after the CudaDriver's WaitForward(until) spins instead of sleeping between looks
# (lookahead's decode steps ran 0.1-0.23 ms longer than overlap's in run_device.sh's passes):
# the launched-decode tests on CUDA, then overlap and lookahead back to back on traces 1..3 of
# the three saturated scenarios.
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=560 bash results/validation/round15/run_device_spin.sh
source results/validation/device_env.sh
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_driver.py > "$OUT/pytest.log" 2>&1
echo "pytest rc=$? after $(since)" >> "$OUT/pytest.log"
for S in uniform bursty zipf; do
  timeout -s INT $(( $(left) - 15 )) bash -c "lorasim validate --scenario configs/validate/$S.yaml \
    --profile configs/hardware/h200-measured.yaml --policies overlap,lookahead --traces 1..3 \
    --out $OUT/$S" > "$OUT/validate-$S.log" 2>&1
  echo "validate rc=$? after $(since)" >> "$OUT/validate-$S.log"
  rm -f "$OUT/$S"/plots/*.svg
done
tar -czf "$OUT/runs.tgz" -C "$OUT" uniform bursty zipf 2>/dev/null; rm -rf "$OUT/uniform" "$OUT/bursty" "$OUT/zipf"
