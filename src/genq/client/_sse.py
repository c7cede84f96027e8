"""Server-Sent Events: a pure line decoder and the typed event it yields."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from genq.client._types import Job


class JobEvent(BaseModel):
    """One event of a job's stream: `status`, `progress`, `output`, `log` or
    `completed` (whose `data` is the whole job, also as `.job`)."""

    id: int
    event: str
    data: dict[str, Any] = Field(default_factory=dict)
    job: Job | None = None  # set on `completed`

    @property
    def status(self) -> str | None:
        value = self.data.get("status")
        return value if isinstance(value, str) else None


class SSEDecoder:
    """Feed it lines (without newlines); it returns an event at each blank line."""

    def __init__(self) -> None:
        self._fields: dict[str, str] = {}
        self._data: list[str] = []

    def feed(self, line: str) -> JobEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name in ("id", "event", "retry"):
            self._fields[name] = value
        return None

    def _dispatch(self) -> JobEvent | None:
        fields, data = self._fields, self._data
        self._fields, self._data = {}, []
        if not data or not fields.get("id", "").isdigit():
            return None
        payload = json.loads("\n".join(data))
        event = fields.get("event", "message")
        job = Job.model_validate(payload) if event == "completed" else None
        return JobEvent(id=int(fields["id"]), event=event, data=payload, job=job)
