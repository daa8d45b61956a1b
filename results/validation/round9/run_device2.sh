#!/usr/bin/env bash
# Round 9, second device command: light passes 4 and 5 of lru, overlap, slora and resident
# on the round-8 harness (unchanged since), so their cells are means over five passes; the
# round-8 passes 1-3 travel with the tree and are skipped (`--repeats` resumes).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=570 bash results/validation/round9/run_device2.sh
source results/validation/device_env.sh
PROF=configs/hardware/h200-measured.yaml
LIGHT="--scenario configs/validate/light/uniform.yaml --scenario configs/validate/light/zipf.yaml --scenario configs/validate/light/bursty.yaml"
cp -r results/validation/round8/light "$OUT/light"
L=$(left)
timeout -s INT "$L" bash -c "lorasim validate $LIGHT --profile $PROF \
  --policies lru,overlap,slora,resident --repeats 5 --out $OUT/light" > "$OUT/validate.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
rm -rf "$OUT"/light/pass-[123]
tar -czf "$OUT/light-45.tgz" -C "$OUT" light && rm -rf "$OUT/light"
echo "all done after $(since)" >> "$OUT/validate.log"
