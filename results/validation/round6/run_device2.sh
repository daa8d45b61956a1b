#!/usr/bin/env bash
# Round 6, second device command: the prefill diagnostic (diag_prefill.py: calibration's way vs
# the driver's, after a queued decode, after idle), the overlap-hide check (share of PCIe time
# under compute, now a summary metric: pcie_hidden_frac) and one pass of the saturated
# validation scenarios, all on the round-6 harness (graph prefill + decode, shared GPU core).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=560 bash results/validation/round6/run_device2.sh
source results/validation/device_env.sh
timeout 150 python3 results/validation/round6/diag_prefill.py > "$OUT/diag_prefill.log" 2>&1
echo "diag rc=$? after $(since)" >> "$OUT/diag_prefill.log"
PROF=configs/hardware/h200-measured.yaml
timeout 200 bash -c "lorasim validate --scenario configs/validate/overlap_hide.yaml --policies lru,overlap \
  --profile $PROF --out $OUT/overlap_hide" > "$OUT/validate-overlap-hide.log" 2>&1
echo "overlap-hide rc=$? after $(since)" >> "$OUT/validate-overlap-hide.log"
SAT="--scenario configs/validate/uniform.yaml --scenario configs/validate/zipf.yaml --scenario configs/validate/bursty.yaml"
L=$(left)
if [ "$L" -gt 90 ]; then
  timeout -s INT "$L" bash -c "lorasim validate $SAT --profile $PROF \
    --policies lru,overlap,slora,resident,lookahead --out $OUT/saturated" > "$OUT/validate-saturated.log" 2>&1
  echo "validate rc=$? after $(since)" >> "$OUT/validate-saturated.log"
fi
for d in overlap_hide saturated; do
  [ -d "$OUT/$d" ] && tar -czf "$OUT/$d.tgz" -C "$OUT" "$d" && rm -rf "$OUT/$d"
done
echo "all done after $(since)" >> "$OUT/validate-saturated.log"
