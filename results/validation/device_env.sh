# Sourced by the device scripts (results/validation/round*/run_device*.sh) on the device
# machine, from the repository root, with the wheels of .whl/ carried (`run` tool, carry
# [".whl"]): installs them (the device image has torch but not simpy/pydantic/pytest),
# defines `lorasim` (exported, so `timeout ... bash -c` can call it) and `left` (seconds of
# BUDGET_S remaining), and records the GPU and torch versions in $OUT/nvidia-smi.txt.
set -u
T0=$(date +%s)
left() { echo $(( ${BUDGET_S:-560} - ($(date +%s) - T0) )); }
since() { echo "$(( $(date +%s) - T0 )) s"; }
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
export LORASIM_PLOT_FORMATS=png  # no SVG twins: what comes back is committed, and the tree must stay small
lorasim() { python3 -c 'import sys; from sim.cli import main; sys.argv[0]="lorasim"; main()' "$@"; }
export -f lorasim
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw --format=csv > "$OUT/nvidia-smi.txt" 2>&1
python3 -c 'import torch; print("torch", torch.__version__)' >> "$OUT/nvidia-smi.txt" 2>&1
