"""The `genq` command: server-side commands here (serve, worker, keys, db); the
client-side ones (run, jobs, engines) live in `genq.cli_client` and use the SDK."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from genq.cli_help import App
from genq.engines.diffusers.cli import models_app as diffusers_models_app
from genq.settings import Settings

if TYPE_CHECKING:
    from genq.accounts import AccountService

SERVE_EXAMPLES = """Examples:

$ genq serve
$ genq serve --data-dir /srv/genq --host 0.0.0.0 --port 8080
$ GENQ_DATABASE_URL=postgresql://genq@db.internal/genq genq serve --no-workers
$ genq worker --engines demo/text2image,demo/upscale --slots 2"""

KEYS_EXAMPLES = """Examples:

$ genq keys create --account acme --plan pro --credits 5000
$ export GENQ_API_KEY=$(genq keys create --account me)
$ genq keys revoke gq_3fA9x2L"""

app = App(
    help="genq: a self-hosted server for asynchronous generation jobs.",
    pretty_exceptions_enable=False,
)
keys_app = App(help="Create and revoke API keys.", epilog=KEYS_EXAMPLES)
accounts_app = App(help="Accounts, plans and credits.")
db_app = App(help="The database's schema.")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(accounts_app, name="accounts")
err = Console(stderr=True)
out = Console()
T = TypeVar("T")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="GENQ_DATA_DIR",
        metavar="DIR",
        show_default=False,
        help="where the SQLite database and the files live (default: .genq)",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]


def settings_for(data_dir: Path | None = None, **overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)


def _logging(settings: Settings) -> None:
    """The log of a long-running command: its format, level and the secrets it redacts."""
    from genq.telemetry import logs

    logs.configure(settings.log_level, settings.log_format, logs.secrets_of(settings))


def _say(settings: Settings, text: str) -> None:
    """A line for the operator: on the console, or a log line where stderr is JSON."""
    if settings.log_format == "json":
        logging.getLogger("genq.cli").info("%s", Text.from_markup(text).plain)
    else:
        err.print(text)


def _app_or_exit(make: Callable[[], T]) -> T:
    """Build what serves (or works); a configuration it cannot use ends the command
    with its message and status 2, not a traceback."""
    from genq.errors import ConfigError

    try:
        return make()
    except ConfigError as exc:
        err.print(str(exc), markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


@app.command(epilog=SERVE_EXAMPLES)
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            envvar="GENQ_HOST",
            metavar="ADDRESS",
            show_default=False,
            help="address to listen on (default: 127.0.0.1)",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(envvar="GENQ_PORT", show_default=False, help="port (default: 8000)"),
    ] = None,
    data_dir: DataDir = None,
    workers: Annotated[
        int | None,
        typer.Option(
            envvar="GENQ_WORKER_SLOTS",
            metavar="N",
            show_default=False,
            help="jobs the in-process workers run at once (default: 4; 0: none)",
        ),
    ] = None,
    no_workers: Annotated[
        bool, typer.Option("--no-workers", help="API only; genq worker processes run the jobs")
    ] = False,
    access_log: Annotated[
        bool | None,
        typer.Option("--access-log", envvar="GENQ_ACCESS_LOG", help="log every request"),
    ] = None,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(
            envvar="GENQ_SSL_CERTFILE",
            metavar="PEM",
            exists=True,
            dir_okay=False,
            show_default=False,
            help="serve HTTPS with this certificate (chain); with --ssl-keyfile",
        ),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None,
        typer.Option(
            envvar="GENQ_SSL_KEYFILE",
            metavar="PEM",
            exists=True,
            dir_okay=False,
            show_default=False,
            help="the certificate's private key",
        ),
    ] = None,
) -> None:
    """Serve the API, with workers in the same process."""
    import uvicorn

    from genq.api import create_app
    from genq.api.server import Server
    from genq.telemetry import logs

    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise typer.BadParameter("--ssl-certfile and --ssl-keyfile go together")
    settings = settings_for(
        data_dir,
        host=host,
        port=port,
        worker_slots=workers or None,
        access_log=access_log,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
    )
    _logging(settings)
    application = _app_or_exit(
        lambda: create_app(settings, workers=not no_workers and workers != 0, freeze_gc=True)
    )
    _say(settings, f"genq serving on [bold]{settings.base_url}[/] (data in {settings.data_dir})")
    config = uvicorn.Config(
        application,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=logs.uvicorn_config(settings.log_format),
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 5,
        ssl_certfile=settings.ssl_certfile or None,
        ssl_keyfile=settings.ssl_keyfile or None,
    )
    server = Server(config, application)
    server.run()
    if not server.started:
        raise typer.Exit(3)  # as uvicorn.run: the server could not start (port in use, ...)


@app.command()
def worker(
    data_dir: DataDir = None,
    engines: Annotated[
        str | None,
        typer.Option(
            metavar="NAME,...",
            show_default=False,
            help="the engines this worker runs (default: all)",
        ),
    ] = None,
    slots: Annotated[
        int | None,
        typer.Option(
            envvar="GENQ_WORKER_SLOTS",
            metavar="N",
            min=1,
            show_default=False,
            help="jobs run at once (default: 4)",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            envvar="GENQ_METRICS_PORT",
            metavar="PORT",
            show_default=False,
            help="serve Prometheus /metrics on this port (GENQ_METRICS_HOST: 127.0.0.1)",
        ),
    ] = None,
) -> None:
    """Run workers alone, on the server's database."""
    from genq.core import Genq
    from genq.telemetry.metrics import serve

    settings = settings_for(data_dir, worker_slots=slots, metrics_port=metrics_port)
    _logging(settings)
    names = [e.strip() for e in engines.split(",")] if engines else None

    async def main() -> None:
        core = _app_or_exit(lambda: Genq(settings))
        core.serves_reads = False
        unknown = [n for n in names or () if n not in core.engines]
        if unknown:
            raise typer.BadParameter(f"unknown engine(s): {', '.join(unknown)}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await core.start(workers=True, engine_names=names)
        exposed = None
        if settings.metrics_port is not None:
            exposed = await serve(core.metrics, settings.metrics_host, settings.metrics_port)
        gc.freeze()  # what is alive now stays: full collections skip it
        assert core.worker is not None
        running = len(core.worker.engines)
        _say(settings, f"genq worker {core.worker.owner} running {running} engines")
        await stop.wait()
        _say(settings, "stopping: finishing in-flight jobs")
        await core.stop()
        if exposed is not None:
            exposed.close()

    asyncio.run(main())


def _with_accounts(settings: Settings, fn: Callable[[AccountService], Awaitable[T]]) -> T:
    """Run `fn` against the database (migrated first) with an AccountService."""
    from genq.accounts import AccountService
    from genq.migrate import upgrade
    from genq.store import Store

    upgrade(settings.db_url)

    async def main() -> T:
        store = Store(settings.db_url)
        try:
            return await fn(AccountService(store, settings.plan_table))
        finally:
            await store.close()

    return asyncio.run(main())


@keys_app.command("create")
def keys_create(
    data_dir: DataDir = None,
    account: Annotated[
        str, typer.Option(metavar="NAME", help="the key's account (made if new)")
    ] = "default",
    plan: Annotated[str, typer.Option(help="a new account's plan")] = "free",
    credits: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            show_default=False,
            help="credits to grant (default: a new account gets its plan's monthly credits)",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(metavar="LABEL", show_default=False, help="a label for the key")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Create an API key, and its account if new.

    The key is printed once, on stdout; it cannot be shown again.
    """

    async def create(svc: AccountService) -> tuple[str, Any]:
        acct = await svc.get_or_create(account, plan, credits)
        secret, _ = await svc.create_key(acct, name)
        return secret, await svc.by_name(acct.name)

    secret, acct = _with_accounts(settings_for(data_dir), create)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "key": secret,
                    "account": acct.name,
                    "account_id": acct.id,
                    "plan": acct.plan,
                    "balance": acct.balance,
                }
            )
        )
    else:
        typer.echo(secret)
        err.print(
            f"key for account [bold]{acct.name}[/] ({acct.plan}, {acct.balance} credits); "
            "it is not shown again"
        )


@keys_app.command("revoke")
def keys_revoke(
    prefix: Annotated[
        str, typer.Argument(help="the key's first 10 characters, as GET /v1/account shows")
    ],
    data_dir: DataDir = None,
) -> None:
    """Revoke a key by its prefix."""

    async def revoke(svc: AccountService) -> bool:
        return await svc.revoke_key(prefix)

    if not _with_accounts(settings_for(data_dir), revoke):
        err.print(f"no active key with prefix {prefix!r}")
        raise typer.Exit(1)
    err.print(f"revoked {prefix} (servers trust a cached key for up to GENQ_KEY_CACHE_S)")


def _account_row(a: Any) -> dict[str, Any]:
    return {
        "id": a.id,
        "name": a.name,
        "plan": a.plan,
        "balance": a.balance,
        "created_at": a.created_at.isoformat(),
    }


@accounts_app.command("list")
def accounts_list(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """All accounts with plan and balance."""

    async def run(svc: AccountService) -> list[Any]:
        return await svc.all()

    rows = [_account_row(a) for a in _with_accounts(settings_for(data_dir), run)]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table("name", "plan", "balance", "id", "created")
    for r in rows:
        table.add_row(r["name"], r["plan"], str(r["balance"]), r["id"], r["created_at"][:19])
    out.print(table)


@accounts_app.command("show")
def accounts_show(
    name: Annotated[str, typer.Argument(help="the account's name")], data_dir: DataDir = None
) -> None:
    """One account, its keys and its plan's limits (JSON)."""

    async def run(svc: AccountService) -> dict[str, Any]:
        a = await svc.by_name(name)
        keys = await svc.keys(a.id)
        return {
            **_account_row(a),
            "limits": svc.plan(a.plan).model_dump(),
            "keys": [
                {
                    "prefix": k.prefix,
                    "name": k.name,
                    "created_at": k.created_at.isoformat(),
                    "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None,
                    "revoked": k.revoked_at is not None,
                }
                for k in keys
            ],
        }

    typer.echo(json.dumps(_with_accounts(settings_for(data_dir), run), indent=2))


@accounts_app.command("credit")
def accounts_credit(
    name: Annotated[str, typer.Argument(help="the account's name")],
    amount: Annotated[int, typer.Argument(help="credits to add (negative to remove)")],
    note: Annotated[
        str | None, typer.Option(metavar="TEXT", show_default=False, help="why, for the ledger")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Grant (or remove) credits."""

    async def run(svc: AccountService) -> int:
        a = await svc.by_name(name)
        return await svc.grant(a.id, amount, note or "granted by an operator")

    err.print(f"{name}: balance {_with_accounts(settings_for(data_dir), run)}")


@accounts_app.command("plan")
def accounts_plan(
    name: Annotated[str, typer.Argument(help="the account's name")],
    plan: Annotated[str, typer.Argument(help="the new plan, e.g. pro")],
    data_dir: DataDir = None,
) -> None:
    """Move an account to another plan."""

    async def run(svc: AccountService) -> Any:
        return await svc.set_plan(name, plan)

    a = _with_accounts(settings_for(data_dir), run)
    err.print(f"{a.name} is now on the {a.plan} plan")


@accounts_app.command("ledger")
def accounts_ledger(
    name: Annotated[str, typer.Argument(help="the account's name")],
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """The account's credits ledger, oldest first."""

    async def run(svc: AccountService) -> tuple[Any, list[Any]]:
        a = await svc.by_name(name)
        return a, await svc.ledger(a.id)

    account, entries = _with_accounts(settings_for(data_dir), run)
    rows = [
        {
            "id": e.id,
            "kind": e.kind,
            "amount": e.amount,
            "balance_after": e.balance_after,
            "job_id": e.job_id,
            "note": e.note,
            "at": e.created_at.isoformat(),
        }
        for e in entries
    ]
    if as_json:
        typer.echo(
            json.dumps({"account": account.name, "balance": account.balance, "entries": rows})
        )
        return
    table = Table("#", "when", "kind", "amount", "balance", "job / note")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["at"][:19],
            r["kind"],
            str(r["amount"]),
            str(r["balance_after"]),
            r["job_id"] or r["note"] or "",
        )
    out.print(table)
    out.print(f"balance: [bold]{account.balance}[/]")


@app.command()
def doctor(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Check an installation: database, schema, engines, storage, workers, ledger.

    Read-only, and it never creates a database. Each check is ok, warn or fail; the
    exit status is 1 when one fails (warnings do not count).
    """
    from genq.doctor import Status, diagnose

    settings = settings_for(data_dir)
    report = diagnose(settings)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    elif not report.found:
        err.print(f"error: {report.checks[0].detail}", markup=False, soft_wrap=True)
        err.print(report.hint, markup=False, soft_wrap=True)
    else:
        out.print(f"database  {report.database}", markup=False, highlight=False)
        out.print(f"data dir  {report.data_dir}", markup=False, highlight=False)
        style = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "bold red"}
        table = Table("check", "status", "detail")
        for c in report.checks:
            table.add_row(c.name, f"[{style[c.status]}]{c.status}[/]", Text(c.detail))
        out.print(table)
    if not report.ok:
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None) -> None:
    """Make the database, or bring it to the latest schema."""
    from genq.doctor import masked
    from genq.migrate import upgrade

    settings = settings_for(data_dir)
    upgrade(settings.db_url)
    err.print(f"database at {masked(settings.db_url)} is up to date", markup=False)


upstreams_app = App(help="Upstream providers genq drives (GENQ_UPSTREAMS).")
app.add_typer(upstreams_app, name="upstreams")
app.add_typer(diffusers_models_app, name="models")  # genq models pull (GENQ_DIFFUSERS)


@upstreams_app.command("check")
def upstreams_check(
    provider: Annotated[
        list[str] | None,
        typer.Argument(help="providers to check (default: every configured one)"),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Try each configured provider's server key with a cheap call."""
    from genq.engines.upstream.base import UpstreamError
    from genq.engines.upstream.gateway import Gateway
    from genq.errors import ConfigError

    try:
        gateway = Gateway(Settings().upstreams)
    except ConfigError as exc:
        err.print(str(exc), markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if not gateway:
        err.print("no upstream providers configured (set GENQ_UPSTREAMS)")
        raise typer.Exit(2)
    names = provider or sorted(gateway.upstreams)
    unknown = [n for n in names if n not in gateway.upstreams]
    if unknown:
        raise typer.BadParameter(f"not configured: {', '.join(unknown)}")

    async def check(name: str) -> dict[str, Any]:
        up = gateway.upstreams[name]
        row: dict[str, Any] = {"provider": name, "base_url": up.base_url}
        if not up.api_key:
            return {**row, "ok": False, "error": "no server api_key (accounts' own keys only)"}
        try:
            summary = await up.provider.check(gateway.call(up, up.api_key))
        except UpstreamError as exc:
            return {**row, "ok": False, "error": f"{exc.code}: {exc.message}"}
        return {**row, "ok": True, "summary": summary}

    async def main() -> list[dict[str, Any]]:
        try:
            return [await check(n) for n in names]
        finally:
            await gateway.close()

    rows = asyncio.run(main())
    if as_json:
        typer.echo(json.dumps(rows))
    else:
        for row in rows:
            said = row.get("summary") if row["ok"] else row.get("error")
            typer.echo(f"{row['provider']:<13} {'ok' if row['ok'] else 'FAILED':<7} {said}")
    if not all(r["ok"] for r in rows):
        raise typer.Exit(1)


def _register_client_commands() -> None:
    try:
        from genq import cli_client
    except ImportError:  # pragma: no cover - during development only
        return
    cli_client.register(app)


_register_client_commands()


def main() -> None:
    app()
