"""Shared helpers for the benchmark scripts: machine facts, starting and killing a
genq server subprocess (in its own process group), API keys, wrk runs."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
LOGS = OUT / "logs"
PY = sys.executable
SCENARIOS = "tests.scenario_engines:ENGINES"
SERVERS = ("uvicorn", "granian", "genq-serve")

# A job input for engines whose defaults would not be a no-op.
DEFAULT_INPUTS: dict[str, dict[str, Any]] = {
    "demo/noop": {"delay_s": 0},
    "test/sleep": {"seconds": 0, "steps": 1},
    "test/sync-sleep": {"seconds": 0, "steps": 1},
}


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    wrk = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=5)
        wrk = (out.stdout + out.stderr).splitlines()[0].strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "ram_gib": ram_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {m: _version(m) for m in (
            "genq", "uvicorn", "granian", "uvloop", "httptools", "fastapi", "starlette",
            "pydantic", "orjson", "psycopg", "limits", "httpx", "aiohttp", "sqlalchemy")},
        "wrk": wrk,
    }


def engine_input(engine: str, raw: str | None) -> dict[str, Any]:
    if raw:
        value: dict[str, Any] = json.loads(raw)
        return value
    return dict(DEFAULT_INPUTS.get(engine, {}))


def engines_path(engine: str, explicit: str | None) -> str | None:
    """GENQ_ENGINES for the server: explicit, else the scenario engines for `test/*`."""
    if explicit is not None:
        return explicit or None
    if engine.startswith("test/"):
        return SCENARIOS
    return os.environ.get("GENQ_ENGINES")


# ---------------------------------------------------------------- process CPU accounting

_TICK = os.sysconf("SC_CLK_TCK")


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user+sys) used so far by the live processes of a process group."""
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            raw = (d / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        # fields[0] is state (field 3); pgrp is field 5, utime 14, stime 15
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def system_cpu() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [float(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0.0)
    return sum(parts) - idle, sum(parts)


def loadavg() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        return float(Path("/proc/loadavg").read_text().split()[0])
    return None


class CpuWindow:
    """CPU use over a window, in % of one core: the server's process group, this
    process's children (wrk), and everything else on the machine (other users' work)."""

    def __init__(self, server: Server | None) -> None:
        import resource

        self._res = resource
        self.server = server
        self.t0 = time.monotonic()
        self.sys0 = system_cpu()
        self.srv0 = server.cpu_s() if server else 0.0
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.ch0 = ru.ru_utime + ru.ru_stime
        me = resource.getrusage(resource.RUSAGE_SELF)
        self.me0 = me.ru_utime + me.ru_stime
        self.load0 = loadavg()

    def done(self) -> dict[str, Any]:
        wall = time.monotonic() - self.t0
        busy1, tot1 = system_cpu()
        ncpu = os.cpu_count() or 1
        system = 100 * ncpu * (busy1 - self.sys0[0]) / max(1.0, tot1 - self.sys0[1])
        server = 100 * ((self.server.cpu_s() if self.server else 0.0) - self.srv0) / wall
        ru = self._res.getrusage(self._res.RUSAGE_CHILDREN)
        children = 100 * (ru.ru_utime + ru.ru_stime - self.ch0) / wall
        me = self._res.getrusage(self._res.RUSAGE_SELF)
        client = 100 * (me.ru_utime + me.ru_stime - self.me0) / wall
        return {
            "wall_s": round(wall, 2),
            "system_pct": round(system, 1),
            "server_pct": round(server, 1),
            "tool_pct": round(children, 1),  # wrk (a finished child) or 0
            "client_pct": round(client, 1),  # this Python process (e2e's httpx clients)
            "others_pct": round(max(0.0, system - server - children - client), 1),
            "capacity_pct": 100 * ncpu,
            "loadavg_1m": [self.load0, loadavg()],
        }


# ---------------------------------------------------------------- the server


@dataclass
class Server:
    kind: str  # uvicorn | granian | genq-serve
    data_dir: Path
    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    cmd: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def has_bench_routes(self) -> bool:
        return self.kind != "genq-serve"

    def command(self) -> list[str]:
        host, port = "127.0.0.1", str(self.port)
        if self.kind == "uvicorn":
            return [PY, "-m", "uvicorn", "--factory", "bench.asgi:create_app",
                    "--host", host, "--port", port, "--loop", "uvloop", "--http", "httptools",
                    "--lifespan", "on", "--no-access-log", "--log-level", "warning"]
        if self.kind == "granian":
            return [PY, "-m", "granian", "--interface", "asgi", "--factory",
                    "--host", host, "--port", port, "--workers", "1", "--loop", "uvloop",
                    "--http", "1", "--no-access-log", "--log-level", "warning",
                    "bench.asgi:create_app"]
        if self.kind == "genq-serve":
            # the command users run, as shipped (uvicorn.run, its default access log)
            return [PY, "-m", "genq", "serve", "--data-dir", str(self.data_dir),
                    "--host", host, "--port", port]
        raise ValueError(f"unknown server {self.kind!r}")

    def start(self, timeout: float = 60) -> Server:
        self.cmd = self.command()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        logf = self.log.open("wb")
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        logf.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}:\n"
                                   + self.log_tail())
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} not ready after {timeout}s:\n" + self.log_tail())
            time.sleep(0.1)

    def log_tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        return ""

    def cpu_s(self) -> float:
        return group_cpu_s(self.proc.pid) if self.proc else 0.0

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL after a grace period."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        # granian's worker or anything else left in the group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.proc = None


