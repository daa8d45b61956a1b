#!/usr/bin/env bash
# One device command (round 3): re-calibrate the H200 (now with the per-tensor pin cost), then
# validate the light-load scenarios, 3 x 5 policies. Run from the repository root on the device
# with $OUT set (the `run` tool, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=330 bash results/validation/run_device.sh
# Everything is written under $OUT; the records folder comes back as a tarball.
set -u
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
lorasim() { python3 -c 'import sys; from sim.cli import main; sys.argv[0]="lorasim"; main()' "$@"; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw --format=csv > "$OUT/nvidia-smi.txt" 2>&1
PROF=configs/hardware/h200-measured.yaml
timeout 120 bash -c "$(declare -f lorasim); lorasim calibrate --model llama-3.1-8b --out $PROF" \
  > "$OUT/calibrate.log" 2>&1
echo "calibrate rc=$? after $(( $(date +%s) - T0 )) s" >> "$OUT/calibrate.log"
cp "$PROF" "$OUT/h200-measured.yaml"
LEFT=$(( ${BUDGET_S:-570} - ($(date +%s) - T0) ))
timeout -s INT "$LEFT" bash -c "$(declare -f lorasim); lorasim validate \
  --scenario configs/validate/light/uniform.yaml --scenario configs/validate/light/zipf.yaml \
  --scenario configs/validate/light/bursty.yaml --profile $PROF \
  --policies lru,overlap,slora,resident,lookahead --out $OUT/light" > "$OUT/validate.log" 2>&1
echo "validate rc=$? after $(( $(date +%s) - T0 )) s" >> "$OUT/validate.log"
tar -czf "$OUT/light.tgz" -C "$OUT" light && rm -rf "$OUT/light"
