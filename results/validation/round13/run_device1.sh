#!/usr/bin/env bash
# Round 13, first device command. (1) pin_probe.py: 120 pins of a 320 MB adapter buffer after
# controlled gaps (10 ms-2 s), the host thread sleeping or driving the GPU, with its CPU and
# NUMA node before and after each pin. (2) One saturated pass of all five policies with the
# committed profile (an eighth pass for the saturated table).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=560 bash results/validation/round13/run_device1.sh
source results/validation/device_env.sh
timeout 200 python3 results/validation/round13/pin_probe.py "$OUT/probe" > "$OUT/probe.log" 2>&1
echo "probe rc=$? after $(since)" >> "$OUT/probe.log"
SAT="--scenario configs/validate/uniform.yaml --scenario configs/validate/zipf.yaml --scenario configs/validate/bursty.yaml"
L=$(left)
timeout -s INT "$L" bash -c "lorasim validate $SAT --profile configs/hardware/h200-measured.yaml \
  --policies lru,overlap,slora,resident,lookahead --out $OUT/saturated" > "$OUT/validate.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
tar -czf "$OUT/saturated.tgz" -C "$OUT" saturated && rm -rf "$OUT/saturated"
