#!/usr/bin/env bash
# Round 6, third device command, after two changes made from the first two commands' records:
# prefills above the largest graph bucket use the dense LoRA layout too (the eager segment
# layout cost +90 ms on a 10-adapter burst prefill of light-bursty/resident), and calibration
# measures every prefill token bucket up to 512, decode batches 1-128 and LoRA prefill extras
# up to 4096 tokens x 16 adapters. Re-calibrates, then one light pass on this harness.
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=420 bash results/validation/round6/run_device3.sh
source results/validation/device_env.sh
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_prefill_graphs.py > "$OUT/pytest.log" 2>&1
rc=$?; echo "pytest rc=$rc after $(since)" >> "$OUT/pytest.log"
[ "$rc" -eq 0 ] || exit 1
PROF=configs/hardware/h200-measured.yaml
timeout 220 bash -c "lorasim calibrate --model llama-3.1-8b --out $PROF" > "$OUT/calibrate.log" 2>&1
rc=$?; echo "calibrate rc=$rc after $(since)" >> "$OUT/calibrate.log"
[ "$rc" -eq 0 ] || exit 1
cp "$PROF" "$OUT/h200-measured.yaml"
LIGHT="--scenario configs/validate/light/uniform.yaml --scenario configs/validate/light/zipf.yaml --scenario configs/validate/light/bursty.yaml"
L=$(left)
if [ "$L" -gt 60 ]; then
  timeout -s INT "$L" bash -c "lorasim validate $LIGHT --profile $PROF \
    --policies lru,overlap,slora,resident,lookahead --out $OUT/light-dense" > "$OUT/validate.log" 2>&1
  echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
fi
[ -d "$OUT/light-dense" ] && tar -czf "$OUT/light-dense.tgz" -C "$OUT" light-dense && rm -rf "$OUT/light-dense"
echo "all done after $(since)" >> "$OUT/validate.log"
