"""Chaos: SIGKILL genq's worker processes (and once the API server) while jobs run, on
SQLite and on PostgreSQL, then check that no job was lost, left stuck or charged twice.

    ../.venv/bin/python chaos.py [--dbs sqlite,postgres] [--jobs 2000] [--workers 3]
                                 [--slots 4] [--kills 12] [--kill-every 5]
                                 [--clients 8] [--time-limit 300] [--seed 1]

What is done, per database:

1. A fresh data dir (temp; removed at the end) and, for PostgreSQL, a fresh database
   bench_chaos_<pid> on 127.0.0.1:5432 (user postgres; BENCH_PG to change), always
   dropped at the end (`DROP DATABASE ... WITH (FORCE)`). `genq db upgrade`, then
   4 accounts `chaos-0..3` made with `genq keys create --json --plan pro
   --credits 1000000`. GENQ_PLANS raises the pro plan's per-minute request windows
   (generation and status) so that the run's length is set by the jobs, not by the
   limiter; its concurrent-jobs limit (5 per account) is kept. A 429 would be honoured.
2. `genq serve --no-workers` (API only) and --workers `genq worker --slots 4`
   processes, every process with GENQ_LEASE_S=2, GENQ_REAPER_INTERVAL_S=0.5,
   GENQ_MAX_ATTEMPTS=5, GENQ_SHUTDOWN_GRACE_S=1 and the scenario engines
   (GENQ_ENGINES=tests.scenario_engines:ENGINES, PYTHONPATH=<repo>); each process in a
   session of its own, logging to out/logs/chaos-<db>-*.log.
3. --clients concurrent httpx clients (each on one account) submit --jobs logical jobs:
   --sleep-share of them `test/sleep` (seconds 0.05-0.5, 2 steps), the rest
   `demo/noop` (half with delay_s 0, half 0.1-1.0). EVERY submit carries its own
   Idempotency-Key and its logical index in `metadata`, and is retried with the same
   key and the same bytes on connection errors, 5xx, 429 and 409 (a twin "still in
   progress": after a server kill that lasts up to genq's 120 s stale window, so a 409
   is retried in the background while the client goes on); so each logical job maps to
   exactly one job id. About --dup-share of them are sent a second time on purpose,
   after a random 0.05-1 s, and must get the same job id back. Each acknowledged job is
   read back once (GET /v1/jobs/{id}, retried on connection errors).
4. Chaos while jobs run: every --kill-every seconds (up to --kills in all) a random
   worker process that holds running jobs (any worker if none does) is SIGKILLed and a
   fresh one started, so --workers stay alive; once, when --server-kill-at of the jobs
   are submitted, the API server is SIGKILLed and restarted on the same port.
5. Wait (bounded: --time-limit from the first submit, for submitting and draining)
   until the database holds every job in a terminal status; read every job through
   the API (GET /v1/jobs/{id}) and each account (GET /v1/account); stop every process
   (SIGTERM, SIGKILL after a grace); run `genq doctor` and `genq accounts ledger NAME
   --json`; read the jobs, their events (job_events) and outputs from the database
   (read-only connections).

What is checked (each with counts and up to 5 examples, plus for failing jobs their
row, events, ledger rows and the worker log lines that name them):

1. jobs: every logical job got exactly one job id (the database holds exactly one job
   with its index; the client and the deliberate duplicate saw that id), and that job
   is terminal, in the database and through the API. `succeeded` is expected of all;
   failed/canceled are counted with their error codes; `worker_lost` is accepted only
   for a job whose worker was lost GENQ_MAX_ATTEMPTS times, each time a worker this
   run SIGKILLed.
2. doctor: `genq doctor` reports no problem (exit 0).
3. ledger: per job exactly one `hold` (= its estimate) plus either one `capture` and
   one `release` (succeeded) or one `release` of everything (otherwise); the captured
   credits equal `credits.used`, in the database and through the API.
4. balances: each account's `balance` (GET /v1/account) equals its grants minus the
   credits captured from its jobs.
5. re-runs: the jobs run more than once (attempt > 1) are counted and each was charged
   at most once (one capture, of its estimate if it succeeded).
6. events (extra): each terminal job has exactly one `completed` event and one
   `running` status event per attempt; every re-queue of a lost worker is listed, and
   those whose worker this run did not kill (a live worker that lost its lease) are
   counted apart.
7. outputs (extra): each succeeded `test/sleep` job has exactly one output (outputs of
   a lost attempt are void).

A verdict per database is printed and all results are written to out/chaos.json; the
exit status is 1 if any check failed on any database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    LOGS,
    PY,
    ROOT,
    SCENARIOS,
    free_port,
    machine,
    now_iso,
    save_json,
)
from genq.lifecycle import LOST, TERMINAL

PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
TERMINAL_S = {str(s) for s in TERMINAL}
ACCOUNTS = 4
GRANT = 1_000_000
EXAMPLES = 5
# the pro plan with per-minute windows far above the run (concurrent_jobs stays 5)
PLANS = {"pro": {"generation_per_min": 1_000_000, "status_per_min": 1_000_000}}


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------- processes


@dataclass
class Proc:
    role: str  # server | worker
    n: int
    cmd: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    @property
    def pid(self) -> int:
        return self.popen.pid if self.popen else -1

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as f:
            self.popen = subprocess.Popen(
                self.cmd, cwd=ROOT, env=self.env, stdout=f, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        self.started = time.monotonic()
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)  # its own session: pgid == pid

    def sigkill(self) -> None:
        self.signal_group(signal.SIGKILL)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(10)

    def owner(self) -> str | None:
        """The worker's lease owner (host:pid:token), from its start line."""
        with contextlib.suppress(OSError):
            m = re.search(r"genq worker (\S+) running", self.log.read_text(errors="replace"))
            if m:
                return m.group(1)
        return None


