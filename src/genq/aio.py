"""Small asyncio helpers. `asyncio.timeout` rather than `wait_for`: on Python 3.11,
`wait_for` can lose a cancellation that arrives as its timeout fires, and a task
being stopped then never ends."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until `event` is set; False if `timeout` seconds pass first."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
