"""Client-side commands (`genq run`, `genq jobs ...`, `genq engines`), built on the SDK
alone: they talk to a server over HTTP like any other client.

`register(app)` adds them to a Typer app; `client_factory=` swaps how the `Client`
is made (tests point it at an `httpx.MockTransport`).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, Protocol

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn
from rich.table import Table

from genq.cli_help import App
from genq.client import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    Client,
    GenqError,
    InvalidInputError,
    Job,
    WaitTimeout,
)

EXIT_JOB_FAILED = 1
EXIT_ERROR = 2

BaseUrl = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        envvar="GENQ_BASE_URL",
        metavar="URL",
        show_default=False,
        help="server URL (default: http://127.0.0.1:8000)",
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key", envvar="GENQ_API_KEY", metavar="KEY", show_default=False, help="API key"
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]
WaitTimeoutS = Annotated[
    float | None,
    typer.Option("--timeout", min=0, metavar="SECONDS", help="stop waiting after SECONDS"),
]
OutDir = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o", file_okay=False, metavar="DIR", help="save the outputs in DIR (see above)"
    ),
]
Force = Annotated[
    bool, typer.Option("--force", help="with --out: replace files that are already there")
]
OUTPUT_FILES = """With --out, each output is saved in DIR under its own name: image_0.png,
thumbnail.png, and for an output named only by its format (glb, fbx), by its kind:
model.glb. A file appears only once complete. Files already there are left alone and
the command fails, unless --force."""


class ClientFactory(Protocol):
    def __call__(self, *, base_url: str | None, api_key: str | None) -> Client: ...


# -- parsing -----------------------------------------------------------------------


def _split(pair: str, option: str) -> tuple[str, str]:
    key, sep, value = pair.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint=option)
    return key, value


def parse_inputs(pairs: list[str]) -> dict[str, Any]:
    """`-i key=value` pairs: a value is JSON when it parses as JSON (`2`, `true`,
    `[1,2]`, `{"a":1}`, `"quoted"`), else the string as typed (`a red fox`)."""
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, raw = _split(pair, "-i")
        try:
            inputs[key] = json.loads(raw)
        except ValueError:
            inputs[key] = raw
    return inputs


def parse_file_inputs(pairs: list[str]) -> dict[str, Path]:
    """`-f key=@path` pairs (the `@` is optional): files to upload."""
    files: dict[str, Path] = {}
    for pair in pairs:
        key, raw = _split(pair, "-f")
        path = Path(raw.removeprefix("@"))
        if not path.is_file():
            raise typer.BadParameter(f"no such file: {str(path)!r}", param_hint="-f")
        files[key] = path
    return files


# -- output ------------------------------------------------------------------------


def _out() -> Console:
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:  # piped: do not cut ids to an imagined 80 columns
        console.width = max(console.width, 160)
    return console


def _ts(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else None


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    _err().print(message, markup=False)
    raise typer.Exit(code)


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _error_line(exc: GenqError, base_url: str) -> str:
    if isinstance(exc, APIStatusError):
        line = f"error: {exc.code or exc.status_code}: {exc.detail}"
        if isinstance(exc, InvalidInputError) and exc.errors:
            fields = "; ".join(f"{e.get('field', '?')}: {e.get('message', '')}" for e in exc.errors)
            line += f" ({fields})"
        if isinstance(exc, AuthenticationError):
            line += " (set GENQ_API_KEY or pass --api-key)"
        return line
    if isinstance(exc, APIConnectionError):
        return f"error: cannot reach {base_url}: {exc}"
    if isinstance(exc, WaitTimeout):
        return f"error: {exc} (it goes on; follow it: genq jobs watch {exc.job.id})"
    return f"error: {exc}"


@contextmanager
def _connect(factory: ClientFactory, base_url: str | None, api_key: str | None) -> Iterator[Client]:
    """A client for one command; an SDK error becomes one line on stderr and exit 2."""
    client = factory(base_url=base_url, api_key=api_key)
    try:
        with client:
            yield client
    except GenqError as exc:
        _fail(_error_line(exc, str(client.base_url)))


class ProgressBar:
    """A live bar of a job's status, progress, ETA and message, on stderr; usable as
    the `on_progress` callback of `jobs.wait`."""

    def __init__(self, job_id: str, *, enabled: bool = True) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[status]:<9}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[eta]}"),
            TextColumn("{task.fields[message]}", markup=False),
            console=_err(),
            disable=not enabled,
        )
        self._task = self._progress.add_task(
            job_id, total=100, status="submitted", eta="", message=""
        )

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, job: Job) -> None:
        message = job.message or ""
        if job.status == "queued" and job.queue_position is not None:
            message = f"queue position {job.queue_position}" + (f" - {message}" if message else "")
        eta = f"ETA {job.eta_s:.0f}s" if job.eta_s is not None and not job.is_terminal else ""
        done = 100.0 if job.status == "succeeded" else job.progress
        self._progress.update(
            self._task, completed=done, status=job.status, eta=eta, message=message
        )


def _job_dict(job: Job, downloads: dict[str, Path] | None = None) -> dict[str, Any]:
    data = job.model_dump(mode="json")
    if downloads is not None:
        data["downloads"] = {name: str(path) for name, path in downloads.items()}
    return data


def _wait(client: Client, job: Job, timeout: float | None, *, show: bool) -> Job:
    try:
        with ProgressBar(job.id, enabled=show) as bar:
            bar(job)
            return client.jobs.wait(job.id, timeout=timeout, on_progress=bar)
    except KeyboardInterrupt:
        _fail(f"interrupted; job {job.id} goes on (follow it: genq jobs watch {job.id})", 130)


def _download(client: Client, job: Job, out: Path, force: bool) -> dict[str, Path]:
    """Save a succeeded job's outputs in `out`; a file already there (without `force`)
    or one that cannot be written is one line on stderr and exit 2."""
    again = f"genq jobs watch {job.id} --out {out}"
    try:
        return client.jobs.download_all(job, out, overwrite=force)
    except FileExistsError as exc:
        _fail(
            f"error: {exc.filename} already exists; nothing was downloaded"
            f" (to replace it: {again} --force)"
        )
    except OSError as exc:
        where = exc.filename or out
        _fail(f"error: cannot write {where}: {exc.strerror or exc} (to try again: {again})")


def _finish(client: Client, job: Job, out: Path | None, as_json: bool, force: bool) -> None:
    """Print a terminal job's outputs (downloading them with `out`); exit 1 unless it
    succeeded."""
    downloads: dict[str, Path] | None = None
    if out is not None and job.status == "succeeded":
        downloads = _download(client, job, out, force)
    if as_json:
        _echo_json(_job_dict(job, downloads))
    elif job.status == "succeeded":
        for o in job.outputs:
            typer.echo(f"{o.name}\t{downloads[o.name] if downloads else o.url}")
    if job.status != "succeeded":
        code = job.error.code if job.error else job.status
        reason = job.error.message if job.error and job.error.message else job.status
        _fail(f"job {job.id} {job.status}: {code}: {reason}", EXIT_JOB_FAILED)


def _describe(job: Job) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows: list[tuple[str, Any]] = [
        ("id", job.id),
        ("engine", job.engine),
        ("status", job.status),
        ("progress", f"{job.progress:.0f}%"),
        ("message", job.message),
        ("queue position", job.queue_position),
        ("eta", job.eta_s and f"{job.eta_s:.0f}s"),
        ("created", _ts(job.created_at)),
        ("completed", _ts(job.completed_at)),
        ("error", job.error and f"{job.error.code}: {job.error.message}"),
    ]
    for name, value in rows:
        if value is not None and value != "":
            grid.add_row(name, str(value))
    for o in job.outputs:
        grid.add_row(f"output {o.name}", o.url)
    return grid


# -- commands ----------------------------------------------------------------------


class Commands:
    """The commands, bound to how they obtain a `Client`."""

    def __init__(self, client_factory: ClientFactory) -> None:
        self.client_factory = client_factory

    def run(
        self,
        engine: Annotated[
            str, typer.Argument(metavar="ENGINE", help="engine name, e.g. demo/text2image")
        ],
        inputs: Annotated[
            list[str] | None,
            typer.Option(
                "--input",
                "-i",
                metavar="KEY=VALUE",
                help="an input; VALUE is read as JSON when it is JSON (repeatable)",
            ),
        ] = None,
        files: Annotated[
            list[str] | None,
            typer.Option(
                "--file",
                "-f",
                metavar="KEY=@PATH",
                help="upload the file at PATH as input KEY (repeatable)",
            ),
        ] = None,
        wait: Annotated[bool, typer.Option(help="wait for the job, showing progress")] = True,
        out: OutDir = None,
        force: Force = False,
        as_json: AsJson = False,
        timeout: WaitTimeoutS = None,
        base_url: BaseUrl = None,
        api_key: ApiKey = None,
    ) -> None:
        """Submit a job and wait for it; exit 1 if it fails.

        Prints the job's id on stderr as soon as it exists, then a progress bar; stdout
        gets one line per output, its name and URL (or file, with --out). With
        --no-wait, stdout gets the job's id alone.
        """
        values = parse_inputs(inputs or [])
        uploads = parse_file_inputs(files or [])
        if out is not None and not wait:
            raise typer.BadParameter("--out needs --wait", param_hint="--out")
        with _connect(self.client_factory, base_url, api_key) as client:
            for key, path in uploads.items():
                values[key] = client.files.upload(path).id
            job = client.jobs.create(engine=engine, input=values)
            if not wait:
                if as_json:
                    _echo_json(_job_dict(job))
                else:
                    typer.echo(job.id)
                return
            _err().print(f"job {job.id}", markup=False)
            job = _wait(client, job, timeout, show=not as_json)
            _finish(client, job, out, as_json, force)

    def jobs_get(
        self,
        job_id: Annotated[str, typer.Argument(metavar="ID", help="the job's id")],
        as_json: AsJson = False,
        base_url: BaseUrl = None,
        api_key: ApiKey = None,
    ) -> None:
        """Show a job."""
        with _connect(self.client_factory, base_url, api_key) as client:
            job = client.jobs.retrieve(job_id)
        if as_json:
            _echo_json(_job_dict(job))
        else:
            _out().print(_describe(job))

    def jobs_list(
        self,
        status: Annotated[
            str | None,
            typer.Option(metavar="STATUS,...", help="only jobs in these statuses, e.g. queued"),
        ] = None,
        engine: Annotated[str | None, typer.Option(help="only jobs of this engine")] = None,
        limit: Annotated[
            int | None, typer.Option(min=1, max=100, metavar="N", help="jobs per page, 1 to 100")
        ] = None,
        after: Annotated[
            str | None,
            typer.Option(metavar="CURSOR", help="the page after CURSOR (printed after a page)"),
        ] = None,
        as_json: AsJson = False,
        base_url: BaseUrl = None,
        api_key: ApiKey = None,
    ) -> None:
        """List jobs, newest first."""
        with _connect(self.client_factory, base_url, api_key) as client:
            page = client.jobs.list(status=status, engine=engine, limit=limit, after=after)
        if as_json:
            _echo_json(page.model_dump(mode="json"))
            return
        table = Table("ID", "ENGINE", "STATUS", "PROGRESS", "CREATED", box=None)
        for job in page.data:
            table.add_row(
                job.id, job.engine, job.status, f"{job.progress:.0f}%", _ts(job.created_at) or ""
            )
        _out().print(table)
        if page.has_more and page.next_cursor:
            _err().print(f"more: --after {page.next_cursor}", markup=False)

    def jobs_cancel(
        self,
        job_id: Annotated[str, typer.Argument(metavar="ID", help="the job's id")],
        as_json: AsJson = False,
        base_url: BaseUrl = None,
        api_key: ApiKey = None,
    ) -> None:
        """Cancel a queued or running job."""
        with _connect(self.client_factory, base_url, api_key) as client:
            job = client.jobs.cancel(job_id)
        if as_json:
            _echo_json(_job_dict(job))
        elif job.is_terminal:
            typer.echo(f"{job.id} {job.status}")
        else:
            typer.echo(f"{job.id} cancel requested (now {job.status})")

    def jobs_watch(
        self,
        job_id: Annotated[str, typer.Argument(metavar="ID", help="the job's id")],
        out: OutDir = None,
        force: Force = False,
        as_json: AsJson = False,
        timeout: WaitTimeoutS = None,
        base_url: BaseUrl = None,
        api_key: ApiKey = None,
    ) -> None:
        """Follow a job until it ends (a live progress bar); exit 1 if it fails."""
        with _connect(self.client_factory, base_url, api_key) as client:
            job = client.jobs.retrieve(job_id)
            if not job.is_terminal:
                job = _wait(client, job, timeout, show=not as_json)
            _finish(client, job, out, as_json, force)

    def engines(
        self,
        as_json: AsJson = False,
        base_url: BaseUrl = None,
        api_key: ApiKey = None,
    ) -> None:
        """List the engines the server can run."""
        with _connect(self.client_factory, base_url, api_key) as client:
            engines = client.engines.list()
        if as_json:
            _echo_json([e.model_dump(mode="json") for e in engines])
            return
        table = Table("NAME", "TASK", "PRICE", "MEDIA", "TYPICAL", box=None)
        for e in engines:
            typical = f"{e.typical_duration_s:g}s" if e.typical_duration_s is not None else ""
            price = f"{e.price:g}" if e.price is not None else ""
            table.add_row(e.name, e.task or "", price, ", ".join(e.media), typical)
        _out().print(table)


RUN_EXAMPLES = """Examples:

