"""Tracing's cost: `genq serve` with tracing off (no OTEL variables: nothing installed)
and on (OTLP/HTTP to a loopback collector stub in this process, the SDK's batch
processor with its defaults), side by side, measured with wrk, runs interleaved
(off on on off ...):

- `GET /v1/jobs/{id}` (a cached, succeeded job; the hot path of section 1): on, the
  polled reads stay out of traces (no middleware on their path); *reads* is on with
  `GENQ_TRACE_READS=true`, a server span per request;
- `POST /v1/jobs` (submission, `--engine` jobs run by the in-process workers while
  the load goes on): server span, `job.submit`, `db.*` spans, and every job's
  `job.queued`/`job.run` spans and step events in the worker.

    ../.venv/bin/python tracing.py [--duration 10] [--repeats 2] [--engine demo/noop]

The stub answers every export 200 at once and counts requests, bytes and spans.
Results: out/tracing.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import statistics
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    BENCH,
    OUT,
    CpuWindow,
    Server,
    engine_input,
    engines_path,
    machine,
    now_iso,
    parse_wrk,
    running_server,
    save_json,
    wrk,
    write_targets,
)
from bench.hot_path import jobs_for  # noqa: E402


class Stub:
    """A loopback OTLP/HTTP receiver that only counts (spans: decoded after the runs)."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self.bodies: list[bytes] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                owner.requests += 1
                owner.bytes += len(body)
                owner.bodies.append(body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def spans(self) -> int:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        n = 0
        for body in self.bodies:
            req = ExportTraceServiceRequest.FromString(body)
            n += sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
        return n


def submit_wrk(
    srv: Server, targets: Path, body: Path, duration: float, connections: int
) -> dict[str, Any]:
    cmd = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{int(duration)}s",
        "--latency",
        "-s",
        str(BENCH / "wrk_submit.lua"),
        srv.url,
        "--",
        str(targets),
        str(body),
    ]
    window = CpuWindow(srv)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    cpu = window.done()
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr}")
    res = parse_wrk(out.stdout)
    res["cpu"] = cpu
    res["command"] = shlex.join(cmd).replace(str(BENCH) + "/", "")
    return res


def cpu_us(res: dict[str, Any]) -> float:
    """The server's CPU time per request, in µs (less sensitive to a shared machine
    than req/s; for submissions it includes the in-process workers running jobs)."""
    cpu = res["cpu"]
    return round(cpu["server_pct"] / 100 * cpu["wall_s"] / max(res["requests"], 1) * 1e6, 1)


