"""useapi.net's PixVerse API (v1, seed 001): videos made by the PixVerse Discord bot.

Engine `useapi/pixverse-video`: `POST /v1/pixverse/create_single` `{prompt (<=512),
style (Realistic | Anime | 3D Animation), negative_prompt?, aspect_ratio?, character?,
seed_value?, maxJobs?, replyUrl?, replyRef?, discord?, server?, channel?}` makes one
video. The answer and `GET /v1/pixverse/jobs/?jobid=...` are the job model of seed 001:
`status` created | started | progress | completed | failed | moderated | cancelled,
`content` (the bot's message, with the progress in percent while it runs) and, once
completed, `attachments` (url, proxy_url, content_type, width, height, filename, size).

- Push: with `replyUrl` the service POSTs the job model there when the job completes,
  and `replyRef` (genq sends the job id) is stored and returned with the job. Nothing
  signs the push; the gateway matches it by its own token and `parse_callback` reads it.
- Polling: useapi.net itself reads Discord every 15-60 s and asks clients to wait 10-30 s
  between reads, so polls are 30 s apart (rarely needed with the push).
- Concurrency: `maxJobs` (1-10, the account's PixVerse concurrency) is sent with every
  create, from the provider option `max_jobs`; over it the service answers 429.
  `discord`, `server`, `channel` (options of the same names) are sent when set, for a
  Discord account not configured at useapi.net.
- No cancel endpoint, no documented idempotency key, and no way to list jobs by
  `replyRef`: a create whose answer is lost cannot be found again. Jobs live at least
  31 days; an expired one answers 410.
- Errors: `{"error": "...", "code": N}`: 400, 401, 402 (no subscription), 404, 410, 429.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, ClassVar, Final, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from genq.engines.contract import OutputKind
from genq.engines.upstream.base import (
    FAILED,
    NOT_FOUND,
    REJECTED,
    UNAVAILABLE,
    UNKNOWN,
    Call,
    Created,
    EngineSpec,
    Provider,
    Remote,
    Snapshot,
    State,
    UpstreamError,
    error_by_status,
    message_of,
    retry_after,
)

NAME: Final = "useapi"
TITLE: Final = "useapi.net PixVerse"

STATES: Final[dict[str, State]] = {
    "created": "queued",
    "started": "running",
    "progress": "running",
    "completed": "succeeded",
    "failed": "failed",
    "moderated": "failed",
    "cancelled": "canceled",
}
PATHS: Final[dict[str, str]] = {"pixverse-video": "/v1/pixverse/create_single"}
JOBS: Final = "/v1/pixverse/jobs/"
MAX_JOBS_RANGE: Final = (1, 10)
PERCENT: Final = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")

Style = Literal["Realistic", "Anime", "3D Animation"]
Aspect = Literal["16:9", "9:16", "1:1", "4:3", "3:4"]
Character = Literal[
    "eula",
    "ganyu",
    "hutao",
    "kamisatoayaka",
    "keqing",
    "klee",
    "nahida",
    "ningguang",
    "raidenshogun",
    "xiangling",
    "yaemiko",
]


class PixVerseVideoInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=512, description="What the video shows.")
    style: Style = Field(description="Style of the video.")
    negative_prompt: str | None = Field(
        default=None, min_length=1, max_length=512, description="What not to show."
    )
    aspect_ratio: Aspect | None = Field(
        default=None, description="Aspect ratio of the video (PixVerse's default: 16:9)."
    )
    character: Character | None = Field(
        default=None, description="A character to feature; used with the Anime style only."
    )
    seed_value: int | None = Field(
        default=None, ge=0, le=2147483647, description="Seed of the generation (random if unset)."
    )


def _percent(content: Any) -> float | None:
    """The last percentage in the bot's message (`... 45%`), if any."""
    if not isinstance(content, str):
        return None
    found = PERCENT.findall(content)
    if not found:
        return None
    return max(0.0, min(100.0, float(found[-1])))


