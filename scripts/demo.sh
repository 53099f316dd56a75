#!/usr/bin/env bash
# make demo: simulate a study, run the participant and group levels, print what the
# group level found against the planted truth. A deliberately strong study (80 % volume
# change per allele, strong cognition effects, little non-genetic anatomical variation)
# so that 60 subjects on 2 CPU cores, at 4 mm, can show the whole chain: image ->
# nonlinear registration -> log-Jacobian maps -> genotype score -> cognition. The
# participant level runs SyN (sloppy) with the template-mask skull stripping (the deep
# extractor costs 8 s per image here), so that the CNN reads the log-Jacobian maps.
set -euo pipefail
OUT=${1:-demo}
N=${2:-60}
NPROCS=${3:-2}
BIN=.venv/bin
start=$(date +%s)
echo "== bgs_app demo: $("$BIN"/bgs_app --version), $N simulated participants in $OUT/"
rm -rf "$OUT"
"$BIN"/bgs-simulate "$OUT/study" --n-subjects "$N" --resolution 4 --effect-size 80 \
  --cognition-effect 1.0 --warp-mm 0.75 --nprocs "$NPROCS" --seed 42 --quiet
cut -f2 "$OUT/study/genetics/study.bim" > "$OUT/snps.txt"
echo "== participant level (ANTs SyN registration, segmentation, IDPs, model-grid images and log-Jacobian maps)"
"$BIN"/bgs_app "$OUT/study" "$OUT/derivatives" participant --nprocs "$NPROCS" \
  --omp-nthreads 1 --resolution 4 --sloppy --registration syn --skull-strip-method ants \
  -w "$OUT/work" \
  --skip-bids-validation
echo "== group level (3-fold cross-fitting CNN on the log-Jacobian maps, saliency, IDP and voxel baselines, associations)"
"$BIN"/bgs_app "$OUT/study" "$OUT/derivatives" group --genotypes "$OUT/study/genetics/study" \
  --snps-file "$OUT/snps.txt" --resolution 4 --cv-folds 3 --epochs 30 --patience 30 \
  --batch-size 8 --learning-rate 2e-3 --channels 8 16 32 32 32 16 \
  --saliency-method gradient --covariates age sex site --nprocs "$NPROCS" \
  -w "$OUT/work" --skip-bids-validation
"$BIN"/python scripts/demo_summary.py "$OUT/study" "$OUT/derivatives/group"
echo "== demo finished in $(( $(date +%s) - start )) s"
echo "   group report: $OUT/derivatives/group/report.html"
echo "   participant reports: $OUT/derivatives/sub-*.html"