class Fleet:
    """The API server and the worker processes of one run; every process it started is
    stopped by `close` (by its own process group, nothing else)."""

    def __init__(self, tag: str, env: dict[str, str], data_dir: Path, port: int,
                 workers: int, slots: int) -> None:
        self.tag, self.env, self.data_dir, self.port = tag, env, data_dir, port
        self.n_workers, self.slots = workers, slots
        self.procs: list[Proc] = []
        self.server: Proc | None = None
        self.workers: list[Proc] = []
        self.kills: list[dict[str, Any]] = []
        self.server_kills: list[dict[str, Any]] = []
        self.unexpected_exits: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _new(self, role: str) -> Proc:
        n = sum(p.role == role for p in self.procs)
        if role == "server":
            cmd = [PY, "-m", "genq", "serve", "--no-workers", "--host", "127.0.0.1",
                   "--port", str(self.port), "--data-dir", str(self.data_dir)]
        else:
            cmd = [PY, "-m", "genq", "worker", "--slots", str(self.slots),
                   "--data-dir", str(self.data_dir)]
        p = Proc(role, n, cmd, self.env, LOGS / f"chaos-{self.tag}-{role}{n}.log").start()
        self.procs.append(p)
        return p

    async def start_server(self, timeout: float = 60) -> float:
        self.server = self._new("server")
        t0 = time.monotonic()
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                if not self.server.alive():
                    raise RuntimeError(f"server exited; see {self.server.log}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(self.url + "/readyz")).status_code == 200:
                        return time.monotonic() - t0
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError(f"server not ready after {timeout}s; see {self.server.log}")
                await asyncio.sleep(0.05)

    def start_worker(self) -> Proc:
        w = self._new("worker")
        self.workers.append(w)
        return w

    def check_exits(self, t: float) -> None:
        """A worker or server that died without being killed here is recorded and
        replaced (so --workers stay alive)."""
        for w in list(self.workers):
            if not w.alive():
                self.unexpected_exits.append({"t_s": round(t, 2), "role": "worker", "pid": w.pid,
                                              "rc": w.popen.returncode if w.popen else None,
                                              "log": str(w.log.relative_to(ROOT))})
                self.workers.remove(w)
                self.start_worker()

    def kill_worker(self, victim: Proc, t: float, held: list[str]) -> dict[str, Any]:
        owner = victim.owner()
        victim.sigkill()
        self.workers.remove(victim)
        fresh = self.start_worker()
        rec = {"t_s": round(t, 2), "pid": victim.pid, "owner": owner,
               "age_s": round(time.monotonic() - victim.started, 1),
               "running_jobs": held, "replacement_pid": fresh.pid,
               "log": str(victim.log.relative_to(ROOT))}
        self.kills.append(rec)
        return rec

    async def kill_server(self, t: float) -> dict[str, Any]:
        assert self.server is not None
        old = self.server
        killed_at = time.time()
        old.sigkill()
        t0 = time.monotonic()
        ready_s = await self.start_server()
        rec = {"t_s": round(t, 2), "at_epoch": killed_at, "pid": old.pid,
               "new_pid": self.server.pid,
               "down_s": round(time.monotonic() - t0, 2), "restart_ready_s": round(ready_s, 2),
               "log": str(old.log.relative_to(ROOT))}
        self.server_kills.append(rec)
        return rec

    def stop(self, grace: float = 20) -> dict[str, Any]:
        """SIGTERM to every live process, SIGKILL after `grace`."""
        live = [p for p in self.procs if p.alive()]
        for p in live:
            p.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace
        forced = []
        for p in live:
            assert p.popen is not None
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                forced.append(p.pid)
                p.sigkill()
        return {"stopped": len(live), "sigkill_after_grace": forced,
                "exit_codes": {str(p.pid): p.popen.returncode for p in live if p.popen}}

    def close(self) -> None:
        for p in self.procs:
            p.sigkill()


# ---------------------------------------------------------------- the database (read-only)


class Reader:
    """Read-only queries on the run's database (sqlite3 `mode=ro`, or a PostgreSQL
    session with default_transaction_read_only)."""

    def __init__(self, kind: str, target: str) -> None:
        self.kind, self.target = kind, target

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":
            conn = sqlite3.connect(f"file:{self.target}?mode=ro", uri=True, timeout=30)
            try:
                return [tuple(r) for r in conn.execute(sql).fetchall()]
            finally:
                conn.close()
        with psycopg.connect(self.target, autocommit=True,
                             options="-c default_transaction_read_only=on") as conn:
            return [tuple(r) for r in conn.execute(sql).fetchall()]  # type: ignore[arg-type]

    async def arows(self, sql: str) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(self.rows, sql)


def as_json(value: Any) -> Any:
    if isinstance(value, (str, bytes)):
        return json.loads(value)
    return value


def pid_of(owner: str | None) -> int | None:
    with contextlib.suppress(AttributeError, IndexError, ValueError):
        return int(owner.rsplit(":", 2)[1])  # type: ignore[union-attr]
    return None


# ---------------------------------------------------------------- clients


@dataclass
class Logical:
    i: int
    account: int
    engine: str
    input: dict[str, Any]
    key: str
    body: bytes
    dup: bool
    job_id: str | None = None
    dup_id: str | None = None
    dup_replayed: bool | None = None
    error: str | None = None
    posts: int = 0
    conn_errors: int = 0
    conflicts: int = 0
    first_conflict_at: float | None = None
    first_conflict_epoch: float | None = None
    acked_at: float | None = None
    readback: int | None = None


@dataclass
class Stats:
    posts: int = 0
    conn_errors: int = 0
    conflicts: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    read_conn_errors: int = 0
    submitted: int = 0  # acknowledged with a job id
    conflict_waits_s: list[float] = field(default_factory=list)


def make_jobs(args: argparse.Namespace, tag: str, rng: random.Random) -> list[Logical]:
    jobs = []
    for i in range(args.jobs):
        if rng.random() < args.sleep_share:
            engine = "test/sleep"
            inp: dict[str, Any] = {"seconds": round(rng.uniform(0.05, 0.5), 3), "steps": 2}
        else:
            engine = "demo/noop"
            inp = {"delay_s": 0 if rng.random() < 0.5 else round(rng.uniform(0.1, 1.0), 3)}
        body = json.dumps({"engine": engine, "input": inp,
                           "metadata": {"chaos_run": tag, "chaos_i": i}}).encode()
        jobs.append(Logical(i, i % ACCOUNTS, engine, inp, f"chaos-{tag}-{i}", body,
                            rng.random() < args.dup_share))
    return jobs


async def post_job(http: httpx.AsyncClient, lj: Logical, stats: Stats, deadline: float,
                   *, give_up_on_conflict: bool) -> tuple[str | None, bool | None]:
    """POST the job (same key, same bytes) until it is answered with a job; None on a
    final refusal or the deadline. With `give_up_on_conflict`, a 409 returns at once
    (None, None) so that the caller can retry it in the background."""
    delay = 0.1
    while time.monotonic() < deadline:
        lj.posts += 1
        stats.posts += 1
        try:
            r = await http.post("/v1/jobs", content=lj.body, headers={
                "Idempotency-Key": lj.key, "content-type": "application/json"})
        except httpx.TransportError:
            lj.conn_errors += 1
            stats.conn_errors += 1
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)
            continue
        if r.status_code in (200, 202):
            return r.json()["id"], r.headers.get("idempotent-replayed") == "true"
        if r.status_code == 409:
            lj.conflicts += 1
            stats.conflicts += 1
            if lj.first_conflict_at is None:
                lj.first_conflict_at = time.monotonic()
                lj.first_conflict_epoch = time.time()
            if give_up_on_conflict:
                return None, None
            await asyncio.sleep(2.0)
            continue
        if r.status_code == 429:
            stats.rate_limited += 1
            await asyncio.sleep(float(r.headers.get("retry-after", "1") or 1))
            continue
        if r.status_code >= 500:
            stats.server_errors += 1
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)
            continue
        lj.error = f"HTTP {r.status_code}: {r.text[:300]}"
        return None, None
    lj.error = lj.error or "time limit reached while submitting"
    return None, None


