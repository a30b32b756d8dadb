"""The `scalebus` command: `scalebus run` (the demo loop) and `scalebus simulate` (offline replay)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from shared.config import ConfigError

DEFAULT_DEMO = Path(__file__).resolve().parent.parent / "deploy" / "local" / "demo.yaml"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="scalebus", description="scalebus: an event-driven autoscaler over NATS")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the whole loop on this machine (what `make run` does)")
    run.add_argument("--config", type=Path, default=DEFAULT_DEMO, help="demo config (deploy/local/demo.yaml)")
    run.add_argument("--duration", type=float, default=None, help="stop by itself after this many seconds")
    run.add_argument("--logs", type=Path, default=None, help="keep the services' JSON logs in this directory")
    sub.add_parser("simulate", help="replay a trace through a policy offline", add_help=False)
    if args[:1] == ["simulate"]:
        from services.decider.simulate import main as simulate

        return simulate(args[1:])
    parsed = parser.parse_args(args)
    if parsed.command == "run":
        from scalebus.run import run_demo

        try:
            return asyncio.run(run_demo(parsed.config, duration=parsed.duration, log_dir=parsed.logs))
        except ConfigError as exc:
            print(f"scalebus run: invalid configuration: {exc}", file=sys.stderr)
            return 2
    parser.error(f"unknown command {parsed.command}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