def line(mode: str, name: str, res: dict[str, Any]) -> None:
    lat = res["latency_us"]
    errors = res["non_2xx_3xx"] + sum(res["socket_errors"].values())
    print(
        f"[{mode:3s}] {name:6s} {res['rps']:9.0f} req/s  p50 {lat['p50'] / 1000:6.2f} ms  "
        f"p99 {lat['p99'] / 1000:6.2f} ms  server cpu {res['cpu']['server_pct']}%  "
        f"others {res['cpu']['others_pct']}%  errors {errors}",
        flush=True,
    )


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--engine", default="demo/noop")
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--accounts", type=int, default=64)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--submit-connections", type=int, default=16)
    p.add_argument(
        "--on-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="more environment for the servers with tracing on (repeatable), "
        "e.g. GENQ_TRACE_DB=false or OTEL_TRACES_SAMPLER=traceidratio",
    )
    p.add_argument(
        "--baseline-src",
        default=None,
        metavar="DIR",
        help="instead: this branch with tracing off (*off*) against a `genq serve` "
        "of another checkout's src/ (e.g. the main branch's: *base*)",
    )
    p.add_argument("--out", default="tracing.json")
    args = p.parse_args()
    stub = Stub()
    inp = engine_input(args.engine, None)
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": stub.url,
        "OTEL_SERVICE_NAME": "genq-bench",
        **dict(kv.split("=", 1) for kv in args.on_env),
    }
    modes: dict[str, dict[str, str]] = {
        "off": {},
        "on": otel,
        "reads": {**otel, "GENQ_TRACE_READS": "true"},
    }
    if args.baseline_src:
        modes = {"base": {"PYTHONPATH": str(Path(args.baseline_src).resolve())}, "off": {}}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        m: {"get": [], "submit": []} for m in (*modes, "on", "reads")
    }
    with contextlib.ExitStack() as stack:
        servers: dict[str, tuple[Server, dict[str, Path]]] = {}
        for mode, env in modes.items():
            srv, keys = stack.enter_context(
                running_server(
                    "genq-serve",
                    args.engine,
                    engines_path(args.engine, None),
                    accounts=args.accounts,
                    **env,
                )
            )
            jobs = jobs_for(srv.url, keys, args.engine, inp)
            body = OUT / "wrk" / "tracing-submit.json"
            body.parent.mkdir(parents=True, exist_ok=True)
            body.write_text(json.dumps({"engine": args.engine, "input": inp}))
            files = {
                "get": write_targets(
                    f"tracing-{mode}-get", [(f"/v1/jobs/{j['id']}", j["auth"], "") for j in jobs]
                ),
                "submit": write_targets(
                    f"tracing-{mode}-submit", [("/v1/jobs", j["auth"], "") for j in jobs]
                ),
                "body": body,
            }
            servers[mode] = (srv, files)
            print(
                f"[{mode}] {srv.url}: {len(keys)} accounts, one {args.engine} job each", flush=True
            )
        for srv, files in servers.values():  # warm-up
            wrk(srv.url, files["get"], duration=2, connections=args.connections, server=srv)
        for rep in range(args.repeats):
            order = list(modes) if rep % 2 == 0 else list(reversed(modes))
            for mode in order:
                srv, files = servers[mode]
                res = wrk(
                    srv.url,
                    files["get"],
                    duration=args.duration,
                    connections=args.connections,
                    server=srv,
                )
                line(mode, "get", res)
                runs[mode]["get"].append(res)
        for rep in range(args.repeats):
            order = [m for m in modes if m != "reads"]
            order = order if rep % 2 == 0 else list(reversed(order))
            for mode in order:
                srv, files = servers[mode]
                res = submit_wrk(
                    srv, files["submit"], files["body"], args.duration, args.submit_connections
                )
                line(mode, "submit", res)
                runs[mode]["submit"].append(res)
    summary: dict[str, Any] = {}
    pairs: tuple[tuple[str, str], ...] = (("get", "on"), ("submit", "on"), ("get_reads", "reads"))
    if args.baseline_src:  # then "off" is the baseline, "on" this branch with tracing off
        runs["on"], runs["off"] = runs["off"], runs["base"]
        pairs = (("get", "on"), ("submit", "on"))
    for name, mode in pairs:
        kind = name.split("_")[0]
        off = [r["rps"] for r in runs["off"][kind]]
        on = [r["rps"] for r in runs[mode][kind]]
        summary[name] = {
            "off_best_rps": round(max(off), 1),
            "on_best_rps": round(max(on), 1),
            "off_median_rps": round(statistics.median(off), 1),
            "on_median_rps": round(statistics.median(on), 1),
            "ratio_best": round(max(on) / max(off), 3),
            "ratio_per_repeat": [round(b / a, 3) for a, b in zip(off, on, strict=True)],
            "off_cpu_us_per_request": [cpu_us(r) for r in runs["off"][kind]],
            "on_cpu_us_per_request": [cpu_us(r) for r in runs[mode][kind]],
            "off_p99_ms": [r["latency_us"]["p99"] / 1000 for r in runs["off"][kind]],
            "on_p99_ms": [r["latency_us"]["p99"] / 1000 for r in runs[mode][kind]],
            "errors": sum(
                r["non_2xx_3xx"] + sum(r["socket_errors"].values())
                for m in ("off", mode)
                for r in runs[m][kind]
            ),
        }
    summary["exports"] = {"requests": stub.requests, "bytes": stub.bytes, "spans": stub.spans()}
    print(json.dumps(summary, indent=2))
    save_json(
        args.out,
        {
            "when": now_iso(),
            "machine": machine(),
            "args": vars(args),
            "summary": summary,
            "runs": {
                m: {
                    n: [{k: v for k, v in r.items() if k != "raw"} for r in rs]
                    for n, rs in d.items()
                }
                for m, d in runs.items()
            },
        },
    )
    stub.http.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
