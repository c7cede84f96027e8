"""Print the engine the benchmarks should use: `demo/noop` when genq has it, else the
test engine `test/sleep` (from tests/scenario_engines.py), with a note on stderr."""

from __future__ import annotations

import logging
import sys

logging.disable(logging.CRITICAL)  # a half-written demo package logs load errors


def main() -> int:
    from genq.engines.registry import load_engines

    try:
        have = load_engines()
    except Exception as exc:  # noqa: BLE001 - any failure means: fall back
        print(f"note: engines failed to load ({exc}); using test/sleep", file=sys.stderr)
        have = {}
    if "demo/noop" in have:
        print("demo/noop")
    else:
        print("note: demo/noop is not available yet; benchmarking with test/sleep "
              "(tests/scenario_engines.py)", file=sys.stderr)
        print("test/sleep")
    return 0


if __name__ == "__main__":
    sys.exit(main())
