"""Shared fixtures: a real genq server (uvicorn on a loopback port, its database and
files in a temp dir) with the scenario engines and the demo engines, and API keys.

The database is SQLite, or with `GENQ_TEST_DB=postgres` the real PostgreSQL server at
127.0.0.1:5432 (`GENQ_TEST_PG` to point elsewhere): then every data dir a test uses
gets its own database, made from a template migrated once per session and dropped
after the test. With `GENQ_TEST_DB=postgres` a missing server fails the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from genq.accounts import AccountService
from genq.api import create_app
from genq.api.server import Server
from genq.core import Genq
from genq.ids import new_id, utcnow
from genq.settings import Settings
from genq.store.records import Job

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = "tests.scenario_engines:ENGINES"
TEST_DB = os.environ.get("GENQ_TEST_DB", "sqlite")
if TEST_DB not in ("sqlite", "postgres"):
    raise pytest.UsageError(f"GENQ_TEST_DB={TEST_DB!r}: use sqlite or postgres")
PG_SERVER = os.environ.get("GENQ_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
PREFIX = "genq_test_"


class PgDatabases:
    """This session's databases on the PostgreSQL server, one per data dir. Each is a
    copy of a template migrated once; drops run on a background thread (a drop costs
    more than a create) and are all done before the session ends."""

    def __init__(self, server: str) -> None:
        self.server = server.rstrip("/")
        self.live: set[str] = set()  # made and not yet dropped
        self.by_dir: dict[Path, str] = {}
        self._template: str | None = None
        self._lock = threading.Lock()
        self._drops: queue.Queue[str | None] = queue.Queue()
        self._dropper: threading.Thread | None = None

    def url(self, name: str) -> str:
        return f"{self.server.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(f"{self.server}/postgres", autocommit=True)

    def create(self, *, migrated: bool = True) -> str:
        """A new database (at the schema's head unless `migrated=False`); its name."""
        name = f"{PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
        with self._lock:
            if migrated and self._template is None:
                self._template = self._make_template()
            template = f" TEMPLATE {self._template}" if migrated else ""
            with self._admin() as conn:
                conn.execute(f"CREATE DATABASE {name}{template}")
            self.live.add(name)
        return name

    def _make_template(self) -> str:
        from genq.migrate import upgrade

        self._sweep_stale()
        name = f"{PREFIX}{os.getpid()}_template"
        with self._admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
        with ThreadPoolExecutor(1) as pool:  # alembic runs its own event loop
            pool.submit(upgrade, self.url(name)).result()
        return name

    def _sweep_stale(self) -> None:
        """Drop what earlier sessions that died left (their process is gone)."""
        with self._admin() as conn:
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s", (PREFIX + "%",)
                )
            ]
        for name in names:
            pid = name.removeprefix(PREFIX).split("_")[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                self._drop_now(name)

    def for_dir(self, data_dir: Path) -> str:
        """The URL of the database of a data dir (made on first use)."""
        key = data_dir.resolve()
        if key not in self.by_dir:
            self.by_dir[key] = self.create()
        return self.url(self.by_dir[key])

    def drop(self, name: str) -> None:
        if self._dropper is None:
            self._dropper = threading.Thread(target=self._drop_loop, daemon=True)
            self._dropper.start()
        self._drops.put(name)

    def _drop_loop(self) -> None:
        while (name := self._drops.get()) is not None:
            with contextlib.suppress(psycopg.Error):
                self._drop_now(name)

    def _drop_now(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def forget(self, names: set[str]) -> None:
        """Drop these databases and forget the data dirs that used them."""
        for path, name in list(self.by_dir.items()):
            if name in names:
                del self.by_dir[path]
        for name in names:
            self.live.discard(name)
            self.drop(name)

    def close(self) -> None:
        self.forget(set(self.live))
        if self._template is not None:
            self.drop(self._template)
            self._template = None
        if self._dropper is not None:
            self._drops.put(None)
            self._dropper.join(timeout=120)
            self._dropper = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_PG: PgDatabases | None = None


def pg() -> PgDatabases:
    """The session's PostgreSQL databases (whatever GENQ_TEST_DB says)."""
    global _PG
    if _PG is None:
        _PG = PgDatabases(PG_SERVER)
    return _PG


def db_url_for(data_dir: Path) -> str:
    """The database URL of the tests' data dir, on the database GENQ_TEST_DB names."""
    if TEST_DB == "postgres":
        return pg().for_dir(data_dir)
    return f"sqlite+aiosqlite:///{data_dir.resolve() / 'genq.db'}"


@pytest.fixture(scope="session", autouse=True)
def _pg_session() -> Iterator[None]:
    yield
    if _PG is not None:
        _PG.close()


@pytest.fixture(autouse=True)
def _pg_per_test() -> Iterator[None]:
    """Drop the databases a test made once it is over (after its servers stopped).
    Databases of wider-scoped fixtures were made before this runs and are kept."""
    before = set(_PG.live) if _PG is not None else set()
    yield
    if _PG is not None:
        _PG.forget(_PG.live - before)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Tls:
    """A throwaway certificate authority (trustme) and a server certificate it signed
    for 127.0.0.1, ::1 and localhost, as PEM files: `make_settings(..., **tls.serve)`
    makes a server speak HTTPS; clients trust `ca_file` (`verify=`, `SSL_CERT_FILE`)."""

    ca_file: str
    cert_file: str
    key_file: str

    @property
    def serve(self) -> dict[str, str]:
        return {"ssl_certfile": self.cert_file, "ssl_keyfile": self.key_file}


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "::1", "localhost")
    where = tmp_path_factory.mktemp("tls")
    ca_file, cert_file, key_file = where / "ca.pem", where / "cert.pem", where / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(cert_file), append=True)
    return Tls(str(ca_file), str(cert_file), str(key_file))


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    port = overrides.pop("port", None) or free_port()
    if "database_url" not in overrides:
        overrides["database_url"] = db_url_for(data_dir)
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "port": port,
        "engines": [SCENARIOS],
        "lease_s": 3.0,
        "reaper_interval_s": 0.5,
        "poll_interval_s": 0.5,
        "cancel_grace_s": 2.0,
        "shutdown_grace_s": 2.0,
    }
    values.update(overrides)
    return Settings(**values)


