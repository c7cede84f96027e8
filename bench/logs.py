"""What a log line costs with genq.telemetry.logs, against the format genq used before it
(`logging.basicConfig`'s): CPU microseconds per `log.info(...)` call written to /dev/null
(process time: the machine is shared), best of `--repeats` runs of `--lines` calls, in one process (no server: the formatter
and the handler are all that differ). Also the cost of `genq.telemetry.logs.set_job`, which the
job and submit paths pay whether a line is written or not.

    PYTHONPATH=$PWD/src python bench/logs.py [--lines 50000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable

from opentelemetry.sdk.trace import TracerProvider

from genq.telemetry import logs

ACCESS = '%s - "%s %s HTTP/%s" %d'
ACCESS_ARGS = ("127.0.0.1:50312", "GET", "/v1/jobs/job_01JDQ8G4ZP3M4W0C1V2B3N4M5K", "1.1", 200)
SECRET_ARGS = ("127.0.0.1:50312", "GET", "/files/job_01JDQ8G4/Zp4kW9qv2L7s0XbT/a.png", "1.1", 200)


def best(fn: Callable[[], None], lines: int, repeats: int) -> float:
    """CPU microseconds per call: the best of `repeats` runs of `lines` calls."""
    runs = []
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(lines):
            fn()
        runs.append((time.process_time() - start) / lines * 1e6)
    return min(runs)


def logger_with(formatter: logging.Formatter) -> logging.Logger:
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 (for the run)
    handler.setFormatter(formatter)
    logger = logging.Logger("uvicorn.access", logging.INFO)
    logger.addHandler(handler)
    return logger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n, r = args.lines, args.repeats
    before = logger_with(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    plain = logger_with(logs.formatter("plain"))
    as_json = logger_with(logs.formatter("json"))
    tracer = TracerProvider().get_tracer("bench")
    rows: list[tuple[str, float]] = []

    def line(logger: logging.Logger, *a: object) -> Callable[[], None]:
        return lambda: logger.info(ACCESS, *a)

    rows.append(
        ("before (basicConfig format), an access line", best(line(before, *ACCESS_ARGS), n, r))
    )
    rows.append(("plain, an access line", best(line(plain, *ACCESS_ARGS), n, r)))
    rows.append(("json, an access line", best(line(as_json, *ACCESS_ARGS), n, r)))
    rows.append(("json, a line with a token to redact", best(line(as_json, *SECRET_ARGS), n, r)))

    logs.set_job("job_01JDQ8G4ZP3M4W0C1V2B3N4M5K", "acct_01JDQ8G4ZP3M4W0C1V2B3N", "demo/noop")
    rows.append(("plain, a line about a job", best(line(plain, *ACCESS_ARGS), n, r)))
    rows.append(("json, a line about a job", best(line(as_json, *ACCESS_ARGS), n, r)))
    with tracer.start_as_current_span("bench"):
        rows.append(("json, a line about a job in a span", best(line(as_json, *ACCESS_ARGS), n, r)))
    rows.append(
        ("logs.set_job (the job and submit paths)", best(lambda: logs.set_job("j", "a", "e"), n, r))
    )
    disabled = logger_with(logs.formatter("json"))
    disabled.setLevel(logging.WARNING)
    rows.append(("a line below the level (not written)", best(line(disabled, *ACCESS_ARGS), n, r)))
    print(f"{n} calls, best of {r}")
    print("| case | CPU µs per call |")
    print("| --- | ---: |")
    for name, us in rows:
        print(f"| {name} | {us:.2f} |")


if __name__ == "__main__":
    main()
