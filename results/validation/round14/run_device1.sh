#!/usr/bin/env bash
# Round 14, first device command, after `lookahead` learned to start a copy when its request
# arrives during a decode step (Forward wait=False + WaitForward(until); the CUDA driver now
# launches decode steps one at a time and carries a launched decode on while it polls).
# (1) tests/gpu on CUDA, including the launched-decode test. (2) One light pass of all five
# policies with the committed profile: lookahead's copies at arrival on real streams, and
# its ranking against lru/slora/overlap. (3) `python -m gpu.diag_copy`, unchecked on CUDA
# since gpu.adapters.module_views became public (round 13).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=560 bash results/validation/round14/run_device1.sh
source results/validation/device_env.sh
timeout 170 python3 -m pytest -q -p no:cacheprovider tests/gpu > "$OUT/pytest.log" 2>&1
echo "pytest rc=$? after $(since)" >> "$OUT/pytest.log"
LIGHT="--scenario configs/validate/light/uniform.yaml --scenario configs/validate/light/zipf.yaml --scenario configs/validate/light/bursty.yaml"
L=$(( $(left) - 80 ))
timeout -s INT "$L" bash -c "lorasim validate $LIGHT --profile configs/hardware/h200-measured.yaml \
  --policies lru,overlap,slora,resident,lookahead --out $OUT/light" > "$OUT/validate.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
timeout $(( $(left) - 5 )) python3 -m gpu.diag_copy --repeats 1 > "$OUT/copy.log" 2> "$OUT/copy.err"
echo "diag_copy rc=$? after $(since)" >> "$OUT/copy.err"