def quiet_settings(data_dir: Path, **overrides: Any) -> Settings:
    """`make_settings` with the background loops (reaper, sweeper, event polls, leases)
    slowed to once a minute: what a test does is all that reaches the database."""
    values: dict[str, Any] = {
        "lease_s": 60.0,
        "reaper_interval_s": 60.0,
        "poll_interval_s": 60.0,
        "sweep_interval_s": 60.0,
        "event_poll_s": 60.0,
        "pg_event_poll_s": 60.0,
    }
    return make_settings(data_dir, **{**values, **overrides})


@dataclass
class LiveServer:
    """genq serving on a loopback port in a background thread."""

    settings: Settings
    workers: bool = True
    ca_file: str | None = None  # the CA clients trust when the server speaks HTTPS
    genq: Genq = field(init=False)
    genq_app: Any = field(init=False)
    _server: uvicorn.Server = field(init=False)
    _thread: threading.Thread = field(init=False)

    @property
    def url(self) -> str:
        return self.settings.base_url

    def start(self) -> LiveServer:
        self.genq = Genq(self.settings)
        app = self.genq_app = create_app(genq=self.genq, workers=self.workers)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.settings.port,
            log_level="warning",
            lifespan="on",
            ssl_certfile=self.settings.ssl_certfile or None,
            ssl_keyfile=self.settings.ssl_keyfile or None,
        )
        self._server = Server(config, app)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def new_key(self, account: str = "alice", plan: str = "pro", credits: int | None = None) -> str:
        return create_key(self.settings, account, plan, credits)

    def client(self, key: str, **kwargs: Any) -> httpx.Client:
        if self.ca_file and "verify" not in kwargs:
            kwargs["verify"] = ssl.create_default_context(cafile=self.ca_file)
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30, **kwargs
        )


