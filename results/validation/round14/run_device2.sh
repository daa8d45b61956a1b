#!/usr/bin/env bash
# Round 14, second device command: a second light pass of all five policies (lookahead with
# copies at arrival vs lru/slora/overlap), then `lookahead` and `overlap` back to back on the
# three saturated scenarios (the committed saturated table's lookahead cells predate the
# change).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=580 bash results/validation/round14/run_device2.sh
source results/validation/device_env.sh
LIGHT="--scenario configs/validate/light/uniform.yaml --scenario configs/validate/light/zipf.yaml --scenario configs/validate/light/bursty.yaml"
SAT="--scenario configs/validate/uniform.yaml --scenario configs/validate/zipf.yaml --scenario configs/validate/bursty.yaml"
timeout -s INT 300 bash -c "lorasim validate $LIGHT --profile configs/hardware/h200-measured.yaml \
  --policies lru,overlap,slora,resident,lookahead --out $OUT/light" > "$OUT/validate-light.log" 2>&1
echo "validate light rc=$? after $(since)" >> "$OUT/validate-light.log"
timeout -s INT $(( $(left) - 10 )) bash -c "lorasim validate $SAT --profile configs/hardware/h200-measured.yaml \
  --policies overlap,lookahead --out $OUT/saturated" > "$OUT/validate-sat.log" 2>&1
echo "validate saturated rc=$? after $(since)" >> "$OUT/validate-sat.log"
tar -czf "$OUT/runs.tgz" -C "$OUT" light saturated && rm -rf "$OUT/light" "$OUT/saturated"
