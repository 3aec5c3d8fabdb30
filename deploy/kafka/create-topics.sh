#!/usr/bin/env bash
# Creates the topics of topics.txt (beside this script) that do not exist yet, then exits.
# Run by docker-compose's one-shot kafka-init service in the apache/kafka image.
# BOOTSTRAP (default kafka:9092), REPLICATION_FACTOR (default 1) and KAFKA_TOPICS (the
# kafka-topics.sh to run; tests point it at a stub) come from the environment.
set -euo pipefail
bootstrap="${BOOTSTRAP:-kafka:9092}"
replication="${REPLICATION_FACTOR:-1}"
kafka_topics="${KAFKA_TOPICS:-/opt/kafka/bin/kafka-topics.sh}"
list="$(dirname "$0")/topics.txt"
while read -r name partitions configs rest; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  if [[ ! "$partitions" =~ ^[1-9][0-9]*$ || -n "${rest:-}" ]]; then
    echo "topics.txt: bad line for $name: want 'name partitions [k=v,k=v]'" >&2
    exit 2
  fi
  args=(--bootstrap-server "$bootstrap" --create --if-not-exists --topic "$name"
        --partitions "$partitions" --replication-factor "$replication")
  if [[ -n "${configs:-}" ]]; then
    IFS=',' read -ra pairs <<< "$configs"
    for pair in "${pairs[@]}"; do args+=(--config "$pair"); done
  fi
  "$kafka_topics" "${args[@]}"
done < "$list"
echo "topics ready"
