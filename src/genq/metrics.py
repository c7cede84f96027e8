"""Prometheus metrics, on a registry of their own per `Genq` (no global state)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from genq.events import Change, EventBus
from genq.jobcache import Board


class Metrics:
    def __init__(self, bus: EventBus) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter(
            "genq_job_events", "Job events seen by this process", ["type"], registry=self.registry
        )
        self.finished = Counter(
            "genq_jobs_finished",
            "Jobs that reached a terminal status",
            ["status"],
            registry=self.registry,
        )
        self.jobs = Gauge(
            "genq_jobs",
            "Jobs by status and engine (non-terminal only)",
            ["status", "engine"],
            registry=self.registry,
        )
        self._children: dict[str, Any] = {}
        self._finished: dict[str, Any] = {}
        bus.subscribe(self._on_change)

    def _on_change(self, change: Change) -> None:
        # label children looked up once (labels() costs a lock and a tuple each call)
        child = self._children.get(change.type)
        if child is None:
            child = self._children[change.type] = self.events.labels(change.type)
        child.inc()
        if change.type == "completed":
            done = self._finished.get(change.status)
            if done is None:
                done = self._finished[change.status] = self.finished.labels(change.status)
            done.inc()

    def refresh(self, board: Board) -> None:
        """`genq_jobs` from the board of unfinished jobs this process keeps (fed by
        every process's events): no query per scrape."""
        self.jobs.clear()
        for (status, engine), n in board.counts().items():
            self.jobs.labels(status, engine).set(n)
