#!/usr/bin/env bash
# make demo: simulate a small study, run the participant and group levels, print the result.
set -euo pipefail
OUT=${1:-demo}
N=${2:-100}
NPROCS=${3:-2}
BIN=.venv/bin
echo "== bgs_app demo: $("$BIN"/bgs_app --version), $N simulated participants in $OUT/"
rm -rf "$OUT/study"
"$BIN"/bgs-simulate "$OUT/study" --n-subjects "$N" --resolution 2 --effect-size 40 \
  --warp-mm 1.5 --nprocs "$NPROCS" --seed 42