def create_key(
    settings: Settings, account: str, plan: str = "pro", credits: int | None = None
) -> str:
    """A key made through the service layer on its own connection (as the CLI does)."""
    from genq.migrate import upgrade
    from genq.store import Store

    upgrade(settings.db_url)

    async def main() -> str:
        store = Store(settings.db_url)
        try:
            svc = AccountService(store, settings.plan_table)
            acct = await svc.get_or_create(account, plan, credits)
            secret, _ = await svc.create_key(acct)
            return secret
        finally:
            await store.close()

    return asyncio.run(main())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    srv = LiveServer(make_settings(tmp_path / "data")).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def key(server: LiveServer) -> str:
    return server.new_key("alice")


@pytest.fixture
def api(server: LiveServer, key: str) -> Iterator[httpx.Client]:
    with server.client(key) as c:
        yield c


def wait_for(
    api: httpx.Client,
    job_id: str,
    timeout: float = 30,
    until: tuple[str, ...] = ("succeeded", "failed", "canceled", "expired"),
) -> dict[str, Any]:
    """Poll a job until its status is in `until`."""
    deadline = time.monotonic() + timeout
    while True:
        r = api.get(f"/v1/jobs/{job_id}", params={"wait": 2})
        r.raise_for_status()
        job: dict[str, Any] = r.json()
        if job["status"] in until:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s")


def genq_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a `genq` subprocess using the test's data dir and engines."""
    env = dict(os.environ)
    env.update(
        GENQ_DATA_DIR=str(data_dir),
        GENQ_ENGINES=SCENARIOS,
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    env.update(extra)
    if "GENQ_DATABASE_URL" not in extra:
        env["GENQ_DATABASE_URL"] = db_url_for(data_dir)
    return env


GENQ = [sys.executable, "-m", "genq"]


def wait_healthy(
    url: str,
    proc: subprocess.Popen[bytes],
    log: Path,
    timeout: float = 60,
    ca_file: str | None = None,
) -> None:
    """Wait until the `genq serve` subprocess `proc` answers `/healthz` at `url`; fail
    (showing its `log`) if it exits or takes longer than `timeout`. `ca_file`: the CA
    to trust when it serves HTTPS."""
    deadline = time.monotonic() + timeout
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2, verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def job_record(account_id: str, **values: Any) -> Job:
    """A job row to insert through the store directly (tests of the store, or of jobs in
    states the API cannot make at once)."""
    now = utcnow()
    row: dict[str, Any] = {
        "id": new_id("job"),
        "account_id": account_id,
        "engine": "e",
        "task": "noop",
        "status": "queued",
        "progress": 0.0,
        "message": None,
        "input": {},
        "metadata": {},
        "webhook": None,
        "error_code": None,
        "error_message": None,
        "error_retryable": None,
        "credits_estimate": 0,
        "credits_used": 0,
        "credits_refunded": 0,
        "parent_id": None,
        "model_id": None,
        "seq": 1,
        "attempt": 0,
        "lease_owner": None,
        "lease_expires_at": None,
        "cancel_requested_at": None,
        "account_limit": 1_000_000,
        "created_at": now,
        "started_at": None,
        "completed_at": None,
        "expires_at": now + timedelta(days=1),
        "updated_at": now,
    }
    row.update(values)
    return Job(**row)


# -- object storage (SeaweedFS) ---------------------------------------------------------


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real SeaweedFS S3 gateway on loopback (tests/s3.py), for the session."""
    from tests.s3 import Seaweed

    weed = Seaweed(tmp_path_factory.mktemp("seaweed")).start()
    try:
        yield weed
    finally:
        weed.stop()
