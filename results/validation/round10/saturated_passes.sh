#!/usr/bin/env bash
# Sourced by the round-10 device commands: SAT_REPEATS (default 2) saturated passes of all five
# policies into $OUT/saturated/pass-N, resumed from results/validation/round10/saturated
# when that folder came with the tree, until BUDGET_S runs out (`lorasim validate` writes each
# run when it ends, so an interrupted pass keeps what finished).
[ -n "${OUT:-}" ] && type left >/dev/null 2>&1 || { echo "source this from a round-10 device script" >&2; return 2 2>/dev/null || exit 2; }
PROF=configs/hardware/h200-measured.yaml
SAT="--scenario configs/validate/uniform.yaml --scenario configs/validate/zipf.yaml --scenario configs/validate/bursty.yaml"
[ -d results/validation/round10/saturated ] && cp -r results/validation/round10/saturated "$OUT/saturated"
L=$(left)
if [ "$L" -gt 60 ]; then
  timeout -s INT "$L" bash -c "lorasim validate $SAT --profile $PROF \
    --policies lru,overlap,slora,resident,lookahead --repeats ${SAT_REPEATS:-2} --out $OUT/saturated" > "$OUT/validate.log" 2>&1
  echo "validate rc=$? after $(since)" >> "$OUT/validate.log"
fi
tar -czf "$OUT/saturated.tgz" -C "$OUT" saturated && rm -rf "$OUT/saturated"
echo "all done after $(since)" >> "$OUT/validate.log"
