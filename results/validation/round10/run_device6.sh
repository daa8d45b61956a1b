#!/usr/bin/env bash
# Round 10, sixth device command. (1) All of tests/gpu on the H200 again, after this session's
# changes to gpu/cli.py and gpu/calibrate.py. (2) Two more saturated passes of `overlap` and
# `lookahead` only: in pass 3 lookahead's zipf and bursty mean E2E ran 13-15 % above its passes
# 1-2 (same span, busy time and loads), while the simulator prices the two policies the same at
# saturation. Does lookahead trail overlap on the H200, or was pass 3 a one-off?
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=560 bash results/validation/round10/run_device6.sh
source results/validation/device_env.sh
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/gpu > "$OUT/pytest.log" 2>&1
echo "pytest rc=$? after $(since)" >> "$OUT/pytest.log"
SAT="--scenario configs/validate/uniform.yaml --scenario configs/validate/zipf.yaml --scenario configs/validate/bursty.yaml"
L=$(left)
timeout -s INT "$L" bash -c "lorasim validate $SAT --profile configs/hardware/h200-measured.yaml \
  --policies overlap,lookahead --repeats 2 --out $OUT/sat-ol" > "$OUT/validate.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
tar -czf "$OUT/sat-ol.tgz" -C "$OUT" sat-ol && rm -rf "$OUT/sat-ol"
