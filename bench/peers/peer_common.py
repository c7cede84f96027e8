"""What the peer benchmarks share (they run in venvs of their own, without genq, so they
import this file by path rather than bench/common.py): percentiles, latency summaries,
the load average and the machine."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any


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
