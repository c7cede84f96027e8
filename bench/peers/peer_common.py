"""What the peer benchmarks share (they run in venvs of their own, without genq, so they
import this file by path rather than bench/common.py): percentiles, latency summaries,
the load average, the machine, stopping a worker and PostgreSQL's version."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "out"
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def stats_ms(values: list[float]) -> dict[str, float | int | None]:
    def r(x: float | None) -> float | None:
        return None if x is None else round(x * 1000, 2)

    return {"n": len(values), "p50_ms": r(percentile(values, 50)),
            "p90_ms": r(percentile(values, 90)), "p99_ms": r(percentile(values, 99)),
            "max_ms": r(max(values) if values else None)}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "cpu_model": cpu, "kernel": platform.release(),
            "python": platform.python_version()}


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (each peer's graceful stop) to the worker's process group (its children
    too), SIGKILL after a grace period. Workers are started with start_new_session."""
    for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)


def pg_version(dsn: str) -> str:
    import psycopg  # only the PostgreSQL peers' venvs have it

    with psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"
