#!/usr/bin/env bash
# Round 7, second device command: the SGLang overlap benchmark (DESIGN §6, 40 of its 100
# prompts) on the graph harness, lru vs overlap; then the light-load passes go on where the
# first command stopped (pass-1 carried in results/validation/round7/light; the profile is the
# first command's calibration, committed as configs/hardware/h200-measured.yaml).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=570 bash results/validation/round7/run_device2.sh
source results/validation/device_env.sh
PROF=configs/hardware/h200-measured.yaml
timeout 200 bash -c "lorasim validate --scenario configs/validate/sglang_overlap_bench_small.yaml \
  --policies lru,overlap --profile $PROF --out $OUT/sglang_bench" > "$OUT/sglang.log" 2>&1
echo "sglang rc=$? after $(since)" >> "$OUT/sglang.log"
LIGHT="--scenario configs/validate/light/uniform.yaml --scenario configs/validate/light/zipf.yaml --scenario configs/validate/light/bursty.yaml"
cp -r results/validation/round7/light "$OUT/light"
L=$(left)
if [ "$L" -gt 60 ]; then
  timeout -s INT "$L" bash -c "lorasim validate $LIGHT --profile $PROF \
    --policies lru,overlap,slora,resident,lookahead --repeats 3 --out $OUT/light" > "$OUT/validate.log" 2>&1
  echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
fi
tar -czf "$OUT/light.tgz" -C "$OUT" light && rm -rf "$OUT/light"
echo "all done after $(since)" >> "$OUT/validate.log"
