#!/usr/bin/env bash
# Real Prometheus for the collector's PromQL tests (tests/collector/test_prometheus_source.py).
#
# Uses /usr/bin/prometheus when the Debian package is installed; otherwise extracts the
# Debian package (apt-get download + dpkg -x) into a cache under the home directory, so no
# system service is ever installed or started.  Idempotent: quick when already done.  Every
# network step is bounded by `timeout`.
#
# When the package cannot be had, this says why and exits 0: the Prometheus tests are then
# skipped with the reason printed.  With SCALEBUS_REQUIRE_TEST_DEPS=1 (CI that must run them) it
# exits 1 instead, and the tests fail rather than skip.  A download that cannot be unpacked or a
# binary that does not run is always an error (exit 1).
set -euo pipefail

CACHE="${SCALEBUS_TEST_DEPS_CACHE:-$HOME/.cache/scalebus-test-deps}/prometheus"
BINARY="$CACHE/root/usr/bin/prometheus"
FETCH_SECONDS="${SCALEBUS_TEST_DEPS_TIMEOUT:-600}"

unavailable() {
    echo "test-deps/prometheus: $1" >&2
    if [ "${SCALEBUS_REQUIRE_TEST_DEPS:-0}" = "1" ]; then
        echo "test-deps/prometheus: SCALEBUS_REQUIRE_TEST_DEPS=1: failing instead of skipping the Prometheus tests" >&2
        exit 1
    fi
    echo "test-deps/prometheus: the Prometheus tests will be skipped" >&2
    exit 0
}

newest_deb() {
    ls -t prometheus_*.deb 2>/dev/null | head -n 1
}

if [ -x /usr/bin/prometheus ] || [ -x "$BINARY" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
    unavailable "apt-get/dpkg not available (install Prometheus 2.x as /usr/bin/prometheus)"
fi

mkdir -p "$CACHE/download"
cd "$CACHE/download"
if [ -z "$(newest_deb)" ]; then
    if ! timeout "$FETCH_SECONDS" apt-get download prometheus >/dev/null 2>&1; then
        if [ "$(id -u)" = "0" ]; then
            echo "test-deps/prometheus: refreshing the package lists" >&2
            timeout "$FETCH_SECONDS" apt-get update -qq >/dev/null 2>&1 ||
                echo "test-deps/prometheus: apt-get update failed" >&2
        fi
        timeout "$FETCH_SECONDS" apt-get download prometheus >/dev/null 2>&1 ||
            unavailable "cannot download the Debian package 'prometheus' (apt-get download prometheus)"
    fi
fi
DEB="$(newest_deb)"
rm -rf "$CACHE/root.tmp"
if ! dpkg -x "$DEB" "$CACHE/root.tmp"; then
    rm -rf "$CACHE/root.tmp" "$CACHE/download/$DEB"
    echo "test-deps/prometheus: cannot unpack $DEB (removed; run again to download it anew)" >&2
    exit 1
fi
if ! VERSION="$("$CACHE/root.tmp/usr/bin/prometheus" --version 2>&1)" || [ -z "$VERSION" ]; then
    rm -rf "$CACHE/root.tmp"
    echo "test-deps/prometheus: the extracted binary from $DEB does not run" >&2
    exit 1
fi
rm -rf "$CACHE/root"
mv "$CACHE/root.tmp" "$CACHE/root"
echo "test-deps/prometheus: ${VERSION%%$'\n'*} in $CACHE/root/usr/bin" >&2
