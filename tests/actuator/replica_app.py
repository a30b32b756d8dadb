"""A tiny replica for the local backend's tests: an HTTP server with /healthz, stdlib only.

Options make it misbehave on purpose: ignore SIGTERM, exit after a while, answer 503 on /healthz,
or spawn a child process (to check that stopping reaches the whole process group).  With
``--pid-file`` it appends its pid (and its child's) so a test can check nothing is left running.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--exit-after", type=float, default=0.0)
    parser.add_argument("--unhealthy", action="store_true")
    parser.add_argument("--spawn-child", action="store_true")
    parser.add_argument("--pid-file", default="")
    args = parser.parse_args()

    pids = []
    if args.spawn_child:
        pids.append(str(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]).pid))
    if args.pid_file:
        with open(args.pid_file, "a", encoding="utf-8") as out:
            out.write("\n".join([str(os.getpid()), *pids]) + "\n")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = 503 if args.unhealthy and self.path == "/healthz" else 200
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"ok\n")

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    if args.exit_after > 0:
        threading.Timer(args.exit_after, lambda: os._exit(3)).start()
    server.serve_forever(poll_interval=0.05)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
