# bgs_app — brain-genotype scores from T1-weighted MRI (a BIDS-App).
#
# Build (the wheelhouse makes the build independent of any package index):
#     make wheelhouse                      # wheelhouse/: bgs_app and every dependency at
#                                          # the versions of requirements/lock.txt
#     docker build -t bgs_app:0.1.0 .      # podman: podman build --format docker ...
#                                          # (its default OCI format drops SHELL)
#
# Build arguments
#   BASE   the base image of both stages (default debian:bookworm-slim, Python 3.11).
#          A local base works offline, e.g. one imported from
#          `debootstrap --variant=minbase --include=python3,python3-venv bookworm`:
#              --build-arg BASE=localhost/bookworm-minbase
#          GPUs: the default image runs CPU torch. For CUDA, build the wheelhouse with a
#          CUDA torch (make wheelhouse TORCH_INDEX=https://download.pytorch.org/whl/cu128
#          TORCH_LOCAL=cu128)
#          and, optionally, a CUDA base whose python3 matches the wheels, e.g.
#              --build-arg BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
#          (then make the wheelhouse with that Python); run with --gpus all.
#   TORCH_VERSION  the torch release installed from the wheelhouse (default 2.13.0).
#   TORCH_VARIANT  its build, the wheel's local version label: cpu (default) or a CUDA
#          build such as cu128; the wheelhouse must hold that build (see GPUs above), or
#          the build stops. Tag the image by it: bgs_app:0.1.0-cpu, bgs_app:0.1.0-cu128.
#          The image's label org.bgs-app.torch says which it is.
#
# Behind a TLS-intercepting proxy, give apt the host's CA bundle as a build secret (it is
# used only while a RUN step runs and never stored in a layer):
#     --secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt
# No `# syntax=` line on purpose: the built-in frontend builds offline.
ARG BASE=debian:bookworm-slim

# ---------------------------------------------------------------------------------------
FROM ${BASE} AS builder
ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A base without Python (debian:bookworm-slim) gets it from apt; a local base that
# already has python3 and venv (debootstrap --include=python3,python3-venv) needs no
# network at all.
# hadolint ignore=DL3008
RUN --mount=type=secret,id=ca_bundle,target=/run/secrets/ca_bundle \
    if ! python3 -c "import venv, ensurepip" 2>/dev/null; then \
        if [ -s /run/secrets/ca_bundle ]; then \
            echo 'Acquire::https::CAInfo "/run/secrets/ca_bundle";' \
                > /etc/apt/apt.conf.d/99build-ca; fi; \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/* /etc/apt/apt.conf.d/99build-ca; \
    fi
COPY wheelhouse/ /tmp/wheelhouse/
RUN python3 -m venv /opt/bgs_app/venv \
    && /opt/bgs_app/venv/bin/pip install --no-index --find-links /tmp/wheelhouse \
        -c /tmp/wheelhouse/lock.txt "torch==${TORCH_VERSION}+${TORCH_VARIANT}" \
    && /opt/bgs_app/venv/bin/pip install --no-index --find-links /tmp/wheelhouse \
        -c /tmp/wheelhouse/lock.txt "bgs_app[deepbet]" \
    && /opt/bgs_app/venv/bin/pip check \
    && find /opt/bgs_app/venv -name "__pycache__" -prune -exec rm -rf {} + \
    && rm -rf /tmp/wheelhouse

# ---------------------------------------------------------------------------------------
FROM ${BASE} AS runtime
ARG BASE=debian:bookworm-slim
ARG VERSION=0.1.0
ARG BUILD_DATE=unknown
ARG VCS_REF=unknown
ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive
# The venv's interpreter is a link to /usr/bin/python3: the runtime needs that Python.
# hadolint ignore=DL3008
RUN --mount=type=secret,id=ca_bundle,target=/run/secrets/ca_bundle \
    if ! command -v python3 >/dev/null 2>&1; then \
        if [ -s /run/secrets/ca_bundle ]; then \
            echo 'Acquire::https::CAInfo "/run/secrets/ca_bundle";' \
                > /etc/apt/apt.conf.d/99build-ca; fi; \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 \
        && rm -rf /var/lib/apt/lists/* /etc/apt/apt.conf.d/99build-ca; \
    fi

COPY --from=builder /opt/bgs_app/venv /opt/bgs_app/venv

# A non-root user whose HOME any user id can write to (docker run --user, Singularity).
RUN useradd --create-home --home-dir /home/bgs --uid 1000 --user-group \
        --shell /bin/bash bgs \
    && mkdir -p /home/bgs/.cache /home/bgs/.config /opt/bgs_app/cache

ENV PATH=/opt/bgs_app/venv/bin:$PATH \
    HOME=/home/bgs \
    BGS_APP_CACHE=/opt/bgs_app/cache \
    MPLCONFIGDIR=/home/bgs/.config/matplotlib \
    NIPYPE_NO_ET=1 \
    NO_ET=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONNOUSERSITE=1 \
    LANG=C.UTF-8 \
    LC_ALL=C.UTF-8 \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1
# OMP_NUM_THREADS and ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS are safe defaults: bgs_app
# sets them per process from --omp-nthreads.

# Templates and atlases inside the image: the packaged MNI152NLin2009aSym (nilearn's
# copy), its 2 mm registration copy, tissue priors and the Harvard-Oxford labels are
# derived once here, so nothing is derived or downloaded at run time. The matplotlib
# font cache is built too. Then HOME and the cache get group/other = user permissions.
RUN python -c "from bgs_app.templates import get_template; print(get_template())" \
    && python -c "import matplotlib.font_manager" \
    && bgs_app --version \
    && chown -R bgs:bgs /home/bgs /opt/bgs_app/cache \
    && chmod -R go=u /home/bgs /opt/bgs_app/cache

LABEL org.opencontainers.image.title="bgs_app" \
      org.opencontainers.image.description="BIDS-App: brain-genotype scores from T1-weighted MRI (multi-task 3D CNN, saliency, associations with cognition)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE}" \
      org.opencontainers.image.documentation="https://bids-apps.neuroimaging.io" \
      org.bgs-app.torch="${TORCH_VERSION}+${TORCH_VARIANT}"

# Numeric, so that runAsNonRoot-style checks can verify it; any --user works as well.
USER 1000:1000
WORKDIR /home/bgs
ENTRYPOINT ["bgs_app"]
CMD ["--help"]
