"""genq.telemetry.logs: the JSON and plain formats, the job context (and that it stays in its
task), the trace ids, and the redaction of every kind of secret in a message, its
arguments and a traceback."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config
import re
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from genq.settings import Settings
from genq.telemetry import logs

API_KEY = "gq_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"
WEBHOOK_SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
UPSTREAM_KEY = "vx-live-7f3a9c2e41d84b6a"  # no known shape: redacted because it is known
SIGNATURE = "5f2b0c9d7e6a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c"
CALLBACK_TOKEN = "q7bq0kHc9Yv2W4xXvT8l1mJ3pR6sU5nA0zE2iG4oK8c"
FILE_TOKEN = "Zp4kW9qv2L7s0XbT"

# a line that quotes the secret -> the secret that must not show
CASES: dict[str, tuple[str, str]] = {
    "api key": (f"caller {API_KEY} refused", API_KEY[3:]),
    "webhook secret": (f"signing with {WEBHOOK_SECRET}", WEBHOOK_SECRET[6:]),
    "upstream key": (f"upstream said: bad key {UPSTREAM_KEY}", UPSTREAM_KEY),
    "authorization header": (
        "headers {'Authorization': 'Bearer sk-proj-Zq81mWv0aT5xY3bK'}",
        "sk-proj-Zq81mWv0aT5xY3bK",
    ),
    "authorization line": ("Authorization: Key 0c6f:9a1e44be7d0c2f1a", "0c6f:9a1e44be7d0c2f1a"),
    "bearer": ("sent Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "eyJhbGciOiJIUzI1NiJ9.e30.sig"),
    "x-amz-signature": (
        f"GET https://s3.local/b/o.png?X-Amz-Algorithm=AWS4&X-Amz-Signature={SIGNATURE}&x=1",
        SIGNATURE,
    ),
    "x-amz-credential": (
        "https://s3.local/b/o?X-Amz-Credential=AKIAEXAMPLE%2F20261203%2Fus&X-Amz-Date=1",
        "AKIAEXAMPLE",
    ),
    "x-amz-security-token": (
        "https://s3.local/o?X-Amz-Security-Token=FwoGZXIvYXdzEJr%2F&a=b",
        "FwoGZXIvYXdzEJr",
    ),
    "signature": ("https://cdn.local/o.png?Expires=1&Signature=Qm9ndXNTaWc~&Key-Pair-Id=K", "Qm9n"),
    "token query": ("fetch https://r.local/out.mp4?token=tk_98sd7f6g5h&dl=1", "tk_98sd7f6g5h"),
    "json api_key": ('config {"api_key": "r8_Wq0mZ7xB2vK9pL4n"}', "r8_Wq0mZ7xB2vK9pL4n"),
    "callback path": (
        f'"POST /v1/upstreams/callbacks/job_01JD/{CALLBACK_TOKEN} HTTP/1.1" 204',
        CALLBACK_TOKEN,
    ),
    "public file path": (f"GET /files/job_01JD/{FILE_TOKEN}/image_0.png", FILE_TOKEN),
    "url password": ("postgresql://genq:hunter2hunter2@db.internal/genq", "hunter2hunter2"),
}


@pytest.fixture(autouse=True)
def _known() -> None:
    logs.know_secrets(UPSTREAM_KEY)


def emit(fmt: logs.LogFormat, fn: Any = None, *args: Any, **kwargs: Any) -> str:
    """What `fn(logger)` writes (default: an info line `args`) in format `fmt`."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.formatter(fmt))
    logger = logging.Logger("genq.test", logging.DEBUG)
    logger.addHandler(handler)
    if fn is None:
        logger.info(*args, **kwargs)
    else:
        fn(logger)
    return out.getvalue()


