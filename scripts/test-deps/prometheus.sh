#!/usr/bin/env bash
# Real Prometheus for the collector's PromQL tests (tests/collector/test_prometheus_source.py).
#
# Uses /usr/bin/prometheus when the Debian package is installed; otherwise extracts the
# Debian package (apt-get download + dpkg -x) into a cache under the home directory, so no
# system service is ever installed or started.  Idempotent: quick when already done.
set -euo pipefail

CACHE="${SCALEBUS_TEST_DEPS_CACHE:-$HOME/.cache/scalebus-test-deps}/prometheus"
BINARY="$CACHE/root/usr/bin/prometheus"

if [ -x /usr/bin/prometheus ] || [ -x "$BINARY" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "test-deps/prometheus: apt-get not available; Prometheus tests will be skipped" >&2
    exit 0
fi

mkdir -p "$CACHE/download"
cd "$CACHE/download"
if ! ls prometheus_*.deb >/dev/null 2>&1; then
    if ! apt-get download prometheus >/dev/null 2>&1; then
        echo "test-deps/prometheus: refreshing the package lists" >&2
        apt-get update -qq >/dev/null 2>&1 || true
        apt-get download prometheus >/dev/null 2>&1 || {
            echo "test-deps/prometheus: cannot download the Debian package 'prometheus'; its tests will be skipped" >&2
            exit 0
        }
    fi
fi
rm -rf "$CACHE/root.tmp"
dpkg -x prometheus_*.deb "$CACHE/root.tmp"
rm -rf "$CACHE/root"
mv "$CACHE/root.tmp" "$CACHE/root"
"$BINARY" --version 2>&1 | head -n 1 >&2
