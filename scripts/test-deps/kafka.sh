#!/usr/bin/env bash
# Real single-node Kafka (KRaft) for the collector's consumer-lag tests
# (tests/collector/test_kafka_source.py).
#
# Fetches org.apache.kafka:kafka_2.13 and org.slf4j:slf4j-reload4j with their dependencies from
# Maven Central (scripts/test-deps/kafka/pom.xml) into a cache under the home directory; the
# test fixture runs `java -cp '<cache>/lib/*' kafka.Kafka`.  Maven's own repository is kept in
# the same cache (not in ~/.m2, which Maven finds through the passwd entry, not $HOME), so
# everything fetched lives under one directory.  Idempotent: quick when already done.  Every
# network step is bounded by `timeout`.
#
# When Java/Maven or the jars cannot be had, this says why and exits 0: the Kafka tests are then
# skipped with the reason printed.  With SCALEBUS_REQUIRE_TEST_DEPS=1 (CI that must run them) it
# exits 1 instead, and the tests fail rather than skip.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${SCALEBUS_TEST_DEPS_CACHE:-$HOME/.cache/scalebus-test-deps}/kafka"
POM="$HERE/kafka/pom.xml"
STAMP="$CACHE/lib/.complete-$(sha256sum "$POM" | cut -c1-16)"
FETCH_SECONDS="${SCALEBUS_TEST_DEPS_TIMEOUT:-600}"

unavailable() {
    echo "test-deps/kafka: $1" >&2
    if [ "${SCALEBUS_REQUIRE_TEST_DEPS:-0}" = "1" ]; then
        echo "test-deps/kafka: SCALEBUS_REQUIRE_TEST_DEPS=1: failing instead of skipping the Kafka tests" >&2
        exit 1
    fi
    echo "test-deps/kafka: the Kafka tests will be skipped" >&2
    exit 0
}

if [ -e "$STAMP" ]; then
    exit 0
fi
if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
        echo "test-deps/kafka: installing a JDK and Maven (Debian packages)" >&2
        timeout "$FETCH_SECONDS" apt-get update -qq >/dev/null 2>&1 || echo "test-deps/kafka: apt-get update failed" >&2
        DEBIAN_FRONTEND=noninteractive timeout "$FETCH_SECONDS" \
            apt-get install -y -qq default-jdk-headless maven >/dev/null 2>&1 ||
            echo "test-deps/kafka: apt-get install default-jdk-headless maven failed" >&2
    fi
fi
if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
    unavailable "java or mvn not available (install a JDK and Maven, e.g. Debian default-jdk-headless and maven)"
fi

mkdir -p "$CACHE"
rm -rf "$CACHE/lib.tmp"
if ! timeout "$FETCH_SECONDS" mvn -q -B -f "$POM" dependency:copy-dependencies \
        -Dmaven.repo.local="$CACHE/repository" \
        -DoutputDirectory="$CACHE/lib.tmp" -DincludeScope=runtime >"$CACHE/mvn.log" 2>&1; then
    tail -n 20 "$CACHE/mvn.log" >&2 || true
    rm -rf "$CACHE/lib.tmp"
    unavailable "mvn dependency:copy-dependencies failed or took over ${FETCH_SECONDS}s (log: $CACHE/mvn.log)"
fi
if ! ls "$CACHE/lib.tmp"/kafka_2.13-*.jar >/dev/null 2>&1; then
    rm -rf "$CACHE/lib.tmp"
    unavailable "mvn copied no kafka_2.13 jar (log: $CACHE/mvn.log)"
fi
rm -rf "$CACHE/lib"
mv "$CACHE/lib.tmp" "$CACHE/lib"
touch "$STAMP"
echo "test-deps/kafka: $(find "$CACHE/lib" -name '*.jar' | wc -l) jars in $CACHE/lib" >&2
