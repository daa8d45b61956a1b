#!/usr/bin/env bash
# Round 17: `lookahead` with `layer_pipeline` (a prefill waits for its adapters' copies layer
# by layer, so the copy overlaps the forward) against `overlap`, on the H200, traces 1..3,
# priced with the committed profile (neither policy pins per load, so host pin speed does
# not enter). PYTEST=1 first runs tests/gpu on CUDA (the layered copy and waits, and what
# round 16 tested on CPU only: validate --resume, --measure-only refusals, plot formats).
# From the repository root on the device (`run`, kind nvidia-h200, carry [".whl"]):
#   BUDGET_S=575 PYTEST=1 SCENARIOS="light/uniform light/zipf light/bursty" bash results/validation/round17/run_device.sh
#   BUDGET_S=575 SCENARIOS="zipf uniform bursty" bash results/validation/round17/run_device.sh
# SCENARIO_FILES names scenario files instead (the pipelining A/B: *-nolp.yaml here are the same
# scenarios and traces with `layer_pipeline: false`; every call of round 17 is listed in
# results/validation/README.md), e.g.
#   BUDGET_S=560 TAG=ab POLICIES=lookahead SCENARIO_FILES="configs/validate/zipf.yaml results/validation/round17/zipf-nolp.yaml" bash ...
source results/validation/device_env.sh
nvidia-smi --query-gpu=uuid,pci.bus_id --format=csv,noheader > "$OUT/host.txt" 2>&1
if [ "${PYTEST:-0}" = 1 ]; then
  timeout 170 python3 -m pytest -q -p no:cacheprovider tests/gpu > "$OUT/pytest.log" 2>&1
  echo "pytest rc=$? after $(since)" >> "$OUT/pytest.log"
fi
ARGS=""
for s in ${SCENARIOS:-}; do ARGS="$ARGS --scenario configs/validate/$s.yaml"; done
for f in ${SCENARIO_FILES:-}; do ARGS="$ARGS --scenario $f"; done
TAG=${TAG:-runs}
timeout -s INT $(( $(left) - 20 )) bash -c "lorasim validate $ARGS --profile configs/hardware/h200-measured.yaml \
  --policies ${POLICIES:-overlap,lookahead} --traces 1..3 --out $OUT/$TAG" > "$OUT/validate-$TAG.log" 2>&1
echo "validate rc=$? after $(since)" >> "$OUT/validate-$TAG.log"
rm -f "$OUT"/*/plots/*.svg
tar -czf "$OUT/$TAG.tgz" -C "$OUT" "$TAG" && rm -rf "$OUT/$TAG"