async def get_job(http: httpx.AsyncClient, job_id: str, stats: Stats,
                  deadline: float) -> tuple[int, dict[str, Any] | None]:
    delay = 0.1
    while time.monotonic() < deadline:
        try:
            r = await http.get(f"/v1/jobs/{job_id}")
        except httpx.TransportError:
            stats.read_conn_errors += 1
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)
            continue
        if r.status_code == 429 or r.status_code >= 500:
            await asyncio.sleep(delay)
            continue
        return r.status_code, (r.json() if r.status_code == 200 else None)
    return 0, None


async def client(url: str, key: str, mine: list[Logical], stats: Stats, deadline: float,
                 rng: random.Random) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30,
                                 headers={"Authorization": f"Bearer {key}"}) as http:
        background: list[asyncio.Task[None]] = []

        async def acked(lj: Logical, job_id: str) -> None:
            lj.job_id, lj.acked_at = job_id, time.monotonic()
            stats.submitted += 1
            if lj.first_conflict_at is not None:
                stats.conflict_waits_s.append(lj.acked_at - lj.first_conflict_at)
            lj.readback, _ = await get_job(http, job_id, stats, deadline)
            if lj.dup:
                background.append(asyncio.create_task(duplicate(lj)))

        async def duplicate(lj: Logical) -> None:
            await asyncio.sleep(rng.uniform(0.05, 1.0))
            lj.dup_id, lj.dup_replayed = await post_job(http, lj, stats, deadline,
                                                        give_up_on_conflict=False)

        async def after_conflict(lj: Logical) -> None:
            job_id, _ = await post_job(http, lj, stats, deadline, give_up_on_conflict=False)
            if job_id is not None:
                await acked(lj, job_id)

        for lj in mine:
            job_id, _ = await post_job(http, lj, stats, deadline, give_up_on_conflict=True)
            if job_id is not None:
                await acked(lj, job_id)
            elif lj.error is None:  # a twin "in progress": a request lost in a server kill
                background.append(asyncio.create_task(after_conflict(lj)))
        while background:
            task = background.pop()
            await task


# ---------------------------------------------------------------- one run


