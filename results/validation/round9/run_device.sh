#!/usr/bin/env bash
# Round 9, first device command. (1) All of tests/gpu on the H200 (CUDA tests included);
# (2) a fresh calibration, the first on a GPU to measure the attention coefficient and the
# host gap itself (gpu.calibrate.measure_attention / measure_host_gap); (3) the light
# scenarios for `lookahead` only, `--repeats 3`, with its new default launch_ahead (the
# batch's adapter limit, as overlap; round 8 ran it with 1). The GPU runs do not depend on the
# profile, so (3) uses the committed one and does not wait on (2).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=570 bash results/validation/round9/run_device.sh
source results/validation/device_env.sh
timeout 170 python3 -m pytest -q -p no:cacheprovider tests/gpu > "$OUT/pytest.log" 2>&1
echo "pytest rc=$? after $(since)" >> "$OUT/pytest.log"
PROF=configs/hardware/h200-measured.yaml
timeout 260 bash -c "lorasim calibrate --model llama-3.1-8b --out $OUT/h200-calibrated.yaml" > "$OUT/calibrate.log" 2>&1
echo "calibrate rc=$? after $(since)" >> "$OUT/calibrate.log"
LIGHT="--scenario configs/validate/light/uniform.yaml --scenario configs/validate/light/zipf.yaml --scenario configs/validate/light/bursty.yaml"
L=$(left)
if [ "$L" -gt 60 ]; then
  timeout -s INT "$L" bash -c "lorasim validate $LIGHT --profile $PROF \
    --policies lookahead --repeats 3 --out $OUT/light-lookahead" > "$OUT/validate.log" 2>&1
  echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
fi
tar -czf "$OUT/light-lookahead.tgz" -C "$OUT" light-lookahead && rm -rf "$OUT/light-lookahead"
echo "all done after $(since)" >> "$OUT/validate.log"
