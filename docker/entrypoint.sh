#!/bin/sh
# The image's entrypoint (under tini): `SERVICE` runs `python -m featurebus.SERVICE`; any other
# command (`ray start ...`, `featurebus ...`, `python ...`) runs as given.
#
# The inference service is the Ray driver. To use a Ray cluster (RAY_ADDRESS or
# FEATUREBUS_RAY_ADDRESS = HOST:PORT of its head) it first joins it as a node of its own with no
# CPUs and no GPUs, as README "Running on a Ray cluster" says: the driver needs a local node, and
# no plugin actor may land beside the service.
set -eu

case "${1:-}" in
  registry | scanner | dispatcher | indexer)
    exec python -m "featurebus.$1"
    ;;
  inference)
    address="${FEATUREBUS_RAY_ADDRESS:-${RAY_ADDRESS:-}}"
    case "$address" in
      "" | ray://*) ;;  # Ray inside this process, or a Ray Client connection: no local node
      *)
        # The node and the driver find their address as seen from the head (not 127.0.0.1,
        # which featurebus.inference.main defaults to for a Ray of its own).
        export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1
        ray start --address="$address" --num-cpus=0 --num-gpus=0 --disable-usage-stats
        ;;
    esac
    exec python -m featurebus.inference
    ;;
  "")
    echo "usage: featurebus-service registry|scanner|dispatcher|inference|indexer, or a command" >&2
    exit 64
    ;;
  *)
    exec "$@"
    ;;
esac
