#!/usr/bin/env bash
# make demo: simulate a study, run the participant level, then the genotype and
# association stages that exist so far, and print what was found against the truth.
set -euo pipefail
OUT=${1:-demo}
N=${2:-100}
NPROCS=${3:-2}
N_PARTICIPANT=${N_PARTICIPANT:-8}
BIN=.venv/bin
start=$(date +%s)
echo "== bgs_app demo: $("$BIN"/bgs_app --version), $N simulated participants in $OUT/"
rm -rf "$OUT"
"$BIN"/bgs-simulate "$OUT/study" --n-subjects "$N" --resolution 3 --effect-size 40 \
  --warp-mm 1.5 --nprocs "$NPROCS" --seed 42 --quiet
echo "== participant level on the first $N_PARTICIPANT participants (ANTs; ~25 s each)"
labels=$(cut -f1 "$OUT/study/participants.tsv" | tail -n +2 | head -n "$N_PARTICIPANT")
# shellcheck disable=SC2086
"$BIN"/bgs_app "$OUT/study" "$OUT/derivatives" participant --participant-label $labels \
  --nprocs "$NPROCS" --omp-nthreads 1 --resolution 4 -w "$OUT/work"
echo "== genotype QC and associations (genotype rows; CNN scores come with the group level)"
"$BIN"/python scripts/demo_summary.py "$OUT/study" "$OUT/summary"
echo "== demo finished in $(( $(date +%s) - start )) s; reports: $OUT/derivatives/sub-*.html"
