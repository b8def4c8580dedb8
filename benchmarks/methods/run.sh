#!/usr/bin/env bash
# The CPU benchmark: every prompt optimiser against the human prompt on the embedded demo model,
# equal LM-call budget, 3 seeds, paired tests against the human prompt and against PROMST.
# Not in CI: one to two hours per task on 2 cores. Interrupted, it continues where it stopped
# (finished runs are read back, the unfinished one resumed from its journal).
#
#   benchmarks/methods/run.sh [OUT]          (default OUT: bench-out/methods)
#
# TASKS may be set in the environment to run part of the grid, e.g.
#   TASKS=object_counting benchmarks/methods/run.sh
# The table then covers that part only; run the whole grid once more at the end (its finished
# runs are read back, not played again) for the table of all of it.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-bench-out/methods}
AGENTOPT=${AGENTOPT:-.venv/bin/agentopt}
TASKS=${TASKS:-multistep_arithmetic,object_counting,date_arithmetic,word_sorting,logical_deduction,boolean_expressions,navigate}
mkdir -p "$OUT"
echo "single-turn start $(date -u +%FT%TZ) $(uname -n) $(nproc) cores" >> "$OUT/times.log"
"$AGENTOPT" bench -m local/qwen2.5-coder-0.5b \
    --methods promst,ape,apo,opro,apohf --reference promst --seeds 0,1,2 \
    --config benchmarks/methods/config.json --tasks "$TASKS" \
    --n-train 8 --n-validation 8 --n-test 30 --agent-max-tokens 256 --budget-calls 50 \
    --out "$OUT/single-turn"
echo "single-turn end $(date -u +%FT%TZ)" >> "$OUT/times.log"