def _kind(ctype: str | None, filename: str) -> OutputKind:
    if ctype:
        if ctype.startswith("video/"):
            return "video"
        if ctype.startswith("image/"):
            return "image"
    lower = filename.lower()
    if lower.endswith((".mp4", ".webm", ".mov")):
        return "video"
    if lower.endswith((".png", ".jpg", ".jpeg", ".webp", ".gif")):
        return "image"
    return "other"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class UseapiPixVerse(Provider):
    name: ClassVar[str] = NAME
    title: ClassVar[str] = TITLE
    callbacks: ClassVar[bool] = True  # replyUrl
    cancellable: ClassVar[bool] = False  # no cancel endpoint for PixVerse v1 jobs
    # maxJobs: 1-10 (the most PixVerse's Discord bot runs at once); docs' example is 10
    default_max_jobs: ClassVar[int] = 10
    default_rate_per_min: ClassVar[int | None] = None  # none documented

    def engines(self) -> list[EngineSpec]:
        return [
            EngineSpec(
                what="pixverse-video",
                task="text2video",
                input_model=PixVerseVideoInput,
                media=("video",),
                description="PixVerse (through useapi.net's Discord bridge): one short "
                "video from a prompt, in a Realistic, Anime or 3D Animation style.",
                cost=None,  # useapi.net is a subscription; PixVerse bills its own plan
                typical_duration_s=870.0,  # the seed's example job: created to completed
                poll_s=30.0,  # the service itself polls Discord every 15-60 s
            )
        ]

    def max_jobs(self) -> int:
        value = self.options.get("max_jobs", self.default_max_jobs)
        try:
            n = int(value)
        except (TypeError, ValueError):
            n = self.default_max_jobs
        low, high = MAX_JOBS_RANGE
        return max(low, min(high, n))

    async def create(
        self,
        call: Call,
        what: str,
        data: BaseModel,
        *,
        reference: str,
        callback_url: str | None,
        idempotency_key: str | None,
    ) -> Created:
        if what not in PATHS:
            raise UpstreamError("invalid_input", f"{TITLE} has no engine {what!r}")
        payload: dict[str, Any] = data.model_dump(exclude_none=True)
        payload["maxJobs"] = self.max_jobs()
        for option in ("discord", "server", "channel"):
            value = self.options.get(option)
            if value:
                payload[option] = str(value)
        if callback_url:
            payload["replyUrl"] = callback_url
        payload["replyRef"] = reference  # stored and returned with the job
        response = await call.request(
            "POST", PATHS[what], json=payload, idempotency_key=idempotency_key
        )
        try:
            body = response.json()
        except ValueError:
            body = None
        jobid = body.get("jobid") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(jobid, str) or not jobid:
            raise UpstreamError(
                UNKNOWN,
                f"{TITLE} accepted the job but its answer has no jobid",
                status=response.status_code,
            )
        return Created(upstream_id=jobid, snapshot=self.snapshot(body))

    async def status(self, call: Call, what: str, upstream_id: str) -> Snapshot:
        try:
            response = await call.request("GET", JOBS, params={"jobid": upstream_id})
        except UpstreamError as exc:
            if exc.status == 404:  # "Unable to locate job"
                raise UpstreamError(NOT_FOUND, exc.message, status=404) from exc
            raise
        try:
            body = response.json()
        except ValueError as exc:
            raise UpstreamError(UNAVAILABLE, f"{TITLE} answered a body that is not JSON") from exc
        snap = self.snapshot(body) if isinstance(body, dict) else None
        if snap is None:
            raise UpstreamError(UNAVAILABLE, f"{TITLE} answered a job without a known status")
        return snap

    def parse_callback(self, what: str, body: Any) -> Snapshot | None:
        """The job model POSTed to replyUrl (the same as a status read)."""
        if not isinstance(body, dict) or not isinstance(body.get("jobid"), str):
            return None
        return self.snapshot(body)

    def callback_id(self, what: str, body: Any) -> str | None:
        """A pushed job model's `jobid` (the genq job is matched by the callback's own
        token; its `replyRef` is the genq job id too)."""
        if isinstance(body, dict) and isinstance(body.get("jobid"), str):
            return str(body["jobid"])
        return None

    def snapshot(self, body: dict[str, Any]) -> Snapshot | None:
        """A job model (seed 001) as a Snapshot; None when its status is not one of the
        documented words."""
        word = body.get("status")
        state = STATES.get(word) if isinstance(word, str) else None
        if state is None or not isinstance(word, str):
            return None
        content = body.get("content")
        if state == "failed":
            said = body.get("error") or body.get("errorDetails")
            text = said if isinstance(said, str) and said else None
            if word == "moderated":
                return Snapshot(
                    state="failed",
                    message=word,
                    error_code=REJECTED,
                    error_message=f"PixVerse moderated the job: {text or 'content refused'}",
                )
            return Snapshot(
                state="failed",
                message=word,
                error_code=FAILED,
                error_message=text or "PixVerse reports the job failed",
            )
        if state == "canceled":
            said = body.get("error")
            return Snapshot(
                state="canceled", message=said if isinstance(said, str) and said else word
            )
        if state == "succeeded":
            outputs = self._outputs(body)
            if not outputs:
                return Snapshot(
                    state="failed",
                    message=word,
                    error_code=FAILED,
                    error_message=f"{TITLE} reports the job completed without attachments",
                )
            return Snapshot(state="succeeded", progress=100.0, message=word, outputs=outputs)
        progress = _percent(content)
        if progress is None and word == "created":
            progress = 0.0
        return Snapshot(state=state, progress=progress, message=word)

    def _outputs(self, body: dict[str, Any]) -> tuple[Remote, ...]:
        found = body.get("attachments")
        if not isinstance(found, list):
            return ()
        remotes: list[Remote] = []
        taken: dict[str, int] = {}
        for item in found:
            if not isinstance(item, dict):
                continue
            url = item.get("url") or item.get("proxy_url")
            if not isinstance(url, str) or not url:
                continue
            ctype = item.get("content_type")
            ctype = ctype if isinstance(ctype, str) and ctype else None
            filename = item.get("filename")
            filename = filename if isinstance(filename, str) else ""
            kind = _kind(ctype, filename)
            base = kind if kind != "other" else "file"
            taken[base] = taken.get(base, 0) + 1
            name = base if taken[base] == 1 else f"{base}_{taken[base]}"
            meta: dict[str, Any] = {
                k: v for k in ("width", "height", "size") if (v := _int(item.get(k))) is not None
            }
            if filename:
                meta["filename"] = filename
            remotes.append(Remote(name, url, ctype, kind, meta))
        return tuple(remotes)

    async def check(self, call: Call) -> str:
        """Read a made-up job: 404 (or 400) means the token was accepted; 401 raises."""
        probe = f"genq-check-{uuid.uuid4().hex[:12]}"
        response = await call.request("GET", JOBS, params={"jobid": probe}, ok=(400, 404))
        return f"{TITLE}: token accepted (a made-up job answers {response.status_code})"

    def error_of(self, response: httpx.Response) -> UpstreamError:
        """`{"error": "...", "code": N}` (429 may add `runningJobs`)."""
        status = response.status_code
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        said = body.get("error") if isinstance(body, dict) else None
        message = said if isinstance(said, str) and said else message_of(response)
        if status == 429 and isinstance(body, dict) and isinstance(body.get("runningJobs"), list):
            message = f"{message} (running jobs: {len(body['runningJobs'])})"
        message = message[:500]
        if status == 410:  # "Job has expired"
            return UpstreamError(
                NOT_FOUND, message, status=status, retry_after=retry_after(response)
            )
        if status == 408:
            return UpstreamError(
                UNAVAILABLE, message, status=status, retry_after=retry_after(response)
            )
        return error_by_status(response, message)


PROVIDER = UseapiPixVerse
