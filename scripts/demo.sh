#!/usr/bin/env bash
# make demo: simulate a study, run the participant and group levels, print what the
# group level found against the planted truth. A deliberately strong study (80 % volume
# change per allele, strong cognition effects) so that 80 subjects on 2 CPU cores, at
# 4 mm, can show the whole chain: image -> genotype score -> cognition.
set -euo pipefail
OUT=${1:-demo}
N=${2:-80}
NPROCS=${3:-2}
BIN=.venv/bin
start=$(date +%s)
echo "== bgs_app demo: $("$BIN"/bgs_app --version), $N simulated participants in $OUT/"
rm -rf "$OUT"
"$BIN"/bgs-simulate "$OUT/study" --n-subjects "$N" --resolution 4 --effect-size 80 \
  --cognition-effect 1.0 --warp-mm 1.5 --nprocs "$NPROCS" --seed 42 --quiet
cut -f2 "$OUT/study/genetics/study.bim" > "$OUT/snps.txt"
echo "== participant level (ANTs registration, segmentation, IDPs, model-grid images)"
"$BIN"/bgs_app "$OUT/study" "$OUT/derivatives" participant --nprocs "$NPROCS" \
  --omp-nthreads 1 --resolution 4 --sloppy --registration affine -w "$OUT/work" \
  --skip-bids-validation
echo "== group level (3-fold cross-fitting CNN, saliency, IDP baseline, associations)"
"$BIN"/bgs_app "$OUT/study" "$OUT/derivatives" group --genotypes "$OUT/study/genetics/study" \
  --snps-file "$OUT/snps.txt" --resolution 4 --cv-folds 3 --epochs 30 --patience 30 \
  --batch-size 8 --learning-rate 2e-3 --channels 8 16 32 32 32 16 \
  --saliency-method gradient --covariates age sex site --nprocs "$NPROCS" \
  -w "$OUT/work" --skip-bids-validation
"$BIN"/python scripts/demo_summary.py "$OUT/study" "$OUT/derivatives/group"
echo "== demo finished in $(( $(date +%s) - start )) s"
echo "   group report: $OUT/derivatives/group/report.html"
echo "   participant reports: $OUT/derivatives/sub-*.html"
