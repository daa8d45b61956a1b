#!/usr/bin/env bash
# Round 6, first device command: prefills now replay piecewise CUDA graphs too
# (gpu/prefill_graphs.py) and a validation pass runs on one shared GPU core (gpu/core.py).
# Checks the graph paths on the GPU (CUDA tests), times prefill eager vs graphs (also after
# idle), re-calibrates the H200 through the same paths, then light-load validation passes
# (`--repeats 3`, finished passes kept: a later command carrying them back completes the rest).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=570 bash results/validation/round6/run_device.sh
# (first try: calibrate failed on a freed graph pool, records in first-command/; the second
# ran with SKIP_BENCH=1)
source results/validation/device_env.sh
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_prefill_graphs.py \
  tests/gpu/test_decode_graphs.py tests/gpu/test_core.py tests/gpu/test_driver.py > "$OUT/pytest.log" 2>&1
rc=$?; echo "pytest rc=$rc after $(since)" >> "$OUT/pytest.log"
[ "$rc" -eq 0 ] || exit 1
# the calibration's own graph handling on CUDA, in seconds (tiny model, quick grid)
timeout 60 bash -c "lorasim calibrate --model tiny --quick --out /tmp/tiny.yaml" > "$OUT/calibrate-tiny.log" 2>&1
rc=$?; echo "calibrate tiny rc=$rc after $(since)" >> "$OUT/calibrate-tiny.log"
[ "$rc" -eq 0 ] || exit 1
if [ -z "${SKIP_BENCH:-}" ]; then  # the second try skipped it: first-command/bench_prefill.log
  timeout 150 python3 benchmarks/bench_prefill_graphs.py --slots 4 --rank 64 > "$OUT/bench_prefill.log" 2>&1
  echo "bench rc=$? after $(since)" >> "$OUT/bench_prefill.log"
fi
PROF=configs/hardware/h200-measured.yaml
timeout 200 bash -c "lorasim calibrate --model llama-3.1-8b --out $PROF" > "$OUT/calibrate.log" 2>&1
rc=$?; echo "calibrate rc=$rc after $(since)" >> "$OUT/calibrate.log"
[ "$rc" -eq 0 ] || exit 1
cp "$PROF" "$OUT/h200-measured.yaml"
LIGHT="--scenario configs/validate/light/uniform.yaml --scenario configs/validate/light/zipf.yaml --scenario configs/validate/light/bursty.yaml"
mkdir -p results/validation/round6/light
cp -r results/validation/round6/light "$OUT/light"
L=$(left)
if [ "$L" -gt 90 ]; then
  timeout -s INT "$L" bash -c "lorasim validate $LIGHT --profile $PROF \
    --policies lru,overlap,slora,resident,lookahead --repeats 3 --out $OUT/light" > "$OUT/validate.log" 2>&1
  echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
fi
tar -czf "$OUT/light.tgz" -C "$OUT" light && rm -rf "$OUT/light"
echo "all done after $(since)" >> "$OUT/validate.log"