def server_env(data_dir: Path, port: int, engine: str, engines: str | None,
               **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GENQ_ENGINES", None)
    env.update(GENQ_DATA_DIR=str(data_dir), GENQ_HOST="127.0.0.1", GENQ_PORT=str(port),
               PYTHONPATH=str(ROOT) + (os.pathsep + env["PYTHONPATH"]
                                       if env.get("PYTHONPATH") else ""),
               BENCH_ENGINE=engine, GENQ_PLANS=json.dumps(BENCH_PLANS))
    if engines:
        env["GENQ_ENGINES"] = engines
    env.update(extra)
    return env


# genq limits requests per account and plan (e.g. pro: 1200 status requests a minute,
# 5 running jobs). The benchmarks measure the server, not a plan, so their accounts are
# on a plan with limits far above what the runs can reach; the limiter still runs on
# every request, as in production. The load is spread over many accounts so that each
# account's rate-limit window holds about as many entries as a busy real account's.
BENCH_PLAN = "bench"
BENCH_PLANS = {BENCH_PLAN: {"generation_per_min": 1_000_000, "status_per_min": 1_000_000,
                            "concurrent_jobs": 100_000, "retention_days": 1,
                            "monthly_credits": 1_000_000_000, "open_streams": 1_000_000}}


def create_keys(data_dir: Path, env: dict[str, str], count: int = 1,
                plan: str = BENCH_PLAN) -> list[dict[str, Any]]:
    """`count` accounts with a key each, via `genq keys create --json` (make_keys.py)."""
    cmd = [PY, str(BENCH / "make_keys.py"), "--data-dir", str(data_dir), "--count",
           str(count), "--plan", plan]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120 + 2 * count, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed:\n{out.stderr[-2000:]}")
    keys = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if len(keys) != count:
        raise RuntimeError(f"expected {count} keys, got {len(keys)}:\n{out.stderr[-2000:]}")
    return keys


def create_key(data_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    return create_keys(data_dir, env, 1)[0]


@contextlib.contextmanager
def running_server(kind: str, engine: str, engines: str | None, accounts: int = 1,
                   **extra_env: str) -> Iterator[tuple[Server, list[dict[str, Any]]]]:
    """A fresh data dir, `accounts` API keys, a started server; always stopped and
    the data dir removed."""
    with tempfile.TemporaryDirectory(prefix="genq-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        port = free_port()
        env = server_env(data_dir, port, engine, engines, **extra_env)
        server = Server(kind, data_dir, port, env, LOGS / f"{kind}-{port}.log")
        try:
            server.start()
            keys = create_keys(data_dir, env, accounts)
            yield server, keys
        finally:
            server.stop()


# ---------------------------------------------------------------- wrk

WRK_LUA = BENCH / "wrk_report.lua"
_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 6e7}


def _to_us(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unparsed latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(text: str) -> dict[str, Any]:
    """Numbers from wrk's text (--latency) and the JSON line of wrk_report.lua."""
    res: dict[str, Any] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    res["rps"] = float(m.group(1)) if m else None
    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", text, re.M))
    res["latency_us"] = {f"p{k}": _to_us(v) for k, v in pct.items()}
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    res["non_2xx_3xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    res["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                    map(int, m.groups()), strict=True)) if m else {}
    for line in text.splitlines():
        if line.startswith("WRKJSON "):
            res["lua"] = json.loads(line[len("WRKJSON "):])
    if "lua" in res:
        lua = res["lua"]
        res["rps"] = lua["requests"] / (lua["duration_us"] / 1e6)
        res["latency_us"] = {k: float(v) for k, v in lua["latency_us"].items()}
        res["requests"] = lua["requests"]
    return res


def write_targets(name: str, lines: list[tuple[str, str, str]]) -> Path:
    """A targets file for wrk_report.lua: path, Authorization, If-None-Match."""
    path = OUT / "wrk" / f"{name}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{p}\t{a}\t{e}\n" for p, a, e in lines))
    return path


