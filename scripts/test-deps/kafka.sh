#!/usr/bin/env bash
# Real single-node Kafka (KRaft) for the collector's consumer-lag tests
# (tests/collector/test_kafka_source.py).
#
# Fetches org.apache.kafka:kafka_2.13 and org.slf4j:slf4j-reload4j with their dependencies from
# Maven Central (scripts/test-deps/kafka/pom.xml) into a cache under the home directory; the
# test fixture runs `java -cp '<cache>/lib/*' kafka.Kafka`.  Idempotent: quick when already done.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${SCALEBUS_TEST_DEPS_CACHE:-$HOME/.cache/scalebus-test-deps}/kafka"
POM="$HERE/kafka/pom.xml"
STAMP="$CACHE/lib/.complete-$(sha256sum "$POM" | cut -c1-16)"

if [ -e "$STAMP" ]; then
    exit 0
fi
if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        echo "test-deps/kafka: installing a JDK and Maven (Debian packages)" >&2
        apt-get update -qq >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jdk-headless maven >/dev/null 2>&1 || true
    fi
fi
if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
    echo "test-deps/kafka: java or mvn not available; Kafka tests will be skipped" >&2
    exit 0
fi

mkdir -p "$CACHE"
rm -rf "$CACHE/lib.tmp"
if ! mvn -q -B -f "$POM" dependency:copy-dependencies \
        -DoutputDirectory="$CACHE/lib.tmp" -DincludeScope=runtime >"$CACHE/mvn.log" 2>&1; then
    echo "test-deps/kafka: mvn dependency:copy-dependencies failed (see $CACHE/mvn.log); Kafka tests will be skipped" >&2
    tail -n 20 "$CACHE/mvn.log" >&2 || true
    exit 0
fi
rm -rf "$CACHE/lib"
mv "$CACHE/lib.tmp" "$CACHE/lib"
touch "$STAMP"
echo "test-deps/kafka: $(ls "$CACHE/lib" | wc -l) jars in $CACHE/lib" >&2
