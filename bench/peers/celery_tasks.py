"""The Celery app and its no-op task for celery_noop.py (a module of its own, so the
worker subprocess, `celery -A celery_tasks worker`, and the client share it).
Broker and result backend: Redis db 5 on 127.0.0.1 (BENCH_CELERY_REDIS)."""

from __future__ import annotations

import os
import time

from celery import Celery

REDIS = os.environ.get("BENCH_CELERY_REDIS", "redis://127.0.0.1:6379/5")

app = Celery("peer_noop", broker=REDIS, backend=REDIS)
# Celery's defaults otherwise (prefetch multiplier 4, acks on receipt); results kept
# 10 minutes so the run does not leave keys behind for a day
app.conf.update(result_expires=600, broker_connection_retry_on_startup=True,
                worker_hijack_root_logger=False)


@app.task(name="noop")
def noop() -> float:
    """The no-op job; returns its start time (time.time()) for submit-to-start."""
    return time.time()
