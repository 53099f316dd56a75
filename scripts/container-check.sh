#!/usr/bin/env bash
# Build the bgs_app image and run it end to end on a tiny simulated study:
#   --version; bgs-simulate (30 subjects, 4 mm); the participant level; the group level.
# Every run has --network none, a non-root --user that is not the image's own user, the
# BIDS dataset mounted read-only, a read-only image (--read-only: only /tmp, a tmpfs, and
# the bound folders can be written), a read-only HOME (an empty host folder bound :ro,
# as Apptainer's --no-home or a read-only home leaves it) and no variable from the host
# (as Apptainer's --cleanenv; podman passes none unless asked). Their output must hold
# no cache warning (matplotlib, fontconfig, Deno): the script checks the outputs and
# prints timings.
#
# Engine: podman if installed, else docker when a Docker engine answers (ENGINE=...).
# Base image (BASE=...), when not given:
#   1. a local image imported earlier (BASE_LOCAL, default localhost/bookworm-minbase);
#   2. debian:bookworm-slim, if the engine can pull it;
#   3. built here: debootstrap --variant=minbase bookworm (root only), imported with
#      `podman import` / `docker import` as BASE_LOCAL, with python3 and python3-venv
#      included so that the image build needs no network at all (it then runs with
#      --network none).
# The host's CA bundle (CA_BUNDLE, default /etc/ssl/certs/ca-certificates.crt) is given
# to the build as a secret, for apt behind a TLS-intercepting proxy; debootstrap, on the
# host, uses it directly.
#
# Environment: ENGINE, BASE, BASE_LOCAL, DEBIAN_MIRROR, CA_BUNDLE, TAG, WORK (kept after
# the run; default a new temporary folder), RUN_USER (default 4321:4321), NPROCS
# (default 2), VALIDATE (1: run the BIDS validator in the participant level), KEEP (1:
# keep WORK), PODMAN_RUNTIME (e.g. runc), ULIMITS (run options, e.g. "--ulimit
# nofile=4096:4096"; by default set only where podman's own defaults cannot work).
# Usage: scripts/container-check.sh            (from anywhere; exits non-zero on failure)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' bgs_app/__about__.py)
TAG=${TAG:-bgs_app:$VERSION}
BASE_LOCAL=${BASE_LOCAL:-localhost/bookworm-minbase:latest}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
RUN_USER=${RUN_USER:-4321:4321}
NPROCS=${NPROCS:-2}
VALIDATE=${VALIDATE:-1}
KEEP=${KEEP:-1}
PY=${PY:-$ROOT/.venv/bin/python}
START=$(date +%s)
STEP_START=$START

log() { printf '== [%4ds] %s\n' "$(( $(date +%s) - START ))" "$*"; }
step_done() {
  local now; now=$(date +%s)
  printf '   done in %d s\n' "$(( now - STEP_START ))"
  STEP_START=$now
}
die() { echo "container-check: $*" >&2; exit 1; }

# --- engine ------------------------------------------------------------------------------
if [ -z "${ENGINE:-}" ]; then
  if command -v podman >/dev/null 2>&1; then
    ENGINE=podman
  elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    ENGINE=docker
  else
    die "no container engine: install podman, or start a Docker engine"
  fi
fi
ENG=("$ENGINE")
if [ "$ENGINE" = podman ]; then
  # Debian's podman as root works with runc; use it when crun is absent (or when asked).
  if [ -n "${PODMAN_RUNTIME:-}" ]; then
    ENG+=(--runtime "$PODMAN_RUNTIME")
  elif ! command -v crun >/dev/null 2>&1 && command -v runc >/dev/null 2>&1; then
    ENG+=(--runtime "$(command -v runc)")
  fi
fi
# Podman as root asks runc for nofile and nproc limits of 1048576 in every container. A
# root without CAP_SYS_RESOURCE (root inside a VM sandbox or a container) cannot raise a
# limit, and runc then fails with "error setting rlimit type 7: operation not permitted".
# There, ask for the limits the engine already runs with: this shell's hard nofile limit,
# and podman's own nproc limit (it lowers itself to 32768). ULIMITS="..." overrides.
RUN_LIMITS=()
if [ -n "${ULIMITS:-}" ]; then
  read -r -a RUN_LIMITS <<<"$ULIMITS"
elif [ "$ENGINE" = podman ] && [ "$(id -u)" = 0 ] \
     && ! (( 0x$(awk '/^CapEff:/ {print $2}' /proc/self/status 2>/dev/null || echo 0) \
             & (1 << 24) )); then   # bit 24: CAP_SYS_RESOURCE
  nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
  if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
  RUN_LIMITS=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
