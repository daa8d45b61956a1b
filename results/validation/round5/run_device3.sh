#!/usr/bin/env bash
# Round 5, third device command: the prefill diagnostic (diag_prefill.py), then one pass of the
# saturated validation scenarios with the graph-decode harness and the round-5 profile (refit
# with `despike`). From the repository root on the device (kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=480 bash results/validation/round5/run_device3.sh
set -u
T0=$(date +%s)
left() { echo $(( ${BUDGET_S:-480} - ($(date +%s) - T0) )); }
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
lorasim() { python3 -c 'import sys; from sim.cli import main; sys.argv[0]="lorasim"; main()' "$@"; }
timeout 120 python3 results/validation/round5/diag_prefill.py > "$OUT/diag_prefill.log" 2>&1
echo "diag rc=$? after $(( $(date +%s) - T0 )) s" >> "$OUT/diag_prefill.log"
PROF=configs/hardware/h200-measured.yaml
SAT="--scenario configs/validate/uniform.yaml --scenario configs/validate/zipf.yaml --scenario configs/validate/bursty.yaml"
timeout -s INT "$(left)" bash -c "$(declare -f lorasim); lorasim validate $SAT --profile $PROF \
  --policies lru,overlap,slora,resident,lookahead --out $OUT/saturated" > "$OUT/validate-saturated.log" 2>&1
echo "validate rc=$? after $(( $(date +%s) - T0 )) s" >> "$OUT/validate-saturated.log"
[ -d "$OUT/saturated" ] && tar -czf "$OUT/saturated.tgz" -C "$OUT" saturated && rm -rf "$OUT/saturated"
