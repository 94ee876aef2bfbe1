#!/bin/bash
# The compose stack's topic job (service kafka-init, image apache/kafka): creates every topic of
# featurebus.common.topics.TOPICS and its `<topic>.dlq`, with FEATUREBUS_TOPIC_PARTITIONS
# partitions, FEATUREBUS_TOPIC_REPLICATION_FACTOR replicas and min.insync.replicas
# FEATUREBUS_TOPIC_MIN_INSYNC_REPLICAS, before any service starts. The services would create
# missing topics themselves (Bus.ensure_topics) with the same settings; creating them here first
# means no service races another to create them, and they are set in one place (.env).
# tests/deploy/test_manifests.py checks that this list is TOPICS and their DLQs.
set -euo pipefail

bootstrap="${KAFKA_BOOTSTRAP:-kafka:9092}"
partitions="${FEATUREBUS_TOPIC_PARTITIONS:-8}"
replicas="${FEATUREBUS_TOPIC_REPLICATION_FACTOR:-1}"
min_insync="${FEATUREBUS_TOPIC_MIN_INSYNC_REPLICAS:-1}"
prefix="${FEATUREBUS_TOPIC_PREFIX:-}"
topics=(
  plugin.uploaded
  plugin.scanned
  plugin.deploy
  plugin.deployment
  objects.ingested
  batch.requested
  batch.triggered
  batch.planned
  batch.ready
  vectors.produced
  batch.indexed
  batch.cancelled
  collection.lifecycle
)
kafka_topics=/opt/kafka/bin/kafka-topics.sh

for topic in "${topics[@]}"; do
  # A topic keeps the broker's retention (a week); its dead letters stay until someone replays
  # or deletes them (README "Operations": a poison message is never dropped).
  "$kafka_topics" --bootstrap-server "$bootstrap" --create --if-not-exists \
    --topic "${prefix}${topic}" --partitions "$partitions" --replication-factor "$replicas" \
    --config min.insync.replicas="$min_insync"
  "$kafka_topics" --bootstrap-server "$bootstrap" --create --if-not-exists \
    --topic "${prefix}${topic}.dlq" --partitions "$partitions" --replication-factor "$replicas" \
    --config min.insync.replicas="$min_insync" --config retention.ms=-1
done
"$kafka_topics" --bootstrap-server "$bootstrap" --describe --topic "${prefix}batch.ready"
echo "created ${#topics[@]} topics and their DLQs with ${partitions} partitions, ${replicas} replicas and min.insync.replicas ${min_insync} each"
