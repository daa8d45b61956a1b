#!/usr/bin/env bash
# Round 7, first device command. Model fixes found in round 6's GPU timelines, which need a
# re-calibration: LoRA prefill extras measured with one request per adapter (a light-load
# prefill is one request) at every bucket up to 512 tokens, as the median of paired
# differences; the decode LoRA extra by batch size (compute.lora_decode); the back-to-back
# copy gap (pcie.copy_gap_us). Also re-runs the CUDA tests (the piecewise refactor 784f470 was
# only CPU-tested), then the first light-load pass of `--repeats 3` (resumable: the next
# command carries pass-1 back and adds the others).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=570 bash results/validation/round7/run_device.sh
source results/validation/device_env.sh
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_prefill_graphs.py \
  tests/gpu/test_decode_graphs.py tests/gpu/test_core.py tests/gpu/test_driver.py > "$OUT/pytest.log" 2>&1
rc=$?; echo "pytest rc=$rc after $(since)" >> "$OUT/pytest.log"
[ "$rc" -eq 0 ] || exit 1
PROF=configs/hardware/h200-measured.yaml
timeout 240 bash -c "lorasim calibrate --model llama-3.1-8b --out $PROF" > "$OUT/calibrate.log" 2>&1
rc=$?; echo "calibrate rc=$rc after $(since)" >> "$OUT/calibrate.log"
[ "$rc" -eq 0 ] || exit 1
cp "$PROF" "$OUT/h200-measured.yaml"
LIGHT="--scenario configs/validate/light/uniform.yaml --scenario configs/validate/light/zipf.yaml --scenario configs/validate/light/bursty.yaml"
mkdir -p results/validation/round7/light
cp -r results/validation/round7/light "$OUT/light"
L=$(left)
if [ "$L" -gt 90 ]; then
  timeout -s INT "$L" bash -c "lorasim validate $LIGHT --profile $PROF \
    --policies lru,overlap,slora,resident,lookahead --repeats 3 --out $OUT/light" > "$OUT/validate.log" 2>&1
  echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
fi
tar -czf "$OUT/light.tgz" -C "$OUT" light && rm -rf "$OUT/light"
echo "all done after $(since)" >> "$OUT/validate.log"