fi
image_exists() {
  if [ "$ENGINE" = podman ]; then "${ENG[@]}" image exists "$1"
  else "${ENG[@]}" image inspect "$1" >/dev/null 2>&1; fi
}
log "engine: ${ENG[*]} ($("$ENGINE" --version 2>/dev/null | head -1))${RUN_LIMITS[*]:+, runs with ${RUN_LIMITS[*]}}"

# --- base image --------------------------------------------------------------------------
BUILD_NET=()
make_debootstrap_base() {
  command -v debootstrap >/dev/null 2>&1 || die "no base image: give BASE=..., or install debootstrap"
  [ "$(id -u)" = 0 ] || die "debootstrap needs root; or give BASE=... (an image with python3)"
  local rootfs; rootfs=$(mktemp -d /tmp/bgs-rootfs.XXXXXX)
  log "building a base image with debootstrap --variant=minbase bookworm ($DEBIAN_MIRROR)"
  # The host's CA bundle serves https mirrors (debootstrap downloads with wget on the host).
  if [ -s "$CA_BUNDLE" ]; then export SSL_CERT_FILE="$CA_BUNDLE"; fi
  debootstrap --variant=minbase --include=python3,python3-venv,passwd,ca-certificates \
    bookworm "$rootfs" "$DEBIAN_MIRROR"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" --numeric-owner -c . | "${ENG[@]}" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' - "$BASE_LOCAL" >/dev/null
  rm -rf "$rootfs"
  step_done
}
if [ -z "${BASE:-}" ]; then
  if image_exists "$BASE_LOCAL"; then
    BASE=$BASE_LOCAL
  elif timeout 120 "${ENG[@]}" pull docker.io/library/debian:bookworm-slim >/dev/null 2>&1; then
    BASE=docker.io/library/debian:bookworm-slim
  else
    make_debootstrap_base
    BASE=$BASE_LOCAL
  fi
fi
if [ "$BASE" = "$BASE_LOCAL" ]; then
  BUILD_NET=(--network none)   # python3 is in the base: the build needs no network at all
fi
log "base image: $BASE"

# --- wheelhouse ------------------------------------------------------------------------
if ! ls wheelhouse/torch-*.whl >/dev/null 2>&1; then
  log "make wheelhouse (bgs_app and every dependency)"
  # An existing virtual environment is used as it is (-o install): `make install` would
  # reinstall into it whenever setup.cfg is newer than its stamp, under whoever is using it.
  if [ -x .venv/bin/pip ]; then make -o install wheelhouse; else make wheelhouse; fi
  step_done
else
  log "wheelhouse/ exists: refreshing the bgs_app wheel only"
  rm -f wheelhouse/bgs_app-*.whl
  "$PY" -m pip wheel --no-deps --wheel-dir wheelhouse . >/dev/null
  cp requirements/lock.txt wheelhouse/lock.txt
  step_done
fi
ls wheelhouse/bgs_app-"$VERSION"-*.whl >/dev/null || die "no bgs_app $VERSION wheel in wheelhouse/"

# --- build -------------------------------------------------------------------------------
SECRET=()
if [ -s "$CA_BUNDLE" ]; then SECRET=(--secret "id=ca_bundle,src=$CA_BUNDLE"); fi
# podman builds OCI images by default, which drop the Dockerfile's SHELL (bash -o
# pipefail): build a Docker-format image, as docker does.
FORMAT=()
if [ "$ENGINE" = podman ]; then FORMAT=(--format docker); fi
log "building $TAG"
"${ENG[@]}" build "${FORMAT[@]}" "${BUILD_NET[@]}" "${SECRET[@]}" --build-arg "BASE=$BASE" \
  --build-arg "VERSION=$VERSION" --build-arg "BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --build-arg "VCS_REF=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  -t "$TAG" -f Dockerfile .
step_done

# --- runs --------------------------------------------------------------------------------
if [ -z "${WORK:-}" ]; then WORK=$(mktemp -d /tmp/bgs-container-check.XXXXXX); fi
mkdir -p "$WORK"/{out,work,inputs,home}
WORK=$(cd "$WORK" && pwd)
# The run user is not the image's user: every uid must be able to write HOME and the
# outputs (the host folders are opened to it).
chmod 0777 "$WORK" "$WORK/out" "$WORK/work"
if [ "$KEEP" != 1 ]; then trap 'rm -rf "$WORK"' EXIT; fi
RUN=("${ENG[@]}" run --rm --network none --user "$RUN_USER" --security-opt no-new-privileges
     --read-only -v "$WORK/home":/home/ro:ro -e HOME=/home/ro "${RUN_LIMITS[@]}")