def emit_json(fn: Any = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
    text = emit("json", fn, *args, **kwargs)
    assert text.endswith("\n") and text.count("\n") == 1, text  # one line
    line: dict[str, Any] = json.loads(text)
    return line


def test_json_line_shape() -> None:
    line = emit_json(None, "hello %s", "world")
    assert set(line) == {"ts", "level", "logger", "msg"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"]), line["ts"]
    assert line["level"] == "info"
    assert line["logger"] == "genq.test"
    assert line["msg"] == "hello world"


def test_json_exception_and_newlines_stay_on_one_line() -> None:
    def fail(logger: logging.Logger) -> None:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            logger.exception("it failed:\n%s", "details")

    line = emit_json(fail)
    assert line["level"] == "error"
    assert line["msg"] == "it failed:\ndetails"
    assert line["exc"].startswith("Traceback (most recent call last):")
    assert "ValueError: boom\nsecond line" in line["exc"]


def test_a_bad_format_string_still_makes_a_line() -> None:
    line = emit_json(None, "%d apples", "many")
    assert "apples" in line["msg"] and "many" in line["msg"]


async def test_job_context_is_the_tasks_own() -> None:
    """Each task's lines carry its own job; the task that started them carries none;
    a thread of `asyncio.to_thread` carries its task's job."""
    lines: dict[str, dict[str, Any]] = {}

    async def job(n: int) -> None:
        logs.set_job(f"job_{n}", f"acct_{n}", f"demo/e{n}")
        await asyncio.sleep(0)  # the other task runs (and sets its own) in between
        lines[f"task{n}"] = emit_json(None, "working")
        lines[f"thread{n}"] = await asyncio.to_thread(emit_json, None, "in a thread")

    await asyncio.gather(job(1), job(2))
    for n in (1, 2):
        for where in ("task", "thread"):
            line = lines[f"{where}{n}"]
            assert (line["job_id"], line["account_id"], line["engine"]) == (
                f"job_{n}",
                f"acct_{n}",
                f"demo/e{n}",
            )
    assert "job_id" not in emit_json(None, "outside")
    assert logs.current_job() is None


def test_extra_names_the_job() -> None:
    line = emit_json(None, "reaped", extra={"job_id": "job_9", "engine": "demo/noop"})
    assert line["job_id"] == "job_9" and line["engine"] == "demo/noop"
    assert "account_id" not in line


def test_trace_and_span_ids_of_the_current_span() -> None:
    tracer = TracerProvider().get_tracer("test")
    assert "trace_id" not in emit_json(None, "no span")
    with tracer.start_as_current_span("work") as span:
        ctx = span.get_span_context()
        line = emit_json(None, "in a span")
    assert line["trace_id"] == format(ctx.trace_id, "032x")
    assert line["span_id"] == format(ctx.span_id, "016x")


@pytest.mark.parametrize("fmt", ["json", "plain"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_secrets_are_redacted_in_message_args_and_traceback(fmt: logs.LogFormat, case: str) -> None:
    text, secret = CASES[case]

    def everywhere(logger: logging.Logger) -> None:
        logger.warning(text)  # in the message
        logger.warning("got %s", text)  # in an argument
        logger.warning("got %(what)s", {"what": text})  # in a mapping argument
        try:
            raise RuntimeError(text)
        except RuntimeError:
            logger.exception("failed")  # in the traceback

    out = emit(fmt, everywhere)
    assert secret not in out, out
    assert out.count(logs.REDACTED) >= 4, out
    if fmt == "json":
        for line in out.splitlines():
            json.loads(line)


def test_redaction_keeps_what_is_not_secret() -> None:
    text = logs.redact(
        f"POST /v1/upstreams/callbacks/job_01JD/{CALLBACK_TOKEN} key of job_01JD https://h/p?a=1"
    )
    assert (
        text == "POST /v1/upstreams/callbacks/job_01JD/[redacted] key of job_01JD https://h/p?a=1"
    )
    assert logs.redact("job job_01JD succeeded in 2.5 s") == "job job_01JD succeeded in 2.5 s"


def test_secrets_of_the_settings() -> None:
    settings = Settings(
        upstreams={
            "vivix": {"base_url": "http://127.0.0.1:1", "api_key": "vx-server-key-123"},
            "fal": {"base_url": "http://127.0.0.1:1", "webhook_secret": "fal-hook-secret"},
        },
        metrics_token="metrics-token-456",
        secret_key="server-secret-7",
    )
    found = logs.secrets_of(settings)
    for secret in ("vx-server-key-123", "fal-hook-secret", "metrics-token-456", "server-secret-7"):
        assert secret in found
    assert "http://127.0.0.1:1" not in found


def test_plain_format_appends_the_job() -> None:
    def line(logger: logging.Logger) -> None:
        logger.info("done", extra={"job_id": "job_7", "account_id": "acct_1", "engine": "x/y"})

    out = emit("plain", line)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO genq\.test: done"
        r" job=job_7 account=acct_1 engine=x/y\n",
        out,
    ), out


def test_plain_format_with_a_traceback() -> None:
    def fail(logger: logging.Logger) -> None:
        try:
            raise KeyError(API_KEY)
        except KeyError:
            logger.error("lookup failed", exc_info=True)

    out = emit("plain", fail)
    first, rest = out.split("\n", 1)
    assert first.endswith("ERROR genq.test: lookup failed")
    assert rest.startswith("Traceback") and "KeyError" in rest and API_KEY not in out


@pytest.fixture
def restore_uvicorn_loggers() -> Iterator[None]:
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {
        n: (lg.handlers[:], lg.propagate, lg.level) for n in names for lg in [logging.getLogger(n)]
    }
    yield
    for n, (handlers, propagate, level) in saved.items():
        lg = logging.getLogger(n)
        lg.handlers[:] = handlers
        lg.propagate, lg.level = propagate, level


def test_uvicorn_access_lines_go_through_the_formatter(
    restore_uvicorn_loggers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logging.config.dictConfig(logs.uvicorn_config("json"))
    access = logging.getLogger("uvicorn.access")
    access.info(  # as uvicorn's httptools protocol logs a request
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5000",
        "POST",
        f"/v1/upstreams/callbacks/job_01JD/{CALLBACK_TOKEN}",
        "1.1",
        204,
    )
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 1)
    captured = capsys.readouterr()
    assert captured.out == ""
    first, second = (json.loads(x) for x in captured.err.splitlines())
    assert first["logger"] == "uvicorn.access"
    assert first["msg"] == (
        '127.0.0.1:5000 - "POST /v1/upstreams/callbacks/job_01JD/[redacted] HTTP/1.1" 204'
    )
    assert second["logger"] == "uvicorn.error" and second["msg"] == "Started server process [1]"
