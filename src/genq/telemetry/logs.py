"""genq's log lines: plain text for a terminal, or one JSON object per line for a log
collector (`GENQ_LOG_FORMAT=json`), uvicorn's lines included. Either way a line says
which job it concerns (job, account, engine: a context variable set where a job is
handled) and which trace (the current OpenTelemetry span), and secrets are redacted
from it: API keys, webhook secrets, upstream keys, Authorization values, presigned URL
signatures, `token=` values, passwords in URLs and the tokens in callback and public
file paths.

The redaction is a safety net, not the rule: log calls do not pass secrets to begin
with. It costs a few substring tests per line (a pattern runs only where its telltale
substring shows; about 2 us for an access line), and nothing when nothing logs.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import traceback
from collections.abc import Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final, Literal

import orjson
from opentelemetry import trace

if TYPE_CHECKING:
    from genq.settings import Settings

LogFormat = Literal["plain", "json"]
REDACTED: Final = "[redacted]"
MAX_LITERALS: Final = 512  # known secrets (upstream keys) the redactor also looks for

# (job_id, account_id, engine) of the job the current task (or thread) works on. Set
# inside that task: a task copies its context when created, so a value set in one
# job's task never shows in another's.
_job: ContextVar[tuple[str, str | None, str | None] | None] = ContextVar("genq_job", default=None)


def set_job(job_id: str, account_id: str | None = None, engine: str | None = None) -> None:
    """Mark the current task's log lines as being about this job (one context-variable
    write: cheap enough for the job and request paths)."""
    _job.set((job_id, account_id, engine))


def current_job() -> tuple[str, str | None, str | None] | None:
    return _job.get()


# -- redaction ----------------------------------------------------------------------------

_QUERY_NAMES: Final = frozenset(
    [
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "signature",
        "sig",
        "token",
        "access_token",
        "api_key",
        "api-key",
        "apikey",
        "key",
        "secret",
        "password",
    ]
)


def _keep(m: re.Match[str]) -> str:
    return m.group(1) + REDACTED


_NAME_BEFORE: Final = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z][A-Za-z0-9_-]*\Z")


def _query_value(m: re.Match[str]) -> str:
    """`=value` whose name (the word before it) is a secret's: `=[redacted]`. (The
    pattern starts at `=`, which the regex engine finds fast; a pattern starting at the
    name would be tried at every letter.)"""
    start = m.start()
    name = _NAME_BEFORE.search(m.string, max(0, start - 24), start)
    if name is not None and name.group().lower() in _QUERY_NAMES:
        return "=" + REDACTED
    return m.group()


# (substrings, one of which a text has if the rule can apply; whether they are looked for
# in the lowercased text; the pattern, group 1 being what stays; the replacement). The
# substring test is what most lines cost: a scan for each pattern would cost ~30 us.
_RULES: Final[tuple[tuple[tuple[str, ...], bool, re.Pattern[str], Any], ...]] = (
    # genq's API keys (`gq_` + 32) and webhook secrets (`whsec_` + base64)
    (("gq_",), False, re.compile(r"(\bgq_)[A-Za-z0-9_-]{8,}"), _keep),
    (("whsec_",), False, re.compile(r"(\bwhsec_)[A-Za-z0-9+/=_-]{8,}"), _keep),
    # an Authorization header written out: `authorization: Bearer x`, `'Authorization': 'x'`
    (
        ("authorization",),
        True,
        re.compile(
            r"((?i:authorization)[\"']?\s*[:=]\s*[\"']?)"
            r"(?i:(?:Bearer|Basic|Token|Key)\s+)?[^\s\"',}]+"
        ),
        _keep,
    ),
    # a credential scheme and its value, wherever it shows
    (
        ("Bearer", "Basic", "Token", "Key"),
        False,
        re.compile(r"(\b(?:Bearer|Basic|Token|Key)\s+)[A-Za-z0-9._~+/=:-]{16,}"),
        _keep,
    ),
    # URL query (or `name=value`) values: presigned URL signatures and credentials,
    # tokens, keys, secrets
    (("=",), False, re.compile(r"=[^&\s\"'#<>]+"), _query_value),
    # JSON or a Python dict's repr: `"api_key": "x"`, `'token': 'x'`
    (
        ("key", "secret", "token", "password", "authorization"),
        True,
        re.compile(
            r"((?i:[\"'](?:api[_-]?key|secret|token|password|authorization)[\"']\s*:\s*))"
            r"[\"'][^\"']*[\"']"
        ),
        _keep,
    ),
    # the token in an upstream callback path and in a public output file's path
    (
        ("/v1/upstreams/callbacks/",),
        False,
        re.compile(r"(/v1/upstreams/callbacks/[^/\s?#\"']+/)[^/\s?#\"']+"),
        _keep,
    ),
    (("/files/job_",), False, re.compile(r"(/files/job_[^/\s?#\"']+/)[^/\s?#\"']+"), _keep),
    # a password in a URL: `postgresql://user:secret@host`, `redis://:secret@host`
    (("://",), False, re.compile(r"(://[^/\s:@]*:)[^/\s@]+(?=@)"), _keep),
)


class Redactor:
    """Replaces secrets in text: the patterns above, plus secrets known by value
    (upstream keys have no common shape: the server's are registered at startup, an
    account's own when a job uses it)."""

    def __init__(self) -> None:
        self._literals: dict[str, None] = {}  # insertion-ordered: the oldest go first
        self._literal_re: re.Pattern[str] | None = None

    def know(self, secrets: Iterable[str | None]) -> None:
        changed = False
        for secret in secrets:
            if not secret or len(secret) < 8 or secret in self._literals:
                continue
            self._literals[secret] = None
            changed = True
            if len(self._literals) > MAX_LITERALS:
                del self._literals[next(iter(self._literals))]
        if changed:
            alternatives = sorted(self._literals, key=len, reverse=True)
            self._literal_re = re.compile("|".join(map(re.escape, alternatives)))

    def __call__(self, text: str) -> str:
        lowered = text.lower()
        for triggers, lower, pattern, replace in _RULES:
            within = lowered if lower else text
            for trigger in triggers:
                if trigger in within:
                    text = pattern.sub(replace, text)
                    break
        if self._literal_re is not None:
            text = self._literal_re.sub(REDACTED, text)
        return text


redact = Redactor()


def know_secrets(*secrets: str | None) -> None:
    """Secrets the log must never show, by value (an upstream key)."""
    redact.know(secrets)


_SECRET_OPTION = re.compile(r"(?i)key|secret|token|password")


def secrets_of(settings: Settings) -> list[str]:
    """The secrets in the configuration: upstream keys (any option named like a key,
    secret, token or password), the server's secret key and the metrics token."""
    found = [settings.secret_key.get_secret_value(), settings.metrics_token or ""]
    for options in settings.upstreams.values():
        for name, value in options.items():
            if isinstance(value, str) and _SECRET_OPTION.search(name):
                found.append(value)
    return found


# -- formatters -----------------------------------------------------------------------------


def _timestamp(record: logging.LogRecord) -> str:
    """RFC 3339, UTC, milliseconds."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


def _context(record: logging.LogRecord) -> dict[str, str]:
    """The job and trace a line is about: `extra=` values win over the task's."""
    out: dict[str, str] = {}
    job = _job.get()
    if job is not None:
        job_id, account_id, engine = job
        out["job_id"] = job_id
        if account_id:
            out["account_id"] = account_id
        if engine:
            out["engine"] = engine
    for name in ("job_id", "account_id", "engine"):
        value = record.__dict__.get(name)
        if value:
            out[name] = str(value)
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        out["trace_id"] = format(span.trace_id, "032x")
        out["span_id"] = format(span.span_id, "016x")
    return out


def _exception(record: logging.LogRecord) -> str | None:
    parts = []
    if record.exc_info and record.exc_info[0] is not None:
        parts.append("".join(traceback.format_exception(*record.exc_info)).rstrip())
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    return redact("\n".join(parts)) if parts else None


def _message(record: logging.LogRecord) -> str:
    try:
        return redact(record.getMessage())
    except Exception:  # a bad format string: still a line, with what was given
        return redact(f"{record.msg!r} % {record.args!r}")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, [exc], [job_id, account_id,
    engine], [trace_id, span_id]."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _message(record),
        }
        exc = _exception(record)
        if exc is not None:
            line["exc"] = exc
        line.update(_context(record))
        return orjson.dumps(line).decode()


