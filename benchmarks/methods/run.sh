#!/usr/bin/env bash
# The CPU benchmark: every prompt optimiser against the human prompt on the embedded demo model,
# equal LM-call budget, 3 seeds, paired tests against the human prompt and against PROMST.
# Not in CI: one to two hours per single-turn task on 2 cores, several hours for the multi-step
# task. Interrupted, it continues where it stopped (finished runs are read back, the unfinished
# one resumed from its journal).
#
#   benchmarks/methods/run.sh [OUT]          (default OUT: bench-out/methods)
#
# PART=single-turn, PART=multi-step (boxnet1) or PART=number-line runs one part (default: all
# three, in that order).
# TASKS may be set in the environment to run part of the single-turn grid, e.g.
#   TASKS=object_counting benchmarks/methods/run.sh
# The table then covers that part only; run the whole grid once more at the end (its finished
# runs are read back, not played again) for the table of all of it.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-bench-out/methods}
AGENTOPT=${AGENTOPT:-.venv/bin/agentopt}
PART=${PART:-all}
case "$PART" in
    all|single-turn|multi-step|number-line) ;;
    *) echo "run.sh: PART must be single-turn, multi-step, number-line or unset (all), not '$PART'" >&2
       exit 2 ;;
esac
TASKS=${TASKS:-multistep_arithmetic,object_counting,date_arithmetic,word_sorting,logical_deduction,boolean_expressions,navigate}
mkdir -p "$OUT"
# One part, if PART asks for it: its start and end in times.log around one bench call with the
# settings every part shares (model, seeds, reference, config; output in OUT/PART). The other
# arguments are the part's own.
run_part() {
    local part=$1
    shift
    [ "$PART" = all ] || [ "$PART" = "$part" ] || return 0
    echo "$part start $(date -u +%FT%TZ) $(uname -n) $(nproc) cores" >> "$OUT/times.log"
    "$AGENTOPT" bench -m local/qwen2.5-coder-0.5b --reference promst --seeds 0,1,2 \
        --config benchmarks/methods/config.json "$@" --out "$OUT/$part"
    echo "$part end $(date -u +%FT%TZ)" >> "$OUT/times.log"
}
run_part single-turn --methods promst,ape,apo,opro,apohf,demos --tasks "$TASKS" \
    --n-train 8 --n-validation 8 --n-test 30 --agent-max-tokens 256 --budget-calls 50
# boxnet1 is the one multi-step task on which the model scores above 0 with constrained actions
# (benchmarks/tasks/RESULTS.md). Its episodes cost minutes each, hence the small splits.
run_part multi-step --methods promst,ape,apo,opro,apohf,demos --tasks boxnet1 --constrain-actions \
    --n-train 3 --n-validation 4 --n-test 8 --agent-max-tokens 128 --budget-calls 50
# number_line is the multi-step task sized for this model (tasks/number_line), on the grid's
# splits. A call is one step here, and scoring a prompt on the 8 train episodes takes about 42
# of them: 250 calls buy the six or so train evaluations that 50 calls buy a single-turn search.
# Under the action grammar a reply is one action of a few tokens, hence 32 tokens.
# PROMST and demos run first, so that a row cut short still has the methods the demo uses.
run_part number-line --methods promst,demos,ape,opro,apo,apohf --tasks number_line --constrain-actions \
    --n-train 8 --n-validation 8 --n-test 30 --agent-max-tokens 32 --budget-calls 250