def wrk(base_url: str, targets: Path, *, duration: float, threads: int = 2,
        connections: int = 64, server: Server | None = None) -> dict[str, Any]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(duration)}s", "--latency",
           "-s", str(WRK_LUA), base_url, "--", str(targets)]
    window = CpuWindow(server)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    cpu = window.done()
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr}")
    res = parse_wrk(out.stdout)
    res["cpu"] = cpu
    res["server_cpu_pct"] = cpu["server_pct"]
    res["raw"] = out.stdout
    res["command"] = shlex.join(cmd).replace(str(BENCH) + "/", "")
    return res


def redact(cmd: list[str]) -> list[str]:
    return [re.sub(r"(Bearer )\S+", r"\1$KEY", c) for c in cmd]


def save_json(name: str, data: dict[str, Any]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    path.write_text(json.dumps(data, indent=2))
    return path


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


# ---------------------------------------------------------------- py-spy


def pyspy_available() -> bool:
    import shutil

    return shutil.which("py-spy") is not None or (Path(PY).parent / "py-spy").exists()


PYSPY_EXTRA = ["--function", "--gil"]


def pyspy_start(pid: int, duration: float, out: Path) -> subprocess.Popen[bytes]:
    exe = str(Path(PY).parent / "py-spy") if (Path(PY).parent / "py-spy").exists() else "py-spy"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [exe, "record", "--pid", str(pid), "--duration", str(int(duration)), "--rate", "200",
           "--subprocesses", *PYSPY_EXTRA, "--format", "raw", "--output", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _frame(f: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py:123)"
    m = re.match(r"(.*) \((.*)\)$", f.strip())
    if not m:
        return f.strip()
    return f"{m.group(1)} ({Path(m.group(2)).name})"


_GENQ_FRAME = re.compile(r"\((?:[^()]*/)?genq/[^()]*\)$")


def pyspy_top(raw: Path, n: int = 25) -> dict[str, Any]:
    """Own ("self") and inclusive sample counts per function from py-spy's raw output;
    `genq` lists the inclusive counts of genq's own functions (src/genq)."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    mine: dict[str, int] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        raw_frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not raw_frames:
            continue
        frames = [_frame(f) for f in raw_frames]
        total += c
        own[frames[-1]] = own.get(frames[-1], 0) + c
        for f in set(frames):
            incl[f] = incl.get(f, 0) + c
        for f in {_frame(f) for f in raw_frames if _GENQ_FRAME.search(f)}:
            mine[f] = mine.get(f, 0) + c

    def top(d: dict[str, int]) -> list[dict[str, Any]]:
        return [{"function": k, "samples": v, "pct": round(100 * v / total, 1)}
                for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:n]]

    return {"samples": total, "self": top(own), "inclusive": top(incl), "genq": top(mine)}


def pyspy_during(pid: int, duration: float, name: str, load: Any) -> dict[str, Any] | None:
    """Record the server with py-spy while `load()` runs; None without py-spy."""
    if not pyspy_available():
        return None
    out = OUT / "profiles" / f"{name}.raw"
    spy = pyspy_start(pid, duration, out)
    time.sleep(0.5)  # let it attach
    try:
        load()
    finally:
        try:
            _, err = spy.communicate(timeout=duration + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
            _, err = spy.communicate()
    if spy.returncode != 0 or not out.exists():
        return {"error": err.decode(errors="replace")[-500:]}
    res = pyspy_top(out)
    res["raw"] = str(out.relative_to(BENCH))
    res["command"] = shlex.join(spy.args) if isinstance(spy.args, list) else str(spy.args)
    return res


PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


@contextlib.contextmanager
def pg_database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database `<prefix>_<pid>` on BENCH_PG (default
    postgresql://postgres@127.0.0.1:5432) for genq (its SQLAlchemy URL); always dropped."""
    import psycopg

    name = f"{prefix}_{os.getpid()}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{PG.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    finally:
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
