"""demo/noop: the async engine; finishes at once, fails on request, cancels."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from genq.engines.context import Context, call_engine, run_local
from genq.engines.contract import EngineError, JobCanceled, Progress
from genq.engines.demo import Noop, NoopInput

from .helpers import check_progress, logs


def test_noop_at_once(tmp_path: Path) -> None:
    start = time.monotonic()
    records = run_local(Noop(), {}, tmp_path)
    assert time.monotonic() - start < 1
    assert records == [Progress(100.0, "done")]


def test_noop_with_delay_and_message(tmp_path: Path) -> None:
    records = run_local(Noop(), {"delay_s": 0.08, "message": "hello"}, tmp_path)
    check_progress(records, min_steps=4)
    assert logs(records) == ["hello"]


@pytest.mark.parametrize("delay", [0, 0.04])
def test_noop_fails_on_request(tmp_path: Path, delay: float) -> None:
    with pytest.raises(EngineError) as err:
        run_local(Noop(), {"fail": True, "message": "boom", "delay_s": delay}, tmp_path)
    assert str(err.value) == "boom"
    assert err.value.code == "engine_error"


async def test_noop_cancels(tmp_path: Path) -> None:
    ctx = Context(
        job_id="job_noop", input=NoopInput(delay_s=5), output_dir=tmp_path, sink=lambda r: None
    )
    task = asyncio.create_task(call_engine(Noop(), ctx))
    await asyncio.sleep(0.2)
    start = time.monotonic()
    ctx.cancel()
    with pytest.raises(JobCanceled):
        await asyncio.wait_for(task, 2)
    assert time.monotonic() - start < 1
    ctx.close()


@pytest.mark.parametrize("bad", [{"delay_s": -1}, {"fail": "maybe"}, {"extra": 1}])
def test_noop_invalid(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        NoopInput.model_validate(bad)
