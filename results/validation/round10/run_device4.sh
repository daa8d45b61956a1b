#!/usr/bin/env bash
# Round 10, fourth device command (a new session: the third command's files did not survive
# into the repository). (1) All of tests/gpu on the H200, since calibrate changed
# (lora_passes, the bucket grid). (2) The calibration of run_device3.sh again: the decode LoRA
# plane measured three times, each cell's median. (3) The third saturated pass, as far as the
# budget goes (resumed from the passes committed under round10/saturated).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=575 bash results/validation/round10/run_device4.sh
source results/validation/device_env.sh
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/gpu > "$OUT/pytest.log" 2>&1
echo "pytest rc=$? after $(since)" >> "$OUT/pytest.log"
timeout 470 bash -c "lorasim calibrate --model llama-3.1-8b --out $OUT/h200-calibrated.yaml" > "$OUT/calibrate.log" 2>&1
echo "calibrate rc=$? after $(since)" >> "$OUT/calibrate.log"
SAT_REPEATS=3
source results/validation/round10/saturated_passes.sh
