#!/usr/bin/env bash
# Round 5, second device command: calibration times prefills after an untimed decode step (as a server runs them), and pin-per-load runs warm the pinned cache after the graph capture (the first command found it cold).
# Re-calibrates the H200 with the graph decode, then runs as many light-load validation passes
# as the budget allows (`lorasim validate --repeats 3`: alternate policy order; finished passes
# are kept, so a second command carrying OUT's passes back completes the rest).
# From the repository root on the device (the `run` tool, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=560 bash results/validation/round5/run_device2.sh
set -u
T0=$(date +%s)
left() { echo $(( ${BUDGET_S:-560} - ($(date +%s) - T0) )); }
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
lorasim() { python3 -c 'import sys; from sim.cli import main; sys.argv[0]="lorasim"; main()' "$@"; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw --format=csv > "$OUT/nvidia-smi.txt" 2>&1
python3 -c 'import torch; print("torch", torch.__version__)' >> "$OUT/nvidia-smi.txt" 2>&1
PROF=configs/hardware/h200-measured.yaml
timeout 150 bash -c "$(declare -f lorasim); lorasim calibrate --model llama-3.1-8b --out $PROF" \
  > "$OUT/calibrate.log" 2>&1
echo "calibrate rc=$? after $(( $(date +%s) - T0 )) s" >> "$OUT/calibrate.log"
cp "$PROF" "$OUT/h200-measured.yaml"
LIGHT="--scenario configs/validate/light/uniform.yaml --scenario configs/validate/light/zipf.yaml --scenario configs/validate/light/bursty.yaml"
L=$(left)
if [ "$L" -gt 60 ]; then
  timeout -s INT "$L" bash -c "$(declare -f lorasim); lorasim validate $LIGHT --profile $PROF \
    --policies lru,overlap,slora,resident,lookahead --repeats 3 --out $OUT/light" > "$OUT/validate.log" 2>&1
  echo "validate rc=$? after $(( $(date +%s) - T0 )) s" >> "$OUT/validate.log"
fi
[ -d "$OUT/light" ] && tar -czf "$OUT/light.tgz" -C "$OUT" light && rm -rf "$OUT/light"
echo "all done after $(( $(date +%s) - T0 )) s" >> "$OUT/validate.log"