$ genq run demo/text2image -i prompt='a red fox' -i num_images=2 --out out/
$ genq run demo/text-to-3d -i prompt='a chair' -o models/ --force
$ genq run demo/upscale -f image=@fox.png -i scale=2 --no-wait"""

JOBS_EXAMPLES = """Examples:

$ genq jobs list --status queued,running
$ genq jobs watch job_01JD4K3ZQ5M8W2X7C9V6B1N0TR --out out/
$ genq jobs get job_01JD4K3ZQ5M8W2X7C9V6B1N0TR --json
$ genq jobs cancel job_01JD4K3ZQ5M8W2X7C9V6B1N0TR"""


def register(app: typer.Typer, *, client_factory: ClientFactory = Client) -> None:
    """Add `run`, `jobs get|list|cancel|watch` and `engines` to `app` (a `genq.cli_help.App`
    for help in genq's style)."""
    commands = Commands(client_factory)
    run_help = f"{inspect.getdoc(commands.run)}\n\n{OUTPUT_FILES}"
    app.command("run", help=run_help, epilog=RUN_EXAMPLES)(commands.run)
    app.command("engines")(commands.engines)
    jobs = App(
        help="Show, list, cancel and watch jobs.", no_args_is_help=True, epilog=JOBS_EXAMPLES
    )
    jobs.command("get")(commands.jobs_get)
    jobs.command("list")(commands.jobs_list)
    jobs.command("cancel")(commands.jobs_cancel)
    jobs.command("watch", help=f"{inspect.getdoc(commands.jobs_watch)}\n\n{OUTPUT_FILES}")(
        commands.jobs_watch
    )
    app.add_typer(jobs, name="jobs")
