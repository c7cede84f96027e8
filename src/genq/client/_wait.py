"""How `jobs.wait` paces its requests (pure: no I/O, the clock is injected).

Each request long-polls (`?wait=N`, N <= 30, never past the caller's deadline); a
server that holds it answers when the job changes or N seconds pass. Request starts
are spaced at least by the server's `Retry-After` advice (or `poll_interval`), so a
server that ignores `wait` is polled at its advised pace rather than hammered, and a
server that held the request for that long is asked again at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from genq.client._retry import parse_retry_after
from genq.client._types import Job

LONG_POLL_MAX_S = 30
DEFAULT_POLL_S = 1.0
MAX_POLL_S = 10.0


class Poller:
    def __init__(
        self,
        *,
        clock: Callable[[], float],
        timeout: float | None,
        poll_interval: float | None,
    ) -> None:
        self.clock = clock
        self.deadline = None if timeout is None else clock() + timeout
        self.poll_interval = poll_interval
        self._seen: tuple[object, ...] | None = None

    def remaining_s(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.clock()

    def hold_s(self) -> int:
        """The `wait` to ask the server for: whole seconds, 0 for a plain GET."""
        remaining = self.remaining_s()
        if remaining is None:
            return LONG_POLL_MAX_S
        return max(0, min(LONG_POLL_MAX_S, int(remaining)))

    def changed(self, job: Job) -> bool:
        """True the first time and whenever what a progress display shows changed."""
        key = (job.status, job.progress, job.message, job.queue_position)
        if key == self._seen:
            return False
        self._seen = key
        return True

    def delay_s(self, headers: Mapping[str, str], *, elapsed: float) -> float | None:
        """Seconds to sleep before the next request, or None once the deadline passed."""
        remaining = self.remaining_s()
        if remaining is not None and remaining <= 0:
            return None
        if self.poll_interval is not None:
            pace = self.poll_interval
        else:
            advised = parse_retry_after(headers)
            pace = DEFAULT_POLL_S if advised is None else min(advised, MAX_POLL_S)
        delay = max(0.0, pace - elapsed)
        return delay if remaining is None else min(delay, remaining)
