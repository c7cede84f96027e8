"""Long-lived interpreters that run code blocks one after another, as a reader pastes
them: a bash shell (`set -euo pipefail`) and a Python session. What a block defines
(variables, exports, the working directory, Python names) stays for the next block.

Each block is written to a file and the interpreter is told to run it with its output
going to a file of its own; a line with a random marker on the interpreter's stdout
says it is done. A block that outlives its timeout stops the session."""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import shlex
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

# The Python session: read "<block file>\t<output file>\t<marker>" lines, run each
# block in one namespace with its output going to the output file, answer with the
# marker and 0 (ran) or 1 (raised; the traceback is in the output).
PYTHON_DRIVER = """
import contextlib, sys, traceback
namespace = {"__name__": "__main__"}
for line in sys.stdin:
    src, out, marker = line.rstrip("\\n").split("\\t")
    with open(out, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            exec(compile(open(src).read(), src, "exec"), namespace)
            status = 0
        except BaseException:
            traceback.print_exc()
            status = 1
    print(marker, status, flush=True)
"""


@dataclass(frozen=True)
class Ran:
    """How a block went: its exit status (the session's, if the block ended it) and
    what it printed (stdout and stderr together)."""

    status: int
    output: str

    @property
    def ok(self) -> bool:
        return self.status == 0


class Session:
    """One interpreter process; `run(source)` runs a block in it."""

    def __init__(self, argv: list[str], *, cwd: Path, env: dict[str, str], scratch: Path) -> None:
        self.scratch = scratch
        scratch.mkdir(parents=True, exist_ok=True)
        self.blocks = 0
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # close() stops whatever a block left running
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def command(self, src: Path, out: Path, marker: str) -> str:
        raise NotImplementedError

    def run(self, source: str, *, timeout: float) -> Ran:
        self.blocks += 1
        src = self.scratch / f"block-{self.blocks}"
        out = self.scratch / f"block-{self.blocks}.out"
        src.write_text(source)
        out.touch()
        marker = f"--block-done-{secrets.token_hex(8)}--"
        assert self.proc.stdin is not None
        self.proc.stdin.write(self.command(src, out, marker) + "\n")
        self.proc.stdin.flush()
        chatter: list[str] = []  # what the interpreter itself said (a shell's last words)
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                self.close()
                return Ran(-1, f"{out.read_text()}\n(still running after {timeout} s)")
            if line is None:  # the block ended the session (bash's `set -e`)
                status = self.proc.wait(timeout=10) or 1
                return Ran(status, out.read_text() + "".join(chatter))
            if line.startswith(marker):
                return Ran(int(line.split()[1]), out.read_text())
            chatter.append(line)

    def close(self) -> None:
        """End the session: its stdin closes; what does not end then is killed."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # and what its blocks started
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.reader.join(timeout=10)
        self.proc.stdout.close()


class Shell(Session):
    """bash with `set -euo pipefail`: a failing command ends the session."""

    def __init__(self, *, cwd: Path, env: dict[str, str], scratch: Path) -> None:
        super().__init__(["bash", "--noprofile", "--norc"], cwd=cwd, env=env, scratch=scratch)
        assert self.proc.stdin is not None
        self.proc.stdin.write("set -euo pipefail\n")

    def command(self, src: Path, out: Path, marker: str) -> str:
        # stdin from /dev/null: a command that reads stdin must not eat the next block
        src_, out_ = shlex.quote(str(src)), shlex.quote(str(out))
        return f"source {src_} </dev/null >{out_} 2>&1; echo {marker} 0"

    def environ(self) -> dict[str, str]:
        """The shell's exported variables now (what a program started from it gets)."""
        dump = self.scratch / "environ"
        ran = self.run(f"env -0 > {shlex.quote(str(dump))}", timeout=30)
        assert ran.ok, ran.output
        pairs = (item.split("=", 1) for item in dump.read_text().split("\0") if "=" in item)
        return dict(pairs)


class Python(Session):
    """One Python interpreter; a block that raises leaves the session running."""

    def __init__(self, python: Path, *, cwd: Path, env: dict[str, str], scratch: Path) -> None:
        super().__init__(
            [str(python), "-u", "-c", PYTHON_DRIVER], cwd=cwd, env=env, scratch=scratch
        )

    def command(self, src: Path, out: Path, marker: str) -> str:
        return f"{src}\t{out}\t{marker}"
