"""Real third-party servers for the collector's source tests: Prometheus and Kafka.

Each is found where ``scripts/test-deps/*.sh`` (run by ``make test-deps``) put it; when it cannot
be found the test is skipped with the reason, never passed (with ``SCALEBUS_REQUIRE_TEST_DEPS=1``,
for CI that must run them, it fails instead).  Servers bind to free 127.0.0.1
ports, keep their data in the test's tmp_path, and are stopped (process group) at the end.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import NoReturn

import pytest

from shared.natsserver import free_port

CACHE = Path(os.environ.get("SCALEBUS_TEST_DEPS_CACHE", Path.home() / ".cache" / "scalebus-test-deps"))


class ServerUnavailable(Exception):
    """The server's binary or jars are not installed; the message says how to get them."""


def skip_unavailable(exc: ServerUnavailable) -> NoReturn:
    """Skip the test with the reason, or fail it when the environment requires the real servers."""
    if os.environ.get("SCALEBUS_REQUIRE_TEST_DEPS") == "1":
        pytest.fail(f"{exc} (SCALEBUS_REQUIRE_TEST_DEPS=1)")
    pytest.skip(str(exc))


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- Prometheus -----------------------------------------------------------------------------


def find_prometheus() -> str:
    for candidate in (Path("/usr/bin/prometheus"), CACHE / "prometheus" / "root" / "usr" / "bin" / "prometheus"):
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("prometheus")
    if found:
        return found
    raise ServerUnavailable(
        "Prometheus not found (/usr/bin/prometheus or the test-deps cache): run `make test-deps` "
        "(scripts/test-deps/prometheus.sh extracts the Debian package `prometheus`)"
    )


class PrometheusServer:
    """A real Prometheus scraping the given targets every second.

    Synchronous on purpose, so one server can serve a whole test module.
    """

    def __init__(self, workdir: Path, scrape_targets: list[str]) -> None:
        self.binary = find_prometheus()
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._targets = scrape_targets
        self._process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "prometheus.log"

    def start(self, within: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        targets = ", ".join(f"'{target}'" for target in self._targets)
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: exporter\n    scrape_interval: 1s\n"
            f"    static_configs:\n      - targets: [{targets}]\n"
        )
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._process.returncode}:\n{_tail(self.log)}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"prometheus not ready within {within}s:\n{_tail(self.log)}")

    def wait_for_series(self, query: str, within: float = 30.0) -> None:
        """Wait until ``query`` returns at least one series (the first scrapes have landed)."""
        deadline = time.monotonic() + within
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                with urllib.request.urlopen(url, timeout=2) as response:
                    body = json.load(response)
                if body.get("status") == "success" and body["data"]["result"]:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"prometheus has no series for {query!r} after {within}s")

    def stop(self) -> None:
        _stop_popen(self._process)
        self._process = None


class ExpositionServer:
    """A real HTTP exporter in a thread, serving fixed Prometheus text (for module-scoped servers)."""

    def __init__(self, body: str) -> None:
        payload = body.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_: object) -> None:
                return None

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _stop_popen(process: subprocess.Popen[bytes] | None, grace: float = 20.0) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# -- Kafka ----------------------------------------------------------------------------------

KAFKA_LIB = CACHE / "kafka" / "lib"


def find_kafka_classpath() -> str:
    if not shutil.which("java"):
        raise ServerUnavailable("java not found: run `make test-deps` (scripts/test-deps/kafka.sh installs a JDK)")
    if not any(KAFKA_LIB.glob("kafka_2.13-*.jar")):
        raise ServerUnavailable(
            f"Kafka jars not found in {KAFKA_LIB}: run `make test-deps` "
            "(scripts/test-deps/kafka.sh fetches org.apache.kafka:kafka_2.13 from Maven Central)"
        )
    return f"{KAFKA_LIB}/*"


def kafka_cluster_id() -> str:
    """A random KRaft cluster id (URL-safe base64 of a UUID). Like Kafka's own ``Uuid.randomUuid()``, never one
    starting with ``-``: the storage tool's argument parser would read it as an option (1 id in 64)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBroker:
    """A real single-node Kafka broker in KRaft mode (broker and controller in one JVM).

    Synchronous on purpose, so one broker can serve a whole test module (a JVM start costs seconds).
    """

    def __init__(self, workdir: Path) -> None:
        self.classpath = find_kafka_classpath()
        self.workdir = workdir
        self.port = free_port()
        self.controller_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log = workdir / "kafka.log"
        self._process: subprocess.Popen[bytes] | None = None

    def _java(self, *args: str) -> list[str]:
        log4j = self.workdir / "log4j.properties"
        return [
            "java",
            "-Xms256m",
            "-Xmx512m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j.configuration=file:{log4j}",
            "-cp",
            self.classpath,
            *args,
        ]

    def start(self, within: float = 90.0) -> None:
        """Format the storage and start the broker."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "log4j.properties").write_text(
            "log4j.rootLogger=INFO, file\n"
            "log4j.appender.file=org.apache.log4j.FileAppender\n"
            f"log4j.appender.file.File={self.log}\n"
            "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        )
        properties = self.workdir / "server.properties"
        properties.write_text(
            "process.roles=broker,controller\n"
            "node.id=1\n"
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}\n"
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}\n"
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}\n"
            "controller.listener.names=CONTROLLER\n"
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n"
            "inter.broker.listener.name=PLAINTEXT\n"
            f"log.dirs={self.workdir / 'data'}\n"
            "num.partitions=1\n"
            "offsets.topic.replication.factor=1\n"
            "offsets.topic.num.partitions=1\n"
            "transaction.state.log.replication.factor=1\n"
            "transaction.state.log.min.isr=1\n"
            "group.initial.rebalance.delay.ms=0\n"
            "auto.create.topics.enable=false\n"
        )
        cluster_id = kafka_cluster_id()
        formatted = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(properties)),
            capture_output=True,
            timeout=within,
            check=False,
        )
        if formatted.returncode != 0:
            raise RuntimeError(f"kafka storage format failed: {formatted.stderr.decode(errors='replace')[-2000:]}")
        self._launch(within)

    def restart(self, within: float = 90.0) -> None:
        """Stop and start again on the same ports, keeping the data (for failure tests)."""
        self.stop()
        self.log.write_text("")
        self._launch(within)

    def _launch(self, within: float) -> None:
        properties = self.workdir / "server.properties"
        self._process = subprocess.Popen(
            self._java("kafka.Kafka", str(properties)),
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "kafka.stderr").open("wb"),
            start_new_session=True,
        )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"kafka exited with {self._process.returncode}:\n{_tail(self.log)}")
            if self.log.exists() and "Kafka Server started" in self.log.read_text(errors="replace"):
                return
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"kafka did not start within {within}s:\n{_tail(self.log)}")

    def stop(self) -> None:
        _stop_popen(self._process)
        self._process = None