_SHORT = {"job_id": "job", "account_id": "account", "engine": "engine", "trace_id": "trace"}


class PlainFormatter(logging.Formatter):
    """`time LEVEL logger: message job=... account=... engine=... trace=...`, then the
    traceback, if any."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        head = f"{self.formatTime(record)} {record.levelname} {record.name}: {_message(record)}"
        context = _context(record)
        if context:
            head += " " + " ".join(f"{_SHORT[k]}={v}" for k, v in context.items() if k in _SHORT)
        exc = _exception(record)
        return f"{head}\n{exc}" if exc else head


def formatter(fmt: LogFormat) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else PlainFormatter()


def configure(level: str, fmt: LogFormat = "plain", secrets: Iterable[str | None] = ()) -> None:
    """Log to stderr at `level` in `fmt` (replacing any handler the root logger has),
    redacting `secrets` besides the patterns."""
    redact.know(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def uvicorn_config(fmt: LogFormat) -> dict[str, Any]:
    """uvicorn's `log_config`: its server and access loggers write through genq's
    formatter to stderr (uvicorn's default sends the access log to stdout)."""
    factory = f"{__name__}.{'JsonFormatter' if fmt == 'json' else 'PlainFormatter'}"
    handler = {"class": "logging.StreamHandler", "formatter": "genq", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"genq": {"()": factory}},
        "handlers": {"genq": handler},
        "loggers": {
            "uvicorn": {"handlers": ["genq"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["genq"], "level": "INFO", "propagate": False},
        },
    }
