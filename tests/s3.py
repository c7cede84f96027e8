"""A real SeaweedFS (`weed server` with its S3 gateway) on loopback ports for the
object-storage tests, and a TCP proxy in front of it that a test can cut to take the
store away from genq (and restore)."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

WEED = Path(sys.executable).parent / "weed"
ACCESS_KEY, SECRET_KEY = "genq-test-key", "genq-test-secret"
BUCKET = "genq-test"


def _free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (each of weed's servers gets its gRPC port given)."""
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
        return ports
    finally:
        for s in socks:
            s.close()


@dataclass
class Seaweed:
    """`weed server` (master, volume, filer, S3) with its data in `root`."""

    root: Path
    volumes: int = 20  # of 64 MB each: what the store holds (more for the benchmark)
    proc: subprocess.Popen[bytes] | None = None
    s3_port: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self) -> dict[str, str]:
        """The AWS variables genq reads its credentials and region from."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }

    def start(self, timeout: float = 60) -> Seaweed:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "genq",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        master, mg, volume, vg, filer, fg, s3, s3g = _free_ports(8)
        self.s3_port = s3
        args = [
            str(WEED),
            "server",
            f"-dir={self.root}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-master.port.grpc={mg}",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={volume}",
            f"-volume.port.grpc={vg}",
            f"-volume.max={self.volumes}",
            "-filer",
            f"-filer.port={filer}",
            f"-filer.port.grpc={fg}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3g}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
        ]
        with (self.root / "weed.log").open("wb") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=log, start_new_session=True, cwd=self.root
            )
        deadline = time.monotonic() + timeout
        while True:  # the S3 port answers (403 to an unsigned request) ...
            assert self.proc.poll() is None, (self.root / "weed.log").read_text()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(self.endpoint, timeout=1)
                break
            assert time.monotonic() < deadline, "SeaweedFS did not start"
            time.sleep(0.2)
        store = self.store()
        while True:  # ... and stores (the first PUT creates the bucket)
            try:
                import obstore

                obstore.put(store, ".genq-bucket", b"")
                return self
            except Exception:
                assert time.monotonic() < deadline, "SeaweedFS does not store"
                time.sleep(0.3)

    def store(self, prefix: str | None = None) -> Any:
        from obstore.store import S3Store

        return S3Store(
            BUCKET,
            prefix=prefix,
            endpoint=self.endpoint,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            region="us-east-1",
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )

    def keys(self, prefix: str) -> list[str]:
        """The bucket's keys under `prefix` (whole keys)."""
        import obstore

        return sorted(m["path"] for chunk in obstore.list(self.store(), prefix) for m in chunk)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # its data is a throwaway temp dir: no graceful (seconds-long) shutdown needed
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@dataclass
class TcpProxy:
    """Forwards a loopback port to `target`. `cut()` closes every connection and
    refuses new ones (the store is gone); `restore()` forwards again."""

    target: tuple[str, int]
    port: int = 0
    _open: bool = True
    _stop: bool = False
    _conns: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self.port = self._listener.getsockname()[1]
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def cut(self) -> None:
        with self._lock:
            self._open = False
            for c in self._conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                c.close()
            self._conns.clear()

    def restore(self) -> None:
        with self._lock:
            self._open = True

    def stop(self) -> None:
        self._stop = True
        self.cut()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if not self._open:  # refused: closed at once
                    client.close()
                    continue
                try:
                    upstream = socket.create_connection(self.target, timeout=2)
                except OSError:
                    client.close()
                    continue
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
        self._listener.close()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        try:
            a.setblocking(False)
            b.setblocking(False)
            sel.register(a, selectors.EVENT_READ, b)
            sel.register(b, selectors.EVENT_READ, a)
            while True:
                for key, _ in sel.select(timeout=1):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(1 << 16)
                    if not data:
                        return
                    key.data.setblocking(True)
                    key.data.sendall(data)
                    key.data.setblocking(False)
        except (OSError, ValueError):
            return
        finally:
            sel.close()
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()
