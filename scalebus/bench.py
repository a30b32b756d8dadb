"""`make bench`: runs every service's benchmark and prints its figures (no assertions: figures to read)."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("services.decider.bench", "services.collector.bench", "services.actuator.bench")


def main() -> int:
    code = 0
    for module_name in BENCHMARKS:
        print(f"== {module_name}", flush=True)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            print(f"   not available: {exc}")
            continue
        result = module.main()
        if result:
            print(f"   {module_name} exited with {result}", file=sys.stderr)
            code = result
    return code


if __name__ == "__main__":
    raise SystemExit(main())
