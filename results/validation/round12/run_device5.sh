#!/usr/bin/env bash
# Round 12, fifth device command: tests/gpu on the final code (the serving-loop issue run in
# calibration, gpu.diag_copy, the noise and ensemble code paths the CPU tests exercise).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=150 bash results/validation/round12/run_device5.sh
source results/validation/device_env.sh
timeout 140 python3 -m pytest -q -p no:cacheprovider tests/gpu > "$OUT/pytest.log" 2>&1
echo "pytest rc=$? after $(since)" >> "$OUT/pytest.log"
