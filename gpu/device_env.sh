# Source on a GPU machine of the `device` tool, from the repository root, with the wheels of
# `make wheels` carried (carry [".whl"]): the image has torch and Triton but not simpy or
# pydantic. Installs them, defines `lorasim` (exported, so `timeout ... bash -c` can call it)
# and `left` (seconds of BUDGET_S remaining), and records the GPU in $OUT/nvidia-smi.txt.
set -u
T0=$(date +%s)
left() { echo $(( ${BUDGET_S:-560} - ($(date +%s) - T0) )); }
since() { echo "$(( $(date +%s) - T0 )) s"; }
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
export LORASIM_PLOT_FORMATS=png  # what comes back may be committed: no SVG twins
lorasim() { python3 -c 'import sys; from sim.cli import main; sys.argv[0]="lorasim"; main()' "$@"; }
export -f lorasim left since
export T0
nvidia-smi --query-gpu=name,uuid,clocks.sm,clocks.max.sm,power.draw --format=csv > "$OUT/nvidia-smi.txt" 2>&1
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)' >> "$OUT/nvidia-smi.txt" 2>&1
