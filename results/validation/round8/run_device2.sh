#!/usr/bin/env bash
# Round 8, second device command. Re-calibrates with the first eager prefill size (graph
# limit + 1) in the prefill and LoRA-prefill grids (gpu.calibrate.with_eager_edge: pass 1's
# 3095-token burst prefill ran eagerly at 172 ms, the table interpolated 131 ms between the
# graphed 2048 and the eager 4096), then goes on with the light passes where the first
# command stopped (results/validation/round8/light travels with the tree; resumable).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=570 bash results/validation/round8/run_device2.sh
source results/validation/device_env.sh
PROF=configs/hardware/h200-measured.yaml
timeout 260 bash -c "lorasim calibrate --model llama-3.1-8b --out $PROF" > "$OUT/calibrate.log" 2>&1
rc=$?; echo "calibrate rc=$rc after $(since)" >> "$OUT/calibrate.log"
[ "$rc" -eq 0 ] || exit 1
cp "$PROF" "$OUT/h200-measured.yaml"
LIGHT="--scenario configs/validate/light/uniform.yaml --scenario configs/validate/light/zipf.yaml --scenario configs/validate/light/bursty.yaml"
cp -r results/validation/round8/light "$OUT/light"
L=$(left)
if [ "$L" -gt 60 ]; then
  timeout -s INT "$L" bash -c "lorasim validate $LIGHT --profile $PROF \
    --policies lru,overlap,slora,resident,lookahead --repeats 3 --out $OUT/light" > "$OUT/validate.log" 2>&1
  echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
fi
tar -czf "$OUT/light.tgz" -C "$OUT" light && rm -rf "$OUT/light"
echo "all done after $(since)" >> "$OUT/validate.log"