def base_env(data_dir: Path, port: int, db_url: str | None,
             args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENQ_")}
    env.update(
        GENQ_DATA_DIR=str(data_dir), GENQ_HOST="127.0.0.1", GENQ_PORT=str(port),
        GENQ_ENGINES=SCENARIOS, GENQ_LEASE_S=str(args.lease_s),
        GENQ_REAPER_INTERVAL_S="0.5", GENQ_MAX_ATTEMPTS=str(args.max_attempts),
        GENQ_SHUTDOWN_GRACE_S="1", GENQ_PLANS=json.dumps(PLANS),
        PYTHONPATH=str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
    )
    if db_url:
        env["GENQ_DATABASE_URL"] = db_url
    return env


def cli(env: dict[str, str], *argv: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "genq", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


async def chaos(fleet: Fleet, reader: Reader, jobs: list[Logical], stats: Stats,
                args: argparse.Namespace, rng: random.Random, t0: float,
                done: asyncio.Event) -> None:
    next_kill = t0 + args.kill_every
    server_kill_at = max(1, int(args.jobs * args.server_kill_at))
    while not done.is_set():
        await asyncio.sleep(0.1)
        now = time.monotonic()
        fleet.check_exits(now - t0)
        if args.server_kills and not fleet.server_kills and stats.submitted >= server_kill_at:
            rec = await fleet.kill_server(time.monotonic() - t0)
            log(f"  [{now - t0:6.1f}s] SIGKILL api server pid {rec['pid']}; restarted, "
                f"answering after {rec['down_s']} s")
        if len(fleet.kills) < args.kills and now >= next_kill:
            rows = await reader.arows("SELECT id, lease_owner FROM jobs WHERE status = 'running'")
            held: dict[int, list[str]] = defaultdict(list)
            for job_id, owner in rows:
                held[pid_of(owner) or -1].append(job_id)
            busy = [w for w in fleet.workers if held.get(w.pid)]
            victim = rng.choice(busy or fleet.workers)
            rec = fleet.kill_worker(victim, time.monotonic() - t0, held.get(victim.pid, []))
            log(f"  [{now - t0:6.1f}s] SIGKILL worker pid {rec['pid']} holding "
                f"{len(rec['running_jobs'])} running jobs ({len(fleet.kills)}/{args.kills});"
                f" started pid {rec['replacement_pid']}")
            next_kill = max(next_kill + args.kill_every, now + 0.5)


async def drive(fleet: Fleet, reader: Reader, keys: list[dict[str, Any]], jobs: list[Logical],
                args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    stats = Stats()
    t0 = time.monotonic()
    deadline = t0 + args.time_limit
    done = asyncio.Event()
    chaos_task = asyncio.create_task(chaos(fleet, reader, jobs, stats, args, rng, t0, done))
    shares: list[list[Logical]] = [[] for _ in range(args.clients)]
    for lj in jobs:  # client c serves account c % ACCOUNTS
        candidates = [c for c in range(args.clients) if c % ACCOUNTS == lj.account]
        shares[candidates[(lj.i // ACCOUNTS) % len(candidates)]].append(lj)
    clients = [asyncio.create_task(client(fleet.url, keys[c % ACCOUNTS]["key"], shares[c], stats,
                                          deadline, random.Random(rng.random())))
               for c in range(args.clients)]
    last_print = 0.0
    submit_s = None
    drained = False
    counts: dict[str, int] = {}
    try:
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            if chaos_task.done() and chaos_task.exception():
                raise chaos_task.exception()  # type: ignore[misc]
            if submit_s is None and all(c.done() for c in clients):
                submit_s = time.monotonic() - t0
                log(f"  [{submit_s:6.1f}s] all submits answered ({stats.submitted} acknowledged)")
            counts = dict((s, int(n)) for s, n in await reader.arows(
                "SELECT status, count(*) FROM jobs GROUP BY status"))
            open_jobs = sum(n for s, n in counts.items() if s not in TERMINAL_S)
            now = time.monotonic() - t0
            if now - last_print >= 10:
                last_print = now
                log(f"  [{now:6.1f}s] acknowledged {stats.submitted}/{len(jobs)}, db {counts},"
                    f" kills {len(fleet.kills)}, server kills {len(fleet.server_kills)}")
            if submit_s is not None and open_jobs == 0:
                drained = True
                break
    finally:
        done.set()
        for c in clients:
            c.cancel()
        await asyncio.gather(chaos_task, *clients, return_exceptions=True)
    wall = time.monotonic() - t0
    verdict = "every job terminal" if drained else "TIME LIMIT reached"
    log(f"  [{wall:6.1f}s] {verdict}; db {counts}")
    # the clients' final view: every job and every account through the API
    api_jobs: dict[str, dict[str, Any] | None] = {}
    api_status: dict[str, int] = {}
    read_deadline = time.monotonic() + 120
    accounts: dict[str, Any] = {}
    for k in keys:
        async with httpx.AsyncClient(base_url=fleet.url, timeout=30,
                                     headers={"Authorization": f"Bearer {k['key']}"}) as http:
            ids = [lj.job_id for lj in jobs if lj.account == int(k["account"].split("-")[1])
                   and lj.job_id]
            sem = asyncio.Semaphore(8)

            async def one(job_id: str, http: httpx.AsyncClient = http,
                          sem: asyncio.Semaphore = sem) -> None:
                async with sem:
                    api_status[job_id], api_jobs[job_id] = await get_job(
                        http, job_id, stats, read_deadline)

            await asyncio.gather(*(one(j) for j in ids))
            for _ in range(20):
                with contextlib.suppress(httpx.HTTPError):
                    r = await http.get("/v1/account")
                    if r.status_code == 200:
                        accounts[k["account"]] = r.json()
                        break
                await asyncio.sleep(0.5)
    return {"stats": stats, "wall_s": wall, "submit_s": submit_s, "drained": drained,
            "api_jobs": api_jobs, "api_status": api_status, "accounts": accounts}


def run_db(db: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    tag = f"{db}-{os.getpid()}"
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="genq-chaos-"))
    data_dir = tmp / "data"
    data_dir.mkdir()
    pg_name = f"bench_chaos_{os.getpid()}"
    db_url = None
    fleet: Fleet | None = None
    started = time.monotonic()
    try:
        if db == "postgres":
            with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")
                admin.execute(f"CREATE DATABASE {pg_name}")
            db_url = f"{PG.replace('postgresql://', 'postgresql+psycopg://', 1)}/{pg_name}"
            reader = Reader("postgres", f"{PG}/{pg_name}")
        else:
            reader = Reader("sqlite", str(data_dir / "genq.db"))
        port = free_port()
        env = base_env(data_dir, port, db_url, args)
        up = cli(env, "db", "upgrade")
        if up.returncode != 0:
            raise RuntimeError(f"genq db upgrade failed:\n{up.stderr[-2000:]}")
        keys = []
        for a in range(ACCOUNTS):
            out = cli(env, "keys", "create", "--json", "--account", f"chaos-{a}", "--plan", "pro",
                      "--credits", str(GRANT))
            if out.returncode != 0:
                raise RuntimeError(f"genq keys create failed:\n{out.stderr[-2000:]}")
            keys.append(json.loads(out.stdout.strip().splitlines()[-1]))
        fleet = Fleet(db, env, data_dir, port, args.workers, args.slots)
        asyncio.run(fleet.start_server())
        for _ in range(args.workers):
            fleet.start_worker()
        jobs = make_jobs(args, tag, rng)
        log(f"[{db}] {args.jobs} jobs ({sum(j.engine == 'test/sleep' for j in jobs)} test/sleep),"
            f" {args.workers} workers x {args.slots} slots, {args.clients} clients, "
            f"{sum(j.dup for j in jobs)} deliberate duplicates; logs out/logs/chaos-{db}-*.log")
        time.sleep(1.0)  # workers import and connect
        res = asyncio.run(drive(fleet, reader, keys, jobs, args, rng))
        stopped = fleet.stop()
        doctor = cli(env, "doctor")
        ledgers = {}
        for k in keys:
            out = cli(env, "accounts", "ledger", k["account"], "--json")
            ledgers[k["account"]] = (json.loads(out.stdout) if out.returncode == 0
                                     else {"error": out.stderr[-2000:]})
        snapshot = read_snapshot(reader)
        result = check(db, args, jobs, keys, fleet, res, doctor, ledgers, snapshot)
        result["stop"] = stopped
        result["total_s"] = round(time.monotonic() - started, 1)
        return result
    finally:
        if fleet is not None:
            fleet.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if db == "postgres":
            with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")


# ---------------------------------------------------------------- the checks


def read_snapshot(reader: Reader) -> dict[str, Any]:
    jobs = {}
    for (job_id, account_id, engine, status, attempt, est, used, refunded, code, message,
         metadata, created) in reader.rows(
            "SELECT id, account_id, engine, status, attempt, credits_estimate, credits_used,"
            " credits_refunded, error_code, error_message, metadata, created_at FROM jobs"):
        jobs[job_id] = {"id": job_id, "account_id": account_id, "engine": engine,
                        "status": status, "attempt": attempt, "credits_estimate": est,
                        "credits_used": used, "credits_refunded": refunded, "error_code": code,
                        "error_message": message, "metadata": as_json(metadata),
                        "created_at": str(created)}
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for job_id, seq, typ, data, at in reader.rows(
            "SELECT job_id, seq, type, data, created_at FROM job_events ORDER BY job_id, seq"):
        events[job_id].append({"seq": seq, "type": typ, "data": as_json(data), "at": str(at)})
    outputs = {j: int(n) for j, n in reader.rows(
        "SELECT job_id, count(*) FROM job_outputs GROUP BY job_id")}
    ledger: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for job_id, kind, amount, at in reader.rows(
            "SELECT job_id, kind, amount, created_at FROM credit_ledger WHERE job_id IS NOT NULL"
            " ORDER BY id"):
        ledger[job_id].append({"kind": kind, "amount": int(amount), "at": str(at)})
    accounts = {a: n for a, n in reader.rows("SELECT id, name FROM accounts")}
    return {"jobs": jobs, "events": dict(events), "outputs": outputs, "ledger": dict(ledger),
            "accounts": accounts}


class Check:
    def __init__(self, name: str, what: str) -> None:
        self.name, self.what = name, what
        self.problems: list[dict[str, Any]] = []
        self.counts: dict[str, Any] = {}
        self.notes: list[str] = []

    def fail(self, kind: str, **detail: Any) -> None:
        self.problems.append({"kind": kind, **detail})

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        by_kind = Counter(p["kind"] for p in self.problems)
        examples: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for p in self.problems:
            if len(examples[p["kind"]]) < EXAMPLES:
                examples[p["kind"]].append(p)
        return {"ok": self.ok, "what": self.what, "counts": self.counts,
                "problems": dict(by_kind), "examples": dict(examples), "notes": self.notes}


def losses_of(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each time the job's worker was lost: the claim's owner and how it ended
    (re-queued by the reaper, or failed worker_lost)."""
    owner = None
    out = []
    for e in evs:
        d = e["data"] or {}
        if e["type"] == "status" and d.get("status") == "running":
            owner = d.get("owner")
        elif e["type"] == "status" and d.get("status") == "queued" and d.get("message") == LOST:
            out.append({"owner": owner, "seq": e["seq"], "end": "requeued"})
        elif e["type"] == "completed" and ((d.get("error") or {}).get("code") == "worker_lost"):
            out.append({"owner": owner, "seq": e["seq"], "end": "worker_lost"})
    return out


def check(db: str, args: argparse.Namespace, jobs: list[Logical], keys: list[dict[str, Any]],
          fleet: Fleet, res: dict[str, Any], doctor: subprocess.CompletedProcess[str],
          ledgers: dict[str, Any], snap: dict[str, Any]) -> dict[str, Any]:
    stats: Stats = res["stats"]
    rows: dict[str, dict[str, Any]] = snap["jobs"]
    events: dict[str, list[dict[str, Any]]] = snap["events"]
    api_jobs: dict[str, dict[str, Any] | None] = res["api_jobs"]
    killed_owners = {k["owner"] for k in fleet.kills if k["owner"]}
    killed_pids = {k["pid"] for k in fleet.kills}

    def killed(owner: str | None) -> bool:
        return owner in killed_owners or pid_of(owner) in killed_pids

    # 1. one job id per logical job, terminal
    c1 = Check("jobs", "every logical job has exactly one job id, terminal in the database "
                       "and through the API; succeeded expected")
    by_index: dict[int, list[str]] = defaultdict(list)
    for job_id, r in rows.items():
        meta = r["metadata"] or {}
        if isinstance(meta, dict) and "chaos_i" in meta:
            by_index[int(meta["chaos_i"])].append(job_id)
        else:
            c1.fail("job_not_submitted_here", job_id=job_id)
    outcomes: Counter[str] = Counter()
    error_codes: Counter[str] = Counter()
    worker_lost_ok = []
    for lj in jobs:
        found = by_index.get(lj.i, [])
        if len(found) > 1:
            c1.fail("several_jobs_for_one_submit", logical=lj.i, job_ids=found, key=lj.key)
        if lj.job_id is None:
            c1.fail("no_job_id_acknowledged", logical=lj.i, error=lj.error, in_db=found,
                    posts=lj.posts)
        elif lj.job_id not in found:
            c1.fail("acknowledged_id_not_in_db", logical=lj.i, job_id=lj.job_id, in_db=found)
        if lj.dup and lj.job_id is not None and lj.dup_id != lj.job_id:
            c1.fail("duplicate_submit_got_another_id", logical=lj.i, job_id=lj.job_id,
                    dup_id=lj.dup_id, error=lj.error)
        if lj.readback not in (None, 200):
            c1.fail("read_back_after_submit_not_200", logical=lj.i, job_id=lj.job_id,
                    http_status=lj.readback)
        if not found:
            continue
        r = rows[found[0]]
        status = r["status"]
        outcomes[status] += 1
        if status not in TERMINAL_S:
            c1.fail("not_terminal", job_id=r["id"], status=status, attempt=r["attempt"],
                    engine=r["engine"])
            continue
        api = api_jobs.get(r["id"])
        api_st = api["status"] if api else None
        if api_st != status:
            c1.fail("api_status_differs_from_db", job_id=r["id"], db=status, api=api_st,
                    http_status=res["api_status"].get(r["id"]))
        if status == "succeeded":
            continue
        code = r["error_code"] or "?"
        error_codes[f"{status}:{code}"] += 1
        if code == "worker_lost":
            lost = losses_of(events.get(r["id"], []))
            all_killed = all(killed(x["owner"]) for x in lost)
            detail = {"job_id": r["id"], "attempt": r["attempt"], "losses": len(lost),
                      "owners": [x["owner"] for x in lost], "all_killed_here": all_killed}
            if len(lost) >= args.max_attempts and all_killed:
                worker_lost_ok.append(detail)
            else:
                c1.fail("worker_lost_without_enough_kills", **detail)
        else:
            c1.fail(f"{status}_{code}", job_id=r["id"], message=r["error_message"],
                    attempt=r["attempt"])
    c1.counts = {"logical_jobs": len(jobs), "acknowledged": sum(lj.job_id is not None
                                                                 for lj in jobs),
                 "db_jobs": len(rows), "outcomes": dict(outcomes),
                 "failed_or_canceled_codes": dict(error_codes),
                 "worker_lost_accepted": len(worker_lost_ok),
                 "deliberate_duplicates": sum(lj.dup for lj in jobs),
                 "duplicates_replayed_same_id": sum(lj.dup and lj.dup_id == lj.job_id
                                                    and lj.job_id is not None for lj in jobs)}
    if worker_lost_ok:
        c1.notes.append(f"worker_lost accepted (worker killed {args.max_attempts} times): "
                        + json.dumps(worker_lost_ok[:EXAMPLES]))

    # 2. genq doctor
    c2 = Check("doctor", "`genq doctor` reports no problem")
    c2.counts = {"exit_code": doctor.returncode}
    c2.notes.append((doctor.stderr or doctor.stdout).strip()[-2000:])
    if doctor.returncode != 0:
        for line in (doctor.stderr or "").splitlines():
            if "problem" in line:
                c2.fail("doctor_problem", line=line.strip())
        if not c2.problems:
            c2.fail("doctor_failed", output=(doctor.stderr or doctor.stdout)[-2000:])

    # 3. ledger per job (from `genq accounts ledger NAME --json`)
    c3 = Check("ledger", "per job: one hold (= estimate) + capture and release (succeeded) or "
                         "one release (otherwise); captured = credits.used (db and API)")
    cli_ledger: dict[str, list[dict[str, Any]]] = defaultdict(list)
    grants: dict[str, int] = {}
    for name, led in ledgers.items():
        if "entries" not in led:
            c3.fail("ledger_cli_failed", account=name, error=led.get("error"))
            continue
        g = 0
        for e in led["entries"]:
            if e["job_id"]:
                cli_ledger[e["job_id"]].append(e)
            elif e["kind"] == "grant":
                g += int(e["amount"])
            elif e["kind"] == "adjust":
                g -= int(e["amount"])
        grants[name] = g
    captured_by_account: Counter[str] = Counter()
    for job_id, r in rows.items():
        entries = cli_ledger.get(job_id, [])
        kinds = sorted(e["kind"] for e in entries)
        amounts: dict[str, int] = defaultdict(int)
        for e in entries:
            amounts[e["kind"]] += int(e["amount"])
        captured_by_account[r["account_id"]] += amounts["capture"]
        db_kinds = sorted(e["kind"] for e in snap["ledger"].get(job_id, []))
        if db_kinds != kinds:
            c3.fail("cli_ledger_differs_from_db", job_id=job_id, cli=kinds, db=db_kinds)
        if r["status"] not in TERMINAL_S:
            continue
        want = ["capture", "hold", "release"] if r["status"] == "succeeded" else ["hold", "release"]
        api = api_jobs.get(job_id)
        api_used = api["credits"]["used"] if api else None
        problem = None
        if kinds != want:
            problem = "ledger_rows_wrong"
        elif amounts["hold"] != r["credits_estimate"]:
            problem = "hold_not_estimate"
        elif amounts["capture"] != r["credits_used"] or (api and api_used != amounts["capture"]):
            problem = "capture_not_credits_used"
        elif amounts["capture"] + amounts["release"] != amounts["hold"]:
            problem = "hold_not_settled"
        if problem:
            c3.fail(problem, job_id=job_id, status=r["status"], attempt=r["attempt"],
                    rows=[(e["kind"], e["amount"]) for e in entries],
                    estimate=r["credits_estimate"], db_used=r["credits_used"], api_used=api_used)
    c3.counts = {"jobs": len(rows), "ledger_rows": sum(len(v) for v in cli_ledger.values()),
                 "captured": sum(captured_by_account.values())}

    # 4. balances
    c4 = Check("balances", "GET /v1/account balance = grants - captured credits of its jobs")
    balances = {}
    for k in keys:
        name = k["account"]
        acct_id = k["account_id"]
        got = (res["accounts"].get(name) or {}).get("balance")
        want = grants.get(name, GRANT) - captured_by_account[acct_id]
        balances[name] = {"balance": got, "expected": want, "grants": grants.get(name),
                          "captured": captured_by_account[acct_id]}
        if got != want:
            c4.fail("balance_mismatch", account=name, account_id=acct_id, balance=got,
                    expected=want, grants=grants.get(name), captured=captured_by_account[acct_id])
        if grants.get(name) != GRANT:
            c4.notes.append(f"{name}: grants {grants.get(name)}, asked for {GRANT}")
    c4.counts = {"accounts": balances}

    # 5. re-runs charged once
    c5 = Check("reruns", "jobs run more than once (attempt > 1) are charged at most once")
    reruns = [r for r in rows.values() if r["attempt"] > 1]
    for r in reruns:
        entries = cli_ledger.get(r["id"], [])
        caps = [e for e in entries if e["kind"] == "capture"]
        if len(caps) > 1 or (r["status"] != "succeeded" and caps) or (
                r["status"] == "succeeded" and sum(int(e["amount"]) for e in caps)
                != r["credits_estimate"]):
            c5.fail("rerun_charged_wrongly", job_id=r["id"], attempt=r["attempt"],
                    status=r["status"], rows=[(e["kind"], e["amount"]) for e in entries])
    c5.counts = {"reruns": len(reruns),
                 "by_attempt": dict(sorted(Counter(r["attempt"] for r in reruns).items())),
                 "reruns_succeeded": sum(r["status"] == "succeeded" for r in reruns),
                 "reruns_charged_once": sum(
                     r["status"] == "succeeded" and sum(
                         e["kind"] == "capture" for e in cli_ledger.get(r["id"], [])) == 1
                     for r in reruns)}

    # 6. events
    c6 = Check("events", "one completed event per terminal job, one running event per attempt; "
                         "worker losses by cause")
    losses_killed = losses_live = 0
    live_examples = []
    for job_id, r in rows.items():
        evs = events.get(job_id, [])
        completed = sum(e["type"] == "completed" for e in evs)
        runs = sum(e["type"] == "status" and (e["data"] or {}).get("status") == "running"
                   for e in evs)
        if r["status"] in TERMINAL_S and completed != 1:
            c6.fail("completed_events_not_one", job_id=job_id, completed=completed)
        if runs != r["attempt"]:
            c6.fail("running_events_not_attempts", job_id=job_id, runs=runs,
                    attempt=r["attempt"])
        for x in losses_of(evs):
            if killed(x["owner"]):
                losses_killed += 1
            else:
                losses_live += 1
                if len(live_examples) < EXAMPLES:
                    live_examples.append({"job_id": job_id, **x})
    c6.counts = {"losses_of_killed_workers": losses_killed,
                 "losses_of_live_workers": losses_live,
                 "jobs_hit_by_a_kill": sum(1 for j in rows if any(
                     killed(x["owner"]) for x in losses_of(events.get(j, []))))}
    if live_examples:
        c6.notes.append("re-queued although its worker was not killed (lease lapsed on a live "
                        "worker; its writes are then fenced off): " + json.dumps(live_examples))

    # 7. outputs
    c7 = Check("outputs", "each succeeded test/sleep job has exactly one output")
    for job_id, r in rows.items():
        if r["engine"] == "test/sleep" and r["status"] == "succeeded":
            n = snap["outputs"].get(job_id, 0)
            if n != 1:
                c7.fail("outputs_not_one", job_id=job_id, outputs=n, attempt=r["attempt"])
    c7.counts = {"sleep_jobs_succeeded": sum(r["engine"] == "test/sleep"
                                             and r["status"] == "succeeded" for r in rows.values())}

    checks = [c1, c2, c3, c4, c5, c6, c7]
    waited = []  # submits answered 409 (a twin "in progress") until genq's stale window passed
    kill_at = fleet.server_kills[0]["at_epoch"] if fleet.server_kills else None
    for lj in jobs:
        if not lj.conflicts:
            continue
        row = rows.get(lj.job_id or "", {})
        created = epoch_of(row.get("created_at"))
        waited.append({
            "logical": lj.i, "key": lj.key, "job_id": lj.job_id, "posts": lj.posts,
            "connection_errors": lj.conn_errors, "conflicts_409": lj.conflicts,
            "waited_s": round(lj.acked_at - lj.first_conflict_at, 1)
            if lj.acked_at and lj.first_conflict_at else None,
            "job_created_at": row.get("created_at"),
            "job_created": None if created is None or kill_at is None else (
                "before the server kill (its answer was lost; replayed after the wait)"
                if created < kill_at else "after the wait (the killed request made nothing)")})
    evidence = gather_evidence(checks, snap, cli_ledger, db)
    waits = sorted(stats.conflict_waits_s)
    return {
        "database": db,
        "params": {k: getattr(args, k) for k in ("jobs", "workers", "slots", "kills",
                                                 "kill_every", "clients", "dup_share",
                                                 "sleep_share", "lease_s", "max_attempts",
                                                 "time_limit", "server_kill_at")},
        "wall_s": round(res["wall_s"], 1),
        "submit_s": round(res["submit_s"], 1) if res["submit_s"] is not None else None,
        "drained": res["drained"],
        "kills": fleet.kills,
        "server_kills": fleet.server_kills,
        "unexpected_exits": fleet.unexpected_exits,
        "clients": {"posts": stats.posts, "connection_errors": stats.conn_errors,
                    "conflicts_409": stats.conflicts, "rate_limited_429": stats.rate_limited,
                    "server_errors_5xx": stats.server_errors,
                    "read_connection_errors": stats.read_conn_errors,
                    "submits_that_waited_on_409": len(waits),
                    "longest_409_wait_s": round(waits[-1], 1) if waits else None,
                    "submits_that_waited_on_409_detail": waited},
        "reruns": c5.counts["reruns"],
        "outcomes": c1.counts["outcomes"],
        "checks": {c.name: c.as_dict() for c in checks},
        "ok": all(c.ok for c in checks),
        "evidence": evidence,
        "logs": sorted({str(p.log.relative_to(ROOT)) for p in fleet.procs}),
    }


def epoch_of(text: str | None) -> float | None:
    """Seconds since the epoch of a created_at as either database returns it (UTC)."""
    import datetime as dt

    if not text:
        return None
    with contextlib.suppress(ValueError):
        d = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (d if d.tzinfo else d.replace(tzinfo=dt.UTC)).timestamp()
    return None


def gather_evidence(checks: list[Check], snap: dict[str, Any],
                    ledger: dict[str, list[dict[str, Any]]], db: str) -> dict[str, Any]:
    """For the first failing jobs: their row, events, ledger rows and log lines."""
    ids: list[str] = []
    for c in checks:
        for p in c.problems:
            for key in ("job_id", "dup_id"):
                j = p.get(key)
                if isinstance(j, str) and j not in ids:
                    ids.append(j)
            for j in p.get("job_ids", []) or []:
                if j not in ids:
                    ids.append(j)
    ids = ids[:10]
    if not ids:
        return {}
    log_lines: dict[str, list[str]] = defaultdict(list)
    for path in sorted(LOGS.glob(f"chaos-{db}-*.log")):
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                for j in ids:
                    if j in line and len(log_lines[j]) < 40:
                        log_lines[j].append(f"{path.name}: {line[:400]}")
    return {j: {"row": snap["jobs"].get(j), "events": snap["events"].get(j, []),
                "ledger": ledger.get(j, []), "log_lines": log_lines.get(j, [])} for j in ids}


# ---------------------------------------------------------------- report


def summary(r: dict[str, Any]) -> str:
    c = r["checks"]
    lines = [
        f"== {r['database']}: {'PASS' if r['ok'] else 'FAIL'} ==",
        f"  jobs {c['jobs']['counts']['logical_jobs']} (acknowledged "
        f"{c['jobs']['counts']['acknowledged']}, in db {c['jobs']['counts']['db_jobs']}),"
        f" wall {r['wall_s']} s (submits done at {r['submit_s']} s,"
        f" {'drained' if r['drained'] else 'NOT drained'})",
        f"  worker kills {len(r['kills'])} (holding "
        f"{sum(len(k['running_jobs']) for k in r['kills'])} running jobs),"
        f" server kills {len(r['server_kills'])}"
        + (f" (down {r['server_kills'][0]['down_s']} s)" if r["server_kills"] else "")
        + f", unexpected exits {len(r['unexpected_exits'])}",
        f"  re-runs (attempt > 1): {r['reruns']} {c['reruns']['counts']['by_attempt']},"
        f" charged once: {c['reruns']['counts']['reruns_charged_once']}"
        f" of {c['reruns']['counts']['reruns_succeeded']} succeeded",
        f"  outcomes {r['outcomes']}; failed/canceled codes "
        f"{c['jobs']['counts']['failed_or_canceled_codes']}",
        f"  worker losses: {c['events']['counts']['losses_of_killed_workers']} by kills,"
        f" {c['events']['counts']['losses_of_live_workers']} of live workers;"
        f" jobs hit by a kill {c['events']['counts']['jobs_hit_by_a_kill']}",
        f"  clients: { {k: v for k, v in r['clients'].items() if not k.endswith('_detail')} }",
        *[f"  waited on 409: logical {w['logical']} -> {w['job_id']}, {w['waited_s']} s,"
          f" job created {w['job_created']}"
          for w in r["clients"]["submits_that_waited_on_409_detail"][:EXAMPLES]],
        f"  duplicates: {c['jobs']['counts']['duplicates_replayed_same_id']}/"
        f"{c['jobs']['counts']['deliberate_duplicates']} got the same id back",
    ]
    for i, (name, ch) in enumerate(c.items(), 1):
        extra = f" {ch['problems']}" if not ch["ok"] else ""
        lines.append(f"  {i}. {name:9} {'ok  ' if ch['ok'] else 'FAIL'}{extra}")
        if not ch["ok"]:
            for kind, exs in ch["examples"].items():
                lines.append(f"       {kind}: {json.dumps(exs[:2], default=str)[:600]}")
    return "\n".join(lines)


def git_commit() -> str | None:
    """The commit of the code under test (+ "-dirty" with uncommitted changes in src/)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("-dirty" if dirty else "")
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dbs", default="sqlite,postgres")
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--slots", type=int, default=4)
    p.add_argument("--kills", type=int, default=12, help="worker SIGKILLs in all")
    p.add_argument("--kill-every", type=float, default=5.0, help="seconds between kills")
    p.add_argument("--server-kills", type=int, default=1, choices=(0, 1))
    p.add_argument("--server-kill-at", type=float, default=0.4,
                   help="share of the jobs acknowledged when the API server is killed")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--dup-share", type=float, default=0.1)
    p.add_argument("--sleep-share", type=float, default=0.3)
    p.add_argument("--lease-s", type=float, default=2.0)
    p.add_argument("--max-attempts", type=int, default=5)
    p.add_argument("--time-limit", type=float, default=300.0,
                   help="seconds per database for submitting and draining")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="chaos.json")
    args = p.parse_args()
    if args.clients < ACCOUNTS:
        p.error(f"--clients must be at least {ACCOUNTS} (one account each)")
    LOGS.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "benchmark": "chaos", "date": now_iso(), "machine": machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "genq_commit": git_commit(), "runs": [],
    }
    ok = True
    for n, db in enumerate(d.strip() for d in args.dbs.split(",") if d.strip()):
        if db not in ("sqlite", "postgres"):
            p.error(f"unknown database {db!r}")
        try:
            run = run_db(db, args, args.seed + n)
        except Exception as exc:  # the run itself broke: recorded, and a failure
            log(f"[{db}] run failed: {type(exc).__name__}: {exc}")
            run = {"database": db, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        ok = ok and run["ok"]
        result["runs"].append(run)
        if "checks" in run:
            log(summary(run))
        save_json(args.out, result)
    result["ok"] = ok
    log(f"verdict: {'PASS' if ok else 'FAIL'}; wrote {save_json(args.out, result)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
