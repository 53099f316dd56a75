#!/usr/bin/env bash
# make demo: simulate a small study, run the levels that exist, print where results are.
set -euo pipefail
OUT=${1:-demo}
N=${2:-100}
NPROCS=${3:-2}
BIN=.venv/bin
echo "bgs_app demo: $("$BIN"/bgs_app --version)"
"$BIN"/bgs_app --help | head -n 3