# Fail on any cache warning in a run's output (what a read-only HOME or image provokes
# when a cache is not redirected to a writable place).
CACHE_WARNINGS='cache directory|not a writable|No writable cache|Permission denied|Read-only file system'
checked() {  # checked LOG COMMAND...: run, keep the output in LOG, refuse cache warnings
  local log=$1; shift
  "$@" 2>&1 | tee "$log"
  if grep -E -i "$CACHE_WARNINGS" "$log" >/dev/null; then
    grep -E -i "$CACHE_WARNINGS" "$log" | head -5 >&2
    die "cache warnings in the output above (see $log)"
  fi
}

log "bgs_app --version"
got=$("${RUN[@]}" "$TAG" --version)
[ "$got" = "bgs_app v$VERSION" ] || die "--version printed '$got', not 'bgs_app v$VERSION'"
echo "   $got"
[ "$("${ENG[@]}" image inspect --format '{{.Config.User}}' "$TAG")" != root ] \
  || die "the image runs as root"
step_done

# The group level trains only with at least 24 people (3 x MIN_TRAIN in bgs_app/group/split.py)
# that have both an image and genotypes passing QC, and the simulator leaves some people
# MRI-only and some failing genotype QC: 30 subjects, as in tests/test_group.py.
N_SUBJECTS=30
log "bgs-simulate: $N_SUBJECTS subjects at 4 mm (inside the image)"
"${RUN[@]}" -v "$WORK":/host --entrypoint bgs-simulate "$TAG" /host/study \
  --n-subjects "$N_SUBJECTS" --resolution 4 --seed 7 --nprocs "$NPROCS" --quiet
cut -f2 "$WORK/study/genetics/study.bim" > "$WORK/inputs/snps.txt"
step_done

MOUNTS=(-v "$WORK/study":/data:ro -v "$WORK/out":/out -v "$WORK/work":/work
        -v "$WORK/inputs":/inputs:ro)
VALIDATION=()
[ "$VALIDATE" = 1 ] || VALIDATION=(--skip-bids-validation)

log "participant level (BIDS dataset read-only, user $RUN_USER, no network)"
checked "$WORK/participant.log" "${RUN[@]}" "${MOUNTS[@]}" "$TAG" /data /out participant \
  --nprocs "$NPROCS" --omp-nthreads 1 --resolution 4 --sloppy --registration affine \
  -w /work "${VALIDATION[@]}"
step_done

# 3-fold cross-fitting (as tests/test_group.py): every participant gets an out-of-sample
# score, so the associations have enough people (one train/val/test split of this study
# leaves 6 test people, too few for a regression on the score and 3 covariates).
CV_FOLDS=3
log "group level ($CV_FOLDS-fold cross-fitting)"
checked "$WORK/group.log" "${RUN[@]}" "${MOUNTS[@]}" "$TAG" /data /out group \
  --genotypes /data/genetics/study \
  --snps-file /inputs/snps.txt --resolution 4 --epochs 3 --patience 3 --batch-size 4 \
  --channels 4 8 8 8 8 4 --saliency-method gradient --covariates age sex site \
  --cv-folds "$CV_FOLDS" --nprocs "$NPROCS" -w /work --skip-bids-validation
step_done

# --- checks ------------------------------------------------------------------------------
log "checking the outputs"
for f in dataset_description.json sub-0001.html \
         sub-0001/anat/sub-0001_space-MNI152NLin2009aSym_res-4_desc-model_T1w.nii.gz \
         group/scores.tsv group/performance.tsv group/associations.tsv \
         group/report.html group/CITATION.md; do
  [ -s "$WORK/out/$f" ] || die "missing output: $f"
done
for (( k = 0; k < CV_FOLDS; k++ )); do
  for f in model.json weights.safetensors; do
    [ -s "$WORK/out/group/model/fold-$k/$f" ] || die "missing output: group/model/fold-$k/$f"
  done
done
n_p=$(awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "p") c = i; next }
                  c && $c != "n/a" && $c != "" { n++ } END { print n + 0 }' \
      "$WORK/out/group/associations.tsv")
[ "$n_p" -gt 0 ] || die "group/associations.tsv has no p-value"
owner=$(stat -c '%u:%g' "$WORK/out/group/report.html")
echo "   outputs present ($n_p associations with a p-value); report.html belongs to $owner (run as $RUN_USER)"
if find "$WORK/study" -newer "$WORK/inputs/snps.txt" -type f | grep -q .; then
  die "the read-only BIDS dataset was modified"
fi
step_done

log "container check passed in $(( $(date +%s) - START )) s (engine $ENGINE, base $BASE)"
echo "   outputs: $WORK/out (report: $WORK/out/group/report.html)"
