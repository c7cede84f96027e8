"""The `genq` command: server-side commands here (serve, worker, keys, db); the
client-side ones (run, jobs, engines) live in `genq.cli_client` and use the SDK."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from genq.settings import Settings

app = typer.Typer(help="genq: a self-hosted server for asynchronous generation jobs.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
err = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="data directory [GENQ_DATA_DIR]")]


def settings_for(data_dir: Path | None = None, **overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address [GENQ_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="port [GENQ_PORT]")] = None,
    data_dir: DataDir = None,
    workers: Annotated[int | None, typer.Option(
        help="jobs run at once by in-process workers [GENQ_WORKER_SLOTS]")] = None,
    no_workers: Annotated[bool, typer.Option(
        "--no-workers", help="API only; `genq worker` processes run the jobs")] = False,
) -> None:
    """Serve the API with in-process workers."""
    import uvicorn

    from genq.api import create_app

    settings = settings_for(data_dir, host=host, port=port, worker_slots=workers)
    _logging(settings.log_level)
    application = create_app(settings, workers=not no_workers and workers != 0)
    err.print(f"genq serving on [bold]{settings.base_url}[/] (data in {settings.data_dir})")
    uvicorn.run(application, host=settings.host, port=settings.port,
                log_level=settings.log_level, timeout_graceful_shutdown=int(
                    settings.shutdown_grace_s) + 5)


@app.command()
def worker(
    data_dir: DataDir = None,
    engines: Annotated[str | None, typer.Option(
        help="comma-separated engine names this worker hosts (default: all)")] = None,
    slots: Annotated[int | None, typer.Option(help="jobs run at once")] = None,
) -> None:
    """Run workers only, against the same database as the server."""
    from genq.core import Genq

    settings = settings_for(data_dir, worker_slots=slots)
    _logging(settings.log_level)
    names = [e.strip() for e in engines.split(",")] if engines else None

    async def main() -> None:
        core = Genq(settings)
        unknown = [n for n in names or () if n not in core.engines]
        if unknown:
            raise typer.BadParameter(f"unknown engine(s): {', '.join(unknown)}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await core.start(workers=True, engine_names=names)
        assert core.worker is not None
        err.print(f"genq worker {core.worker.owner} running {len(core.worker.engines)} engines")
        await stop.wait()
        err.print("stopping: finishing in-flight jobs")
        await core.stop()

    asyncio.run(main())


@keys_app.command("create")
def keys_create(
    data_dir: DataDir = None,
    account: Annotated[str, typer.Option(help="account name (created if new)")] = "default",
    plan: Annotated[str, typer.Option(help="plan of a new account")] = "free",
    name: Annotated[str | None, typer.Option(help="a label for the key")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Create an API key (and its account if new). The key is shown once."""
    from genq.accounts import AccountService
    from genq.migrate import upgrade
    from genq.store import Store

    settings = settings_for(data_dir)
    upgrade(settings.db_url)

    async def main() -> tuple[str, Any]:
        store = Store(settings.db_url)
        try:
            svc = AccountService(store)
            acct = await svc.get_or_create(account, plan)
            secret, _ = await svc.create_key(acct, name)
            return secret, acct
        finally:
            await store.close()

    secret, acct = asyncio.run(main())
    if as_json:
        typer.echo(json.dumps({"key": secret, "account": acct.name, "account_id": acct.id,
                               "plan": acct.plan}))
    else:
        typer.echo(secret)
        err.print(f"key for account [bold]{acct.name}[/] ({acct.plan}); it is not shown again")


@keys_app.command("revoke")
def keys_revoke(
    prefix: Annotated[str, typer.Argument(help="the key's first 10 characters")],
    data_dir: DataDir = None,
) -> None:
    """Revoke a key by its prefix (as `GET /v1/account` shows it)."""
    from genq.store import Store

    settings = settings_for(data_dir)

    async def main() -> bool:
        store = Store(settings.db_url)
        try:
            return await store.accounts.revoke_key(prefix)
        finally:
            await store.close()

    if not asyncio.run(main()):
        err.print(f"no active key with prefix {prefix!r}")
        raise typer.Exit(1)
    err.print(f"revoked {prefix} (servers trust a cached key for up to GENQ_KEY_CACHE_S)")


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None) -> None:
    """Apply the database migrations."""
    from genq.migrate import upgrade

    settings = settings_for(data_dir)
    upgrade(settings.db_url)
    err.print(f"database at {settings.db_url} is up to date")


def _register_client_commands() -> None:
    try:
        from genq import cli_client
    except ImportError:  # pragma: no cover - during development only
        return
    cli_client.register(app)


_register_client_commands()


def main() -> None:
    app()
