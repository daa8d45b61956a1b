#!/usr/bin/env bash
# Round 16, last call: the runs zipf's call left undone (trace 3's resident and lookahead;
# its validate hit the budget), then lookahead (with `split_new`) and overlap on traces 1..3
# of the three light scenarios.
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=480 bash results/validation/round16/run_device_light.sh
source results/validation/device_env.sh
nvidia-smi --query-gpu=uuid,pci.bus_id --format=csv,noheader > "$OUT/host.txt" 2>&1
timeout -s INT 90 bash -c "lorasim validate --scenario configs/validate/zipf.yaml \
  --profile configs/hardware/h200-measured.yaml --policies resident,lookahead --traces 3..3 \
  --out $OUT/zipf3" > "$OUT/validate-zipf3.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate-zipf3.log"
LIGHT="--scenario configs/validate/light/uniform.yaml --scenario configs/validate/light/zipf.yaml --scenario configs/validate/light/bursty.yaml"
timeout -s INT $(( $(left) - 15 )) bash -c "lorasim validate $LIGHT --profile configs/hardware/h200-measured.yaml \
  --policies overlap,lookahead --traces 1..3 --out $OUT/light" > "$OUT/validate-light.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate-light.log"
rm -f "$OUT"/*/plots/*.svg
tar -czf "$OUT/light.tgz" -C "$OUT" zipf3 light && rm -rf "$OUT/zipf3" "$OUT/light"
