#!/usr/bin/env bash
# One device command (round 4): re-calibrate the H200 (now also measuring the launch fraction),
# then validate the light-load scenarios twice, the second pass in the reverse policy order, so
# the GPU's own run-to-run spread is measured. From the repository root on the device, with
# $OUT set (the `run` tool, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=540 bash results/validation/round4/run_device.sh
# Everything is written under $OUT; each records folder comes back as a tarball.
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
LIGHT="--scenario configs/validate/light/uniform.yaml --scenario configs/validate/light/zipf.yaml --scenario configs/validate/light/bursty.yaml"
for pass in light:lru,overlap,slora,resident,lookahead light-repeat:lookahead,resident,slora,overlap,lru; do
  name=${pass%%:*}; pols=${pass#*:}
  LEFT=$(( ${BUDGET_S:-540} - ($(date +%s) - T0) ))
  [ "$LEFT" -gt 30 ] || { echo "no time left for $name" >> "$OUT/validate.log"; break; }
  timeout -s INT "$LEFT" bash -c "$(declare -f lorasim); lorasim validate $LIGHT --profile $PROF \
    --policies $pols --out $OUT/$name" >> "$OUT/validate.log" 2>&1
  echo "validate $name rc=$? after $(( $(date +%s) - T0 )) s" >> "$OUT/validate.log"
  tar -czf "$OUT/$name.tgz" -C "$OUT" "$name" && rm -rf "$OUT/$name"
done
